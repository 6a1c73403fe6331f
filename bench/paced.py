"""Section ``hotpath``: a request's CPU cost at the job file's top rate (issue 15).

Every client sends the same 10,000 requests (``run --dry-run``'s) at 1,000/s with the same
concurrency; a client's cost is its whole process's CPU (start-up included, read with
wait4) over the requests. The ratios are bare / dispatcher (1.0: as cheap as the bare
loop). Also: the same without a rate (the ceiling), against the bare loop that keeps a
durable per-request record (a WAL write-ahead row, group commit), and the rate achieved
while another process keeps one of the two cores busy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Arrivals, dry_run, median, write_job  # noqa: E402
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    PY,
    Add,
    Suite,
    brief,
    client_run,
    dispatch_args,
    log,
    worst_window,
)

RATE = 1000
BUSY = "while True: pass"  # one core kept busy by another process


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    n = scale.paced_requests
    folder = suite.tmp / "hotpath"
    folder.mkdir()
    job = write_job(folder, n, rate=RATE, concurrency=CONCURRENCY)
    requests_file = folder / "requests.jsonl"
    dry_run(job, requests_file)
    counter = iter(range(10**6))

    def ledger() -> Path:
        return folder / f"ledger-{next(counter)}.sqlite"

    def peer(client: str, *flags: str) -> list[str]:
        return [
            *(PY, "-m", "bench.peers", client, str(requests_file), suite.sim.url),
            *("--concurrency", str(CONCURRENCY), "--ledger", str(ledger()), *flags),
        ]

    variants: list[tuple[str, Callable[[], list[str]]]] = [
        ("dispatcher", lambda: dispatch_args(job, suite, ledger())),
        ("aiohttp", lambda: peer("aiohttp", "--rate", str(RATE))),
        ("aiohttp_wal", lambda: peer("aiohttp-wal", "--rate", str(RATE))),
        ("dispatcher_unlimited", lambda: dispatch_args(job, suite, ledger(), "--unlimited")),
        ("aiohttp_unlimited", lambda: peer("aiohttp")),
    ]
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(scale.paced_rounds):
        shift = r % len(variants)
        done: dict[str, dict[str, Any]] = {}
        for label, args in variants[shift:] + variants[:shift]:
            done[label] = client_run(suite, args(), n, label=label)
            log(f"  round {r + 1} {label:<22} {brief(done[label])}")
        # the rate while another process keeps one core busy
        busy = subprocess.Popen([PY, "-c", BUSY])
        try:
            x = client_run(suite, dispatch_args(job, suite, ledger()), n, label="busy")
        finally:
            busy.kill()
            busy.wait()
        arrivals = Arrivals.of(suite.sim)
        deviation, _ = worst_window(arrivals.times, RATE)
        x["achieved_error"] = round(arrivals.rate / RATE - 1, 4)
        x["worst_window_error"] = round(deviation, 4)
        done["dispatcher_core_busy"] = x
        log(
            f"  round {r + 1} {'dispatcher, a core busy':<22} {brief(x)}"
            f" achieved {x['achieved_error']:+.2%}, worst 1-s window {deviation:.1%}"
        )
        rounds.append(done)
        for f in folder.glob("ledger-*"):
            f.unlink()

    def per_request(label: str) -> float:
        return median(
            [rd[label]["client_cpu_seconds"] / rd[label]["requests"] * 1e6 for rd in rounds]
        )

    def ratio(bare: str, ours: str) -> float:
        return round(
            median(
                [rd[bare]["client_cpu_seconds"] / rd[ours]["client_cpu_seconds"] for rd in rounds]
            ),
            3,
        )

    return {
        "requests": n,
        "rate": RATE,
        "rounds": len(rounds),
        "cpu_us_per_request": {label: round(per_request(label), 1) for label in rounds[0]},
        "ratio_paced": ratio("aiohttp", "dispatcher"),
        "ratio_unlimited": ratio("aiohttp_unlimited", "dispatcher_unlimited"),
        "ratio_wal_paced": ratio("aiohttp_wal", "dispatcher"),
        "core_busy_achieved_error": median(
            [rd["dispatcher_core_busy"]["achieved_error"] for rd in rounds]
        ),
        "core_busy_achieved_errors": [
            rd["dispatcher_core_busy"]["achieved_error"] for rd in rounds
        ],
        "core_busy_worst_window_error": median(
            [rd["dispatcher_core_busy"]["worst_window_error"] for rd in rounds]
        ),
        "runs": rounds,
    }


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    x = result
    if not x:
        return
    cpu = x["cpu_us_per_request"]
    add(
        f"H1. CPU per request at {x['rate']}/s, {x['requests']} requests (whole process)",
        f"dispatcher {cpu['dispatcher']:.0f} µs, bare aiohttp loop {cpu['aiohttp']:.0f} µs"
        f" ({x['rounds']} rounds, medians)",
        "",
        None,
    )
    add("H1. bare / dispatcher, paced", f"{x['ratio_paced']:.2f}", "≥ 0.6", x["ratio_paced"] >= 0.6)
    add(
        "H1. bare / dispatcher, no rate limit",
        f"{x['ratio_unlimited']:.2f} ({cpu['aiohttp_unlimited']:.0f} vs"
        f" {cpu['dispatcher_unlimited']:.0f} µs)",
        "",
        None,
    )
    add(
        "H1. bare loop + WAL record / dispatcher, paced",
        f"{x['ratio_wal_paced']:.2f} ({cpu['aiohttp_wal']:.0f} µs)",
        "",
        None,
    )
    add(
        f"H2. {x['rate']}/s achieved with one core busy",
        f"{x['core_busy_achieved_error']:+.2%} (rounds: "
        + ", ".join(f"{e:+.2%}" for e in x["core_busy_achieved_errors"])
        + f"); worst 1-s window {x['core_busy_worst_window_error']:.1%}",
        "within 1 %",
        abs(x["core_busy_achieved_error"]) <= 0.01,
    )
