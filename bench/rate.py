"""Section ``rate``: rate accuracy at 50, 200 and 1,000 requests/s (3)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CHILD_ENV,
    Arrivals,
    measure,
    median,
    write_job,
)
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    MIN_QUIET,
    QUIET,
    Add,
    Suite,
    dispatch_args,
    figures,
    log,
    pct,
    worst_window,
)


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    folder = suite.tmp / "rate"
    folder.mkdir()
    targets = {
        50: int(50 * scale.rate_seconds),
        200: int(200 * scale.rate_seconds),
        1000: scale.rate_max_requests,
    }
    jobs = {}
    for rate, n in targets.items():
        sub = folder / str(rate)
        sub.mkdir()
        jobs[rate] = write_job(sub, n, rate=rate, concurrency=CONCURRENCY)
    runs: dict[int, list[dict[str, Any]]] = {rate: [] for rate in targets}
    for r in range(scale.rounds):
        for rate, n in targets.items():
            ledger = folder / f"ledger-{rate}-{r}.sqlite"
            sim = suite.sim
            sim.reset()
            m = measure(dispatch_args(jobs[rate], suite, ledger), CHILD_ENV, sample=[sim.pid])
            arrivals = Arrivals.of(sim)
            if m.returncode != 0 or arrivals.ok != n:
                raise RuntimeError(f"rate {rate}: exit {m.returncode}\n{m.stderr[-3000:]}")
            achieved = arrivals.rate
            deviation, count = worst_window(arrivals.times, rate)
            runs[rate].append(
                {
                    **figures(m, arrivals, sim.pid),
                    "achieved_error": round(achieved / rate - 1, 4),
                    "worst_window_error": round(deviation, 4),
                    "worst_window_count": count,
                }
            )
            log(
                f"  round {r + 1} {rate:>5}/s: achieved {achieved:8.2f}/s"
                f" ({achieved / rate - 1:+.2%}), worst 1-s window {count} ({deviation:.1%})"
                f"  other {runs[rate][-1].get('other_busy', 0):.2f}"
            )
    out: dict[str, Any] = {}
    for rate, every in runs.items():
        quiet = [i for i in every if float(i.get("other_busy", 0.0)) <= QUIET]
        items = quiet if len(quiet) >= MIN_QUIET else every
        out[str(rate)] = {
            "runs_used": len(items),
            "requests": targets[rate],
            "achieved_per_second": round(median([i["requests_per_second"] for i in items]), 2),
            "achieved_error": round(median([i["achieved_error"] for i in items]), 4),
            "worst_window_error": round(median([i["worst_window_error"] for i in items]), 4),
            "worst_window_error_max": max(i["worst_window_error"] for i in items),
            "client_cpu_us_per_request": median([i["client_cpu_us_per_request"] for i in items]),
            "client_busy": median([i["client_busy"] for i in items]),
            "simulator_busy": median([i["simulator_busy"] for i in items]),
            "runs": every,
        }
    return out


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    rate = result
    if rate:
        for target, x in rate.items():
            add(
                f"3. rate {target}/s: achieved over the run",
                f"{x['achieved_per_second']:.1f}/s ({pct(x['achieved_error'])}; {x.get('runs_used', '?')} runs)",
                "within 1 %",
                abs(x["achieved_error"]) <= 0.01,
            )
            add(
                f"3. rate {target}/s: worst 1-s window",
                f"{x['worst_window_error']:.1%} (max {x['worst_window_error_max']:.1%})",
                "within 5 %",
                x["worst_window_error"] <= 0.05,
            )
