"""Section ``memory``: peak memory against the fleet's size (4)."""

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
    write_job,
)
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    Add,
    Suite,
    dispatch_args,
    events,
    figures,
    fleet_of,
    log,
)


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    folder = suite.tmp / "fleets"
    out: list[dict[str, Any]] = []
    for size in scale.memory_sizes:
        fleet = fleet_of(suite, size)
        job = write_job(
            folder, size, rate=1000, concurrency=CONCURRENCY, fleet=fleet, name=f"job-{size}.yaml"
        )
        ledger = suite.tmp / f"memory-{size}.sqlite"
        sim = suite.sim
        sim.reset()
        m = measure(
            dispatch_args(job, suite, ledger, extra=("--limit", str(scale.memory_limit))),
            CHILD_ENV,
            sample=[sim.pid],
        )
        arrivals = Arrivals.of(sim)
        if m.returncode not in (0, 1) or arrivals.ok != scale.memory_limit:
            raise RuntimeError(f"memory {size}: exit {m.returncode}\n{m.stderr[-3000:]}")
        seen = events(m.stderr)
        row = {
            "devices": size,
            "csv_mb": round(fleet.stat().st_size / 2**20, 1),
            "sent": arrivals.count,
            **figures(m, arrivals, sim.pid),
            # from the process start to the run_started event: loading and checking every row
            "check_seconds": round(seen.get("run_started", m.started_at) - m.started_at, 2),
        }
        out.append(row)
        ledger.unlink()
        log(
            f"  {size:>9} devices: peak RSS {row['peak_rss_mb']:6.1f} MB, wall {m.seconds:6.1f} s"
            f" (checking the fleet {row['check_seconds']} s)"
        )
    base = out[0]["peak_rss_mb"]
    return {
        "limit": scale.memory_limit,
        "runs": out,
        "largest_vs_smallest": round(out[-1]["peak_rss_mb"] / base, 3),
    }


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    mem = result
    if mem:
        for x in mem["runs"]:
            add(
                f"4. peak RSS, {x['devices']:,} devices (--limit {mem['limit']:,})",
                f"{x['peak_rss_mb']:.1f} MB",
                note=f"{x['wall_seconds']:.0f} s, checking {x['check_seconds']:.0f} s",
            )
        add(
            "4. peak RSS largest / smallest fleet",
            f"{mem['largest_vs_smallest']:.2f}x",
            "< 1.3x",
            mem["largest_vs_smallest"] < 1.3,
        )
