"""``onenet-dispatch`` as the benchmarks run it: the real CLI, with a few bench-only switches.

    python -m bench.dispatch [--uvloop] [--unlimited] [--cprofile FILE] [--pyinstrument FILE]
                             -- run JOB.yaml ...

- ``--uvloop``: uvloop's event loop policy is set before the CLI starts; anyio's
  ``run`` then makes its loop from that policy (the optional event loop under test).
- ``--unlimited``: the run's rate limiter is built with 10^9 requests/s instead of the
  job's ``rate.per_second`` (a job file takes at most 1,000/s). The limiter's code
  runs unchanged; it just never has to wait. For the throughput ceiling only.
- ``--cprofile FILE``: the whole invocation under cProfile, stats dumped to FILE.
- ``--pyinstrument FILE``: the whole invocation under pyinstrument's sampling
  profiler, its text report (with the event loop's idle time) written to FILE.

Everything after ``--`` goes to ``dispatcher.cli.main`` as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

UNLIMITED_RATE = 1e9


def _stale(what: str) -> SystemExit:
    # The switches reach into the dispatcher's internals: say so loudly when those moved,
    # rather than measure the unpatched code under a patched name.
    return SystemExit(f"bench/dispatch.py: {what} is gone from dispatcher/; update the bench")


def _lift_rate_limit() -> None:
    import dispatcher.limiter
    import dispatcher.runner

    if not hasattr(dispatcher.runner, "RateLimiter"):
        raise _stale("dispatcher.runner.RateLimiter (the run's limiter)")

    class Unlimited(dispatcher.limiter.RateLimiter):
        __slots__ = ()

        def __init__(self, per_second: float, clock: object) -> None:
            super().__init__(UNLIMITED_RATE, clock)  # type: ignore[arg-type]

    dispatcher.runner.RateLimiter = Unlimited  # type: ignore[misc]


def _ablate_ledger() -> None:
    from dispatcher.ledger.writer import LedgerWriter

    if not hasattr(LedgerWriter, "_do"):
        raise _stale("LedgerWriter._do (every ledger operation of a run)")
    real = LedgerWriter._do

    async def _do(self: LedgerWriter, name: str, *args: object) -> object:
        if name in ("sending", "answer"):
            return None
        return await real(self, name, *args)

    LedgerWriter._do = _do  # type: ignore[method-assign]


def _ablate_trace() -> None:
    import aiohttp

    import dispatcher.onenet.client

    if "trace_configs=" not in Path(dispatcher.onenet.client.__file__).read_text(encoding="utf-8"):
        raise _stale("the client's aiohttp trace_configs")
    real = aiohttp.ClientSession

    class Untraced(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.pop("trace_configs", None)
            super().__init__(*args, **kwargs)

    aiohttp.ClientSession = Untraced  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--unlimited", action="store_true")
    parser.add_argument("--ablate", action="append", default=[], choices=("ledger", "trace"))
    parser.add_argument("--cprofile", type=Path, metavar="FILE")
    parser.add_argument("--pyinstrument", type=Path, metavar="FILE")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.unlimited:
        _lift_rate_limit()
    if "ledger" in args.ablate:
        _ablate_ledger()
    if "trace" in args.ablate:
        _ablate_trace()
    from dispatcher.cli import main as cli_main

    if args.cprofile is not None:
        import cProfile

        profiler = cProfile.Profile()
        try:
            return profiler.runcall(cli_main, argv)
        finally:
            profiler.dump_stats(args.cprofile)
    if args.pyinstrument is not None:
        from pyinstrument import Profiler

        sampler = Profiler(interval=0.0005, async_mode="disabled")
        sampler.start()
        try:
            return cli_main(argv)
        finally:
            sampler.stop()
            args.pyinstrument.write_text(
                sampler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8"
            )
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
