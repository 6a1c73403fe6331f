"""The benchmark suite (issue 7): the dispatcher against its ceiling and against what an
operator would use instead, rate accuracy, memory, the ledger, resume, start-up, and a
profile of the hot path.

    python bench/run.py                  # everything, under ten minutes on 2 cores
    python -m bench --only throughput rate
    python -m bench --quick              # smaller figures, to try the suite out
    python -m bench --checkout DIR       # the dispatcher of another checkout (a branch)

A benchmark, not a test: it prints a table and writes ``bench/results.json`` (and the
cProfile listing ``bench/profile-run.txt``); it asserts nothing about speed.

Every client talks to the project's simulator on loopback, in a process of its own (on
uvloop, to keep it off the critical path; how busy it was is reported next to each
figure). Every client sends the same requests: those ``onenet-dispatch run --dry-run``
prints for the job. Rates are read from the simulator's arrival times (``GET
/_sim/requests``), first arrival to last, so start-up and shut-down count for no
client; CPU per request is the client's CPU over that same span, sampled from /proc,
as is the CPU other processes of the machine used meanwhile (a run during which they
used more than ``QUIET`` cores counts as disturbed). Each figure is a median of
several runs; each ratio is a median of ratios taken within one round, in which the
clients run one after the other, the order rotated from round to round, and only
pairs of undisturbed runs count when there are any. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CHILD_CWD,
    CHILD_ENV,
    KEY,
    MACHINE,
    STEAL,
    Arrivals,
    Measured,
    Sim,
    dry_run,
    machine,
    measure,
    median,
    simulator_process,
    use_checkout,
    write_fleet,
    write_job,
)
from bench.profiles import cprofile_listing, cprofile_summary, spy_summary  # noqa: E402

OUT = Path(__file__).resolve().with_name("results.json")
PY = sys.executable
CONCURRENCY = 32
# A run during which other processes kept more than this many cores busy counts as
# disturbed: medians and ratios use the undisturbed runs when there are any.
QUIET = 0.3
MIN_QUIET = 2  # undisturbed runs (or pairs) needed to leave the disturbed ones out
RESUME_CAP = 240.0  # seconds; a resume slower than this is stopped (the suite has 10 minutes)
SECTIONS = ("throughput", "rate", "memory", "ledger", "resume", "startup", "profile")


@dataclass(frozen=True)
class Scale:
    rounds: int = 3  # rate rounds (medians over these)
    throughput_rounds: int = 5
    throughput_requests: int = 3_000
    curl_requests: int = 800  # xargs + curl forks a process per request: a slice of the fleet
    rate_seconds: float = 10.0  # 50/s and 200/s runs last this long
    rate_max_requests: int = 5_000  # the 1,000/s run
    memory_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    memory_limit: int = 5_000  # devices sent by each memory run (--limit)
    resume_rows: int = 1_000_000
    resume_profile_rows: int = 50_000
    startup_runs: int = 5
    profile_requests: int = 20_000
    cprofile_requests: int = 5_000
    ledger_seconds: float = 1.0


QUICK = Scale(
    rounds=1,
    throughput_rounds=1,
    throughput_requests=1_000,
    curl_requests=200,
    rate_seconds=3.0,
    rate_max_requests=1_000,
    memory_sizes=(1_000, 10_000, 100_000),
    memory_limit=500,
    resume_rows=50_000,
    resume_profile_rows=10_000,
    startup_runs=2,
    profile_requests=2_000,
    cprofile_requests=1_000,
    ledger_seconds=0.3,
)


@dataclass
class Suite:
    scale: Scale
    tmp: Path
    fast: Path | None  # a tmpfs folder: the ledger's rows/s without the cost of fsync
    sim: Sim
    results: dict[str, Any] = field(default_factory=dict)


def log(text: str) -> None:
    print(text, flush=True)


def tmpfs_dir() -> Path | None:
    """A folder on a RAM file system (fsync costs nothing there), when the machine has one."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        parts = line.split()
        usable = len(parts) > 2 and parts[2] == "tmpfs" and os.access(parts[1], os.W_OK)
        if usable and parts[1] in ("/dev/shm", "/run/shm"):
            return Path(tempfile.mkdtemp(prefix="onenet-bench-", dir=parts[1]))
    return None


# -- running one client against the simulator ------------------------------------------


def dispatch_args(
    job: Path, suite: Suite, ledger: Path, *flags: str, extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        PY,
        "-m",
        "bench.dispatch",
        *flags,
        "--",
        "run",
        str(job),
        "--base-url",
        suite.sim.url,
        "--ledger",
        str(ledger),
        "--log-format",
        "json",
        "--progress-interval",
        "3600",
        *extra,
    ]


def events(stderr: str) -> dict[str, float]:
    """The run's JSON log events by name, as unix times (the last of each name)."""
    out = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "event" in event and "timestamp" in event:
            out[event["event"]] = datetime.fromisoformat(event["timestamp"]).timestamp()
    return out


def client_run(
    suite: Suite,
    args: list[str],
    expected: int,
    *,
    ok_codes: tuple[int, ...] = (0,),
    stdin: Path | None = None,
    label: str = "",
) -> dict[str, Any]:
    """One client sends ``expected`` requests to a freshly reset simulator; what it cost."""
    sim = suite.sim
    sim.reset()
    m = measure(args, CHILD_ENV, sample=[sim.pid], stdin=stdin)
    arrivals = Arrivals.of(sim)
    if m.returncode not in ok_codes or arrivals.count != expected or arrivals.ok != expected:
        raise RuntimeError(
            f"{label}: exit {m.returncode}, simulator saw {arrivals.count} requests"
            f" ({arrivals.ok} ok) of {expected}\n{m.stderr[-3000:]}"
        )
    return figures(m, arrivals, sim.pid)


def figures(m: Measured, arrivals: Arrivals, sim_pid: int) -> dict[str, Any]:
    t0, t1 = arrivals.times[0], arrivals.times[-1]
    n = arrivals.count
    out: dict[str, Any] = {
        "requests": n,
        "requests_per_second": round(arrivals.rate, 1),
        "wall_seconds": round(m.seconds, 3),
        "client_cpu_seconds": round(m.cpu_seconds, 3),
        "peak_rss_mb": round(m.max_rss_mb, 1),
    }
    if m.sampler is not None and n > 1:
        client = m.sampler.between(m.pid, t0, t1)
        sim_cpu = m.sampler.between(sim_pid, t0, t1)
        out["client_cpu_us_per_request"] = round(client / (n - 1) * 1e6, 1)
        out["client_busy"] = round(client / (t1 - t0), 3)  # cores used while sending
        out["simulator_cpu_seconds"] = round(sim_cpu, 3)
        out["simulator_busy"] = round(sim_cpu / (t1 - t0), 3)
        # cores the client could not have meanwhile: other processes, and the hypervisor
        other = m.sampler.between(MACHINE, t0, t1) - client - sim_cpu
        steal = m.sampler.between(STEAL, t0, t1)
        out["steal_busy"] = round(steal / (t1 - t0), 3)
        out["other_busy"] = round((max(0.0, other) + steal) / (t1 - t0), 3)
    return out


# -- 1, 2, 5b, 8b: throughput rounds ------------------------------------------------------


def curl_input(requests_file: Path, out: Path, base_url: str, count: int) -> None:
    """``'BODY' URL`` lines for ``xargs -L 1 curl ... --data-binary``."""
    with requests_file.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for _, line in zip(range(count), src, strict=False):
            r = json.loads(line)
            if r["method"] != "POST" or r["body"] is None:
                raise RuntimeError("the curl peer sends writes only")
            body = json.dumps(r["body"], ensure_ascii=False, separators=(",", ":"))
            url = re.sub(r"^https?://[^/]+", base_url, r["url"])
            dst.write(f"'{body}' {url}\n")


def section_throughput(suite: Suite) -> dict[str, Any]:
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
            log(f"  round {r + 1} {label:<24} {_brief(done[label])}")
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


def _brief(f: dict[str, Any]) -> str:
    us = f.get("client_cpu_us_per_request")
    return (
        f"{f['requests_per_second']:8.1f} req/s  wall {f['wall_seconds']:6.2f} s"
        + (f"  client {us:6.0f} us/req" if us is not None else "")
        + (f" (busy {f['client_busy']:.2f})" if "client_busy" in f else "")
        + (f"  simulator busy {f['simulator_busy']:.2f}" if "simulator_busy" in f else "")
        + (f"  other {f['other_busy']:.2f}" if "other_busy" in f else "")
    )


# -- 3: rate accuracy ---------------------------------------------------------------------


def worst_window(times: list[float], rate: float, step: float = 0.05) -> tuple[float, float]:
    """The 1-second window (sliding by ``step``) whose count is farthest from ``rate``:
    its relative deviation and its count."""
    worst, worst_count = 0.0, rate
    t = times[0]
    while t + 1.0 <= times[-1]:
        count = bisect.bisect_left(times, t + 1.0) - bisect.bisect_left(times, t)
        deviation = abs(count - rate) / rate
        if deviation > worst:
            worst, worst_count = deviation, count
        t += step
    return worst, worst_count


def section_rate(suite: Suite) -> dict[str, Any]:
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


# -- 4: memory ----------------------------------------------------------------------------


def fleet_of(suite: Suite, devices: int) -> Path:
    """A CSV fleet of ``devices`` rows, written once per suite."""
    path = suite.tmp / "fleets" / f"fleet-{devices}.csv"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        write_fleet(path, devices)
    return path


def section_memory(suite: Suite) -> dict[str, Any]:
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


# -- 5a: ledger rows/s --------------------------------------------------------------------


def section_ledger(suite: Suite) -> dict[str, Any]:
    out: dict[str, Any] = {}
    places = {"disk": suite.tmp / "ledger-rate"}
    if suite.fast is not None:
        places["tmpfs"] = suite.fast / "ledger-rate"
    for where, folder in places.items():
        folder.mkdir()
        done = subprocess.run(
            [
                PY,
                "-m",
                "bench.ledger_rate",
                str(folder),
                "--seconds",
                str(suite.scale.ledger_seconds),
            ],
            env={**os.environ, **CHILD_ENV},
            cwd=CHILD_CWD,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        out[where] = {
            str(r["batch"]): {k: round(v, 1) for k, v in r.items() if k != "batch"} for r in rows
        }
        for r in rows:
            log(
                f"  {where:<5} batch {r['batch']:>3}: {r['rows_per_second']:9.0f} rows/s"
                f"  {r['commits_per_second']:7.0f} commits/s"
            )
        shutil.rmtree(folder)
    return out


# -- 6: resume ----------------------------------------------------------------------------


def completed_ledger(suite: Suite, rows: int, name: str) -> tuple[Path, Path, float]:
    """A job over ``rows`` devices (one command each) and the ledger of its finished run."""
    fleet = fleet_of(suite, rows)
    job = write_job(
        fleet.parent, rows, rate=1000, concurrency=CONCURRENCY, fleet=fleet, name=f"{name}.yaml"
    )
    ledger = suite.tmp / f"{name}.sqlite"
    started = time.perf_counter()
    subprocess.run(
        [PY, "-m", "bench.resume", str(job), str(ledger), suite.sim.url],
        env={**os.environ, **CHILD_ENV},
        cwd=CHILD_CWD,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return job, ledger, time.perf_counter() - started


def rerun(suite: Suite, job: Path, ledger: Path) -> dict[str, Any] | None:
    """``run`` again on a ledger with nothing left to send: how long, and where the time went
    (from the run's log events); None when it was stopped at RESUME_CAP."""
    suite.sim.reset()
    m = measure(
        dispatch_args(job, suite, ledger), CHILD_ENV, capture_stdout=True, timeout=RESUME_CAP
    )
    if m.seconds >= RESUME_CAP:
        return None  # killed: the suite must stay within its time
    sent = re.search(r"this invocation: (\d+) requests sent, (\d+) devices already done", m.stdout)
    if m.returncode != 0 or sent is None or sent.group(1) != "0":
        raise RuntimeError(f"resume: exit {m.returncode}\n{m.stdout[-2000:]}\n{m.stderr[-2000:]}")
    seen = events(m.stderr)
    end = m.started_at + m.seconds
    marks = [
        # interpreter, imports, loading the job, checking every row, opening the ledger
        ("check", m.started_at, seen.get("run_started")),
        ("other_before", seen.get("run_started"), seen.get("wave_started")),
        # the engine's producer: the plan streamed again, each batch registered in the ledger
        ("stream_and_register", seen.get("wave_started"), seen.get("wave_finished")),
        # counts, the report and the summary on stdout
        ("report_and_exit", seen.get("run_ended"), end),
    ]
    return {
        "seconds": round(m.seconds, 2),
        "cpu_seconds": round(m.cpu_seconds, 2),
        "peak_rss_mb": round(m.max_rss_mb, 1),
        "devices_already_done": int(sent.group(2)),
        "phases_seconds": {k: round(b - a, 2) for k, a, b in marks if a and b},
        "events": sorted(seen),
    }


def section_resume(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    job, ledger, filled = completed_ledger(suite, scale.resume_rows, "resume")
    log(f"  filled a {scale.resume_rows}-row ledger in {filled:.1f} s")
    result: dict[str, Any] = {
        "rows": scale.resume_rows,
        "fill_seconds": round(filled, 1),
        "ledger_mb": round(ledger.stat().st_size / 2**20, 1),
    }
    # The first rerun finds a ledger filled through the API: nothing records that a run
    # of these files completed, so it takes the full path (check, then stream and
    # register every device). The second is a rerun of a run whose last pass completed.
    for name in ("first_rerun", "second_rerun"):
        done = rerun(suite, job, ledger)
        result[name] = done
        if done is None:
            log(f"  {name}: over {RESUME_CAP:.0f} s, stopped")
            break
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in done["phases_seconds"].items())
        log(
            f"  {name} of a completed {scale.resume_rows}-row run: {done['seconds']:.1f} s ({phases})"
        )
    for f in suite.tmp.glob("resume.sqlite*"):
        f.unlink()
    # Where the time goes, on a smaller ledger.
    rows = scale.resume_profile_rows
    job, ledger, _ = completed_ledger(suite, rows, "resume-profile")
    spy = py_spy()
    if spy is not None:
        samples = suite.tmp / "resume.spy"
        m = measure([*spy_args(spy, samples), *dispatch_args(job, suite, ledger)], CHILD_ENV)
        summary = spy_summary(samples, only_sending=False)
    else:
        profile = suite.tmp / "resume.prof"
        m = measure(dispatch_args(job, suite, ledger, "--cprofile", str(profile)), CHILD_ENV)
        summary = cprofile_summary(profile, rows)
    if m.returncode != 0:
        raise RuntimeError(f"resume profile: exit {m.returncode}\n{m.stderr[-2000:]}")
    result["profile"] = {"rows": rows, "profiler": "py-spy" if spy else "cProfile", **summary}
    return result


# -- 7: start-up --------------------------------------------------------------------------


def section_startup(suite: Suite) -> dict[str, Any]:
    folder = suite.tmp / "startup"
    folder.mkdir()
    job = write_job(folder, 10, rate=50, concurrency=4)
    cli = str(Path(PY).with_name("onenet-dispatch"))
    if not Path(cli).exists():
        cli = shutil.which("onenet-dispatch") or cli
    # As installed: with the bytecode cache (an install compiles it; a first run writes it).
    env = {**CHILD_ENV, "PYTHONDONTWRITEBYTECODE": ""}
    out: dict[str, Any] = {}
    for label, args in (("help", [cli, "--help"]), ("validate", [cli, "validate", str(job)])):
        measure(args, env)  # warm: the bytecode cache and the page cache
        walls = []
        for _ in range(suite.scale.startup_runs):
            m = measure(args, env)
            if m.returncode != 0:
                raise RuntimeError(f"{label}: exit {m.returncode}\n{m.stderr[-2000:]}")
            walls.append(m.seconds)
        out[label] = {
            "median_seconds": round(median(walls), 3),
            "runs": [round(w, 3) for w in walls],
        }
        log(f"  {label:<8} {median(walls):.3f} s (median of {len(walls)})")
    m = measure([PY, "-X", "importtime", "-m", "dispatcher", "validate", str(job)], env)
    out["validate_imports"] = import_times(m.stderr)
    log(f"  validate imports {out['validate_imports']['total_ms']:.0f} ms; heaviest:")
    for item in out["validate_imports"]["heaviest"][:6]:
        log(f"    {item['ms']:6.0f} ms  {item['module']}")
    return out


def import_times(stderr: str, top: int = 12) -> dict[str, Any]:
    """``-X importtime`` output: the total, and the heaviest imports two levels deep."""
    total = 0
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not match:
            continue
        cumulative, depth, name = int(match.group(2)), len(match.group(3)) // 2, match.group(4)
        if depth == 0:
            total += cumulative
        if depth <= 2:
            rows.append((cumulative, depth, name))
    rows.sort(reverse=True)
    return {
        "total_ms": round(total / 1000, 1),
        "heaviest": [
            {"module": name, "depth": depth, "ms": round(us / 1000, 1)}
            for us, depth, name in rows[:top]
        ],
    }


# -- 8: profile of the hot path -----------------------------------------------------------


def py_spy() -> str | None:
    """py-spy, when installed and allowed to read another process (ptrace)."""
    found = Path(PY).with_name("py-spy")
    spy = str(found) if found.exists() else shutil.which("py-spy")
    if spy is None:
        return None
    probe = subprocess.run(
        [
            spy,
            "record",
            "-f",
            "raw",
            "-o",
            os.devnull,
            "--",
            PY,
            "-c",
            "import time; time.sleep(0.3)",
        ],
        capture_output=True,
        check=False,
    )
    return spy if probe.returncode == 0 else None


def spy_args(spy: str, out: Path) -> list[str]:
    return [
        *(spy, "record", "--gil", "--threads", "--full-filenames", "--nonblocking"),
        *("--rate", "250", "--format", "raw", "--output", str(out), "--"),
    ]


def section_profile(suite: Suite) -> dict[str, Any]:
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
                log(f"    {_share(f):>16} {_share(g):>16}  {layer}")
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
    OUT.with_name("profile-run.txt").write_text(
        cprofile_listing(profile, f"cProfile of a {k}-request dispatcher run (no rate limit)"),
        encoding="utf-8",
    )
    log(f"  cProfile ({k} requests): calls per request of the busiest functions:")
    for f in out["cprofile"]["top_own"][:8]:
        log(f"    {f['calls_per_request']:6.2f}  {f['function']}")
    return out


def _share(f: dict[str, float]) -> str:
    return f"{f['share']:6.1%}"


# -- the table ------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: what, the value, the target, met or not."""
    rows: list[dict[str, Any]] = []

    def add(
        figure: str, value: str, target: str = "", met: bool | None = None, note: str = ""
    ) -> None:
        rows.append({"figure": figure, "value": value, "target": target, "met": met, "note": note})

    t = results.get("throughput")
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
    rate = results.get("rate")
    if rate:
        for target, x in rate.items():
            add(
                f"3. rate {target}/s: achieved over the run",
                f"{x['achieved_per_second']:.1f}/s ({_pct(x['achieved_error'])}; {x.get('runs_used', '?')} runs)",
                "within 1 %",
                abs(x["achieved_error"]) <= 0.01,
            )
            add(
                f"3. rate {target}/s: worst 1-s window",
                f"{x['worst_window_error']:.1%} (max {x['worst_window_error_max']:.1%})",
                "within 5 %",
                x["worst_window_error"] <= 0.05,
            )
    mem = results.get("memory")
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
    led = results.get("ledger")
    if led:
        for where, batches in led.items():
            add(
                f"5. Ledger.apply rows/s ({where})",
                ", ".join(f"batch {b}: {x['rows_per_second']:,.0f}" for b, x in batches.items()),
            )
    res = results.get("resume")
    if res and "first_rerun" in res:
        for name, label in (
            ("second_rerun", "6. rerun of a completed {:,}-row run"),
            ("first_rerun", "6. the same, first rerun of a ledger filled through the API"),
        ):
            done = res.get(name)
            value = f"> {RESUME_CAP:.0f} s" if done is None else f"{done['seconds']:.1f} s"
            met = done is not None and done["seconds"] < 20
            if name == "first_rerun" and done is not None:
                value += (
                    " ("
                    + ", ".join(f"{k} {v:.1f} s" for k, v in done["phases_seconds"].items())
                    + ")"
                )
            add(label.format(res["rows"]), value, "< 20 s", met)
    elif res:  # results written before the second rerun was measured
        add(
            f"6. rerun of a completed {res['rows']:,}-row run",
            f"{res['seconds']:.1f} s",
            "< 20 s",
            res["seconds"] < 20,
        )
    st = results.get("startup")
    if st:
        add("7. onenet-dispatch --help", f"{st['help']['median_seconds']:.2f} s")
        add("7. onenet-dispatch validate (10 devices)", f"{st['validate']['median_seconds']:.2f} s")
    prof = results.get("profile")
    if prof and "dispatcher" in prof:
        top = list(prof["dispatcher"]["layers"].items())[:4]
        add(
            f"8. py-spy, {prof['requests']:,} requests: CPU while sending, by layer",
            "; ".join(f"{layer} {f['share']:.0%}" for layer, f in top),
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["figure"]) for r in rows)
    vwidth = min(70, max(len(r["value"]) for r in rows))
    print()
    print(f"{'figure':<{width}}  {'value':<{vwidth}}  {'target':<8}  met")
    print("-" * (width + vwidth + 20))
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['figure']:<{width}}  {r['value']:<{vwidth}}  {r['target']:<8}  {met}{note}")


def print_markdown(rows: list[dict[str, Any]]) -> None:
    print("| figure | value | target | met |")
    print("|---|---|---|---|")
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['figure']} | {r['value']}{note} | {r['target']} | {met} |")


def git_state(checkout: Path) -> dict[str, Any]:
    """Which code was measured: the commit, and what in dispatcher/ differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "checkout": "this one" if checkout == ROOT else "another (--checkout)",
        "commit": git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_in_dispatcher": git("status", "--porcelain", "--", "dispatcher").splitlines(),
    }


SECTION_FUNCS: dict[str, Callable[[Suite], dict[str, Any]]] = {
    "throughput": section_throughput,
    "rate": section_rate,
    "memory": section_memory,
    "ledger": section_ledger,
    "resume": section_resume,
    "startup": section_startup,
    "profile": section_profile,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"some of: {' '.join(SECTIONS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small figures, to try the suite out")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where the JSON goes (default bench/results.json)"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="measure the dispatcher package of another checkout (e.g. a git worktree)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table of an existing results file (--out) as markdown; run nothing",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print_markdown(table(json.loads(args.out.read_text(encoding="utf-8"))))
        return 0
    if args.checkout.resolve() != ROOT:
        use_checkout(args.checkout)
    scale = QUICK if args.quick else Scale()
    sections = args.only or list(SECTIONS)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(args.checkout.resolve()),
        "scale": scale.__dict__,
        "concurrency": CONCURRENCY,
        "section_seconds": {},
    }
    failed: list[str] = []
    fast = tmpfs_dir()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="onenet-bench-") as tmp,
            simulator_process(uvloop=True) as (url, proc),
        ):
            suite = Suite(scale, Path(tmp), fast, Sim(url, proc), results)
            for name in sections:
                log(f"{name}:")
                t0 = time.perf_counter()
                try:
                    results[name] = SECTION_FUNCS[name](suite)
                except Exception as exc:  # one broken section must not cost the others' figures
                    failed.append(name)
                    results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                    log(f"  FAILED: {type(exc).__name__}: {str(exc)[:3000]}")
                took = round(time.perf_counter() - t0, 1)
                results["section_seconds"][name] = took
                log(f"  ({took} s)")
                args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    finally:
        if fast is not None:
            shutil.rmtree(fast, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = os.getloadavg()
    rows = table(results)
    results["table"] = rows
    print_table(rows)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\n{results['seconds']:.0f} s in all; wrote {args.out}")
    if failed:
        print(f"sections that failed: {', '.join(failed)} (see 'errors' in the JSON)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
