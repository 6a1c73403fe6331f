"""Section ``profile``: where the CPU goes while sending, by layer (8)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    dry_run,
    write_job,
)
from bench.profiles import cprofile_listing, cprofile_summary, spy_summary  # noqa: E402
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    PY,
    Add,
    Suite,
    client_run,
    dispatch_args,
    log,
    py_spy,
    share,
    spy_args,
)


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    n = scale.profile_requests
    folder = suite.tmp / "profile"
    folder.mkdir()
    job = write_job(folder, n, rate=1000, concurrency=CONCURRENCY)
    out: dict[str, Any] = {"requests": n}
    spy = py_spy()
    ledger = folder / "ledger.sqlite"
    if spy is not None:
        samples = folder / "run.spy"
        run = client_run(
            suite,
            [*spy_args(spy, samples), *dispatch_args(job, suite, ledger, "--unlimited")],
            n,
            label="py-spy",
        )
        out["profiler"] = "py-spy"
        # the measured child is py-spy: its CPU figures are the profiler's, not the run's
        out["profiled_run"] = {
            k: run[k] for k in ("requests", "requests_per_second", "wall_seconds")
        }
        out["dispatcher"] = spy_summary(samples)
        # the bare loop under the same profiler: the same layers side by side
        m = n // 2
        requests_file = folder / "requests.jsonl"
        dry_run(job, requests_file)
        samples = folder / "loop.spy"
        client_run(
            suite,
            [
                *spy_args(spy, samples),
                *(PY, "-m", "bench.peers", "aiohttp", str(requests_file), suite.sim.url),
                *("--concurrency", str(CONCURRENCY), "--limit", str(m)),
            ],
            m,
            label="py-spy aiohttp loop",
        )
        out["aiohttp_loop"] = spy_summary(samples)
        d, loop = out["dispatcher"], out["aiohttp_loop"]
        log(f"  py-spy --gil, while sending: who holds the interpreter ({n} requests; loop {m}):")
        log(f"    {'dispatcher':>16} {'aiohttp loop':>16}")
        for layer, f in d["layers"].items():
            g = loop["layers"].get(layer, {"share": 0.0})
            if f["share"] >= 0.01 or g["share"] >= 0.01:
                log(f"    {share(f):>16} {share(g):>16}  {layer}")
    else:
        out["profiler"] = "cProfile (py-spy not available)"
    # Calls per request, on a smaller run: cProfile's counts are exact, its times inflated.
    k = scale.cprofile_requests
    (folder / "small").mkdir()
    small = write_job(folder / "small", k, rate=1000, concurrency=CONCURRENCY)
    profile = folder / "run.prof"
    out["cprofile_run"] = client_run(
        suite,
        dispatch_args(
            small, suite, folder / "small.sqlite", "--unlimited", "--cprofile", str(profile)
        ),
        k,
        label="cProfile",
    )
    out["cprofile"] = cprofile_summary(profile, k)
    Path(__file__).resolve().with_name("profile-run.txt").write_text(
        cprofile_listing(profile, f"cProfile of a {k}-request dispatcher run (no rate limit)"),
        encoding="utf-8",
    )
    log(f"  cProfile ({k} requests): calls per request of the busiest functions:")
    for f in out["cprofile"]["top_own"][:8]:
        log(f"    {f['calls_per_request']:6.2f}  {f['function']}")
    return out


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    prof = result
    if prof and "dispatcher" in prof:
        top = list(prof["dispatcher"]["layers"].items())[:4]
        add(
            f"8. py-spy, {prof['requests']:,} requests: CPU while sending, by layer",
            "; ".join(f"{layer} {f['share']:.0%}" for layer, f in top),
        )
