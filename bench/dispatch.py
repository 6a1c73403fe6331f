"""``onenet-dispatch`` as the benchmarks run it: the real CLI, with a few bench-only switches.

    python -m bench.dispatch [--uvloop] [--unlimited] [--cprofile FILE] [--pyinstrument FILE]
                             -- run JOB.yaml ...

- ``--uvloop``: uvloop's event loop policy is set before the CLI starts; anyio's
  ``run`` then makes its loop from that policy (the optional event loop under test).
- ``--unlimited``: the run's rate limiter is built with 10^9 requests/s instead of the
  job's ``rate.per_second`` (a job file takes at most 1,000/s). The limiter's code
  runs unchanged; it just never has to wait. For the throughput ceiling only.
- ``--ablate ledger``: the run's ledger writer skips the "sending" marks and answers;
  ``--ablate trace``: the client leaves out its second-send guard (its request class; the trace
  hook that tells whether a request's headers left stays, the outcome classes need it).

Each switch is an ``Ablations`` field the CLI passes to the constructors it concerns
(``RateLimiter``, ``LedgerWriter``, ``OneNetClient``): nothing of the dispatcher is patched.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--unlimited", action="store_true")
    parser.add_argument("--ablate", action="append", default=[], choices=("ledger", "trace"))
    parser.add_argument("--cprofile", type=Path, metavar="FILE")
    parser.add_argument("--pyinstrument", type=Path, metavar="FILE")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from dispatcher.cli import main as dispatch_main
    from dispatcher.runopts import Ablations

    ablations = Ablations(
        rate_limit=not args.unlimited,
        ledger_sends="ledger" not in args.ablate,
        second_send_guard="trace" not in args.ablate,
    )

    def cli_main(argv: list[str]) -> int:
        return dispatch_main(argv, ablations=ablations)

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
