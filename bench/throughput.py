"""Section ``throughput``: the dispatcher's ceiling against what an operator would use instead (1, 2, 5, 8)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    KEY,
    dry_run,
    median,
    write_job,
)
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    MIN_QUIET,
    PY,
    QUIET,
    Add,
    Suite,
    brief,
    client_run,
    curl_input,
    dispatch_args,
    log,
)


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    n = scale.throughput_requests
    folder = suite.tmp / "throughput"
    folder.mkdir()
    job = write_job(folder, n, rate=1000, concurrency=CONCURRENCY)
    requests_file = folder / "requests.jsonl"
    dry_run(job, requests_file)
    curl_file = folder / "curl.txt"
    curl_input(requests_file, curl_file, suite.sim.url, scale.curl_requests)
    counter = iter(range(10**6))

    def ledger() -> Path:
        return folder / f"ledger-{next(counter)}.sqlite"

    def peer(client: str, *flags: str) -> list[str]:
        return [
            *(PY, "-m", "bench.peers", client, str(requests_file), suite.sim.url),
            *("--concurrency", str(CONCURRENCY), "--ledger", str(ledger()), *flags),
        ]

    curl = ["xargs", "-P", str(CONCURRENCY), "-L", "1", "curl", "-s", "-o", os.devnull]
    curl += ["-H", f"api-key: {KEY}", "-H", "Content-Type: application/json", "--data-binary"]
    variants: list[tuple[str, Callable[[], list[str]], int, tuple[int, ...], Path | None]] = [
        ("dispatcher", lambda: dispatch_args(job, suite, ledger(), "--unlimited"), n, (0,), None),
        (
            "dispatcher_uvloop",
            lambda: dispatch_args(job, suite, ledger(), "--unlimited", "--uvloop"),
            n,
            (0,),
            None,
        ),
        (
            "dispatcher_no_trace",
            lambda: dispatch_args(job, suite, ledger(), "--unlimited", "--ablate", "trace"),
            n,
            (0,),
            None,
        ),
        # The answers are not recorded: the run ends with pending rows, exit 1.
        (
            "dispatcher_no_ledger",
            lambda: dispatch_args(job, suite, ledger(), "--unlimited", "--ablate", "ledger"),
            n,
            (1,),
            None,
        ),
        ("aiohttp", lambda: peer("aiohttp"), n, (0,), None),
        ("aiohttp_uvloop", lambda: peer("aiohttp", "--uvloop"), n, (0,), None),
        ("aiohttp_wal", lambda: peer("aiohttp-wal"), n, (0,), None),
        ("requests_threads", lambda: peer("requests"), n, (0,), None),
        ("xargs_curl", lambda: curl, scale.curl_requests, (0,), curl_file),
    ]
    # Warm-up, not recorded: the first run after the simulator starts is slower (caches,
    # the simulator's first connections), and it would always be round 1's first client.
    for label, args, expected, codes, stdin in variants:
        if label in ("dispatcher", "aiohttp"):
            client_run(suite, args(), expected, ok_codes=codes, stdin=stdin, label=label)
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(scale.throughput_rounds):
        shift = r % len(variants)
        done: dict[str, dict[str, Any]] = {}
        for label, args, expected, codes, stdin in variants[shift:] + variants[:shift]:
            done[label] = client_run(
                suite, args(), expected, ok_codes=codes, stdin=stdin, label=label
            )
            if label == "xargs_curl":
                # the work is in the curl processes, which the sampler does not see; wait4
                # counts them (xargs reaps each one)
                x = done[label]
                x["client_cpu_us_per_request"] = round(
                    x["client_cpu_seconds"] / x["requests"] * 1e6, 1
                )
                x.pop("client_busy", None)
                x.pop("other_busy", None)  # its curl processes are the "other" work
                x.pop("steal_busy", None)
            log(f"  round {r + 1} {label:<24} {brief(done[label])}")
        rounds.append(done)
    for f in folder.glob("ledger-*"):
        f.unlink()

    def clean(run: dict[str, Any]) -> bool:
        return float(run.get("other_busy", 0.0)) <= QUIET

    def paired(a: str, b: str) -> list[dict[str, dict[str, Any]]]:
        """The rounds in which neither run was disturbed by other work; all of them when
        fewer than MIN_QUIET were undisturbed (one run alone says too little)."""
        quiet = [x for x in rounds if clean(x[a]) and clean(x[b])]
        enough = len(quiet) >= MIN_QUIET
        used[f"{a} / {b}"] = len(quiet) if enough else 0
        return quiet if enough else rounds

    def ratio(a: str, b: str, key: str = "requests_per_second", invert: bool = False) -> float:
        """Median over rounds of a's figure over b's, each pair from the same round."""
        values = [x[a][key] / x[b][key] for x in paired(a, b)]
        return round(median([1 / v for v in values] if invert else values), 3)

    def cost(a: str, b: str, key: str = "requests_per_second") -> float:
        """Median share of throughput lost going from b to a (1 - a/b), same round."""
        if key == "requests_per_second":
            return round(median([1 - x[a][key] / x[b][key] for x in paired(a, b)]), 3)
        return round(median([x[a][key] / x[b][key] - 1 for x in paired(a, b)]), 3)

    used: dict[str, int] = {}  # undisturbed pairs behind each ratio (0: too few, all used)
    med = {}
    for label in rounds[0]:
        runs = [x[label] for x in rounds if clean(x[label])]
        runs = runs if len(runs) >= MIN_QUIET else [x[label] for x in rounds]
        med[label] = {
            key: round(median([run[key] for run in runs]), 3)
            for key in rounds[0][label]
            if isinstance(rounds[0][label][key], (int, float))
        }
        med[label]["runs_used"] = len(runs)
    cpu = "client_cpu_us_per_request"
    ratios = {
        "dispatcher_vs_aiohttp": ratio("dispatcher", "aiohttp"),
        # the same comparison by CPU per request (the loop's over the dispatcher's)
        "dispatcher_vs_aiohttp_by_cpu": ratio("dispatcher", "aiohttp", cpu, invert=True),
        "dispatcher_uvloop_vs_aiohttp": ratio("dispatcher_uvloop", "aiohttp"),
        "dispatcher_vs_requests_threads": ratio("dispatcher", "requests_threads"),
        "dispatcher_vs_xargs_curl": ratio("dispatcher", "xargs_curl"),
        "dispatcher_uvloop_vs_dispatcher": ratio("dispatcher_uvloop", "dispatcher"),
        "dispatcher_uvloop_cpu_vs_dispatcher": ratio("dispatcher_uvloop", "dispatcher", cpu),
        "dispatcher_no_trace_vs_dispatcher": ratio("dispatcher_no_trace", "dispatcher"),
        "dispatcher_no_trace_cpu_vs_dispatcher": ratio("dispatcher_no_trace", "dispatcher", cpu),
        "aiohttp_uvloop_vs_aiohttp": ratio("aiohttp_uvloop", "aiohttp"),
        "aiohttp_uvloop_cpu_vs_aiohttp": ratio("aiohttp_uvloop", "aiohttp", cpu),
    }
    ledger_cost = {
        # what a durable write-ahead record costs a lean client at the least
        "minimal_loop": cost("aiohttp_wal", "aiohttp"),
        "minimal_loop_cpu": cost("aiohttp_wal", "aiohttp", cpu),
        # the dispatcher with vs without its per-request ledger operations
        "dispatcher": cost("dispatcher", "dispatcher_no_ledger"),
        "dispatcher_cpu": cost("dispatcher", "dispatcher_no_ledger", cpu),
    }
    # Of the dispatcher's extra time per request over the bare loop, the part its ledger
    # takes (time per request = 1 / rate, each from the same round).
    shares = []
    for x in paired("dispatcher", "dispatcher_no_ledger"):
        gap = 1 / x["dispatcher"]["requests_per_second"] - 1 / x["aiohttp"]["requests_per_second"]
        own = (
            1 / x["dispatcher"]["requests_per_second"]
            - 1 / x["dispatcher_no_ledger"]["requests_per_second"]
        )
        shares.append(own / gap if gap > 0 else float("nan"))
    ledger_cost["share_of_gap_to_aiohttp"] = round(median(shares), 3)
    return {
        "requests": n,
        "curl_requests": scale.curl_requests,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "median": med,
        "ratios": ratios,
        "ledger_cost": ledger_cost,
        "quiet_threshold_cores": QUIET,
        "quiet_pairs": used,
    }


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    t = result
    if t:
        m, r = t["median"], t["ratios"]

        def line(label: str) -> str:
            x = m[label]
            return (
                f"{x['requests_per_second']:.0f} req/s, {x['client_cpu_us_per_request']:.0f} us CPU/req"
                f" (simulator busy {x['simulator_busy']:.2f}; {x.get('runs_used', '?')} runs)"
            )

        add("1. dispatcher, no rate limit, durable ledger", line("dispatcher"))
        add("1. minimal aiohttp loop (no ledger)", line("aiohttp"))
        add(
            "1. dispatcher / aiohttp loop",
            f"{r['dispatcher_vs_aiohttp']:.2f}",
            ">= 0.85",
            r["dispatcher_vs_aiohttp"] >= 0.85,
        )
        add(
            "1. dispatcher / aiohttp loop, by CPU per request",
            f"{r['dispatcher_vs_aiohttp_by_cpu']:.2f}",
            ">= 0.85",
            r["dispatcher_vs_aiohttp_by_cpu"] >= 0.85,
        )
        add("2. requests + thread pool", line("requests_threads"))
        add(
            "2. dispatcher / requests + threads",
            f"{r['dispatcher_vs_requests_threads']:.2f}x",
            ">= 3x",
            r["dispatcher_vs_requests_threads"] >= 3,
        )
        add("2. xargs -P 32 curl", line("xargs_curl"))
        add(
            "2. dispatcher / xargs curl",
            f"{r['dispatcher_vs_xargs_curl']:.2f}x",
            ">= 10x",
            r["dispatcher_vs_xargs_curl"] >= 10,
        )
        c = t["ledger_cost"]
        add(
            "5. ledger cost in the dispatcher (with vs without its ledger ops)",
            f"{c['dispatcher']:.1%} slower; {c['dispatcher_cpu']:+.1%} CPU/req",
            "<= 10 %",
            c["dispatcher"] <= 0.10,
        )
        add(
            "5. ledger cost, minimal loop + WAL write-ahead",
            f"{c['minimal_loop']:.1%} slower; {c['minimal_loop_cpu']:+.1%} CPU/req",
            "<= 10 %",
            c["minimal_loop"] <= 0.10,
        )
        add(
            "5. ledger's share of the dispatcher's gap to the loop",
            f"{c['share_of_gap_to_aiohttp']:.0%}",
        )
        add(
            "8. dispatcher on uvloop",
            line("dispatcher_uvloop"),
            note=f"{r['dispatcher_uvloop_vs_dispatcher']:.2f}x the default loop's rate,"
            f" {r['dispatcher_uvloop_cpu_vs_dispatcher']:.2f}x its CPU/req",
        )
        add(
            "8. aiohttp loop on uvloop",
            line("aiohttp_uvloop"),
            note=f"{r['aiohttp_uvloop_vs_aiohttp']:.2f}x the default loop's rate,"
            f" {r['aiohttp_uvloop_cpu_vs_aiohttp']:.2f}x its CPU/req",
        )
        add(
            "8. dispatcher without aiohttp tracing",
            line("dispatcher_no_trace"),
            note=f"{r['dispatcher_no_trace_vs_dispatcher']:.2f}x the rate with it,"
            f" {r['dispatcher_no_trace_cpu_vs_dispatcher']:.2f}x its CPU/req",
        )
