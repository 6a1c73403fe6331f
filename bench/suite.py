"""What the benchmark sections share: the scale of a run, the suite's state, and the
helpers that start a client against the simulator and read its figures."""

from __future__ import annotations

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
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CHILD_CWD,
    CHILD_ENV,
    MACHINE,
    STEAL,
    Arrivals,
    Measured,
    Sim,
    measure,
    write_fleet,
    write_job,
)

PY = sys.executable


CONCURRENCY = 32


# A run during which other processes kept more than this many cores busy counts as
# disturbed: medians and ratios use the undisturbed runs when there are any.
QUIET = 0.3


MIN_QUIET = 2  # undisturbed runs (or pairs) needed to leave the disturbed ones out


RESUME_CAP = 240.0  # seconds; a resume slower than this is stopped (the suite has 10 minutes)


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
    paced_requests: int = 10_000  # the hot path: 10,000 requests at 1,000/s
    paced_rounds: int = 3


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
    paced_requests=1_000,
    paced_rounds=1,
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


def brief(f: dict[str, Any]) -> str:
    us = f.get("client_cpu_us_per_request")
    return (
        f"{f['requests_per_second']:8.1f} req/s  wall {f['wall_seconds']:6.2f} s"
        + (f"  client {us:6.0f} us/req" if us is not None else "")
        + (f" (busy {f['client_busy']:.2f})" if "client_busy" in f else "")
        + (f"  simulator busy {f['simulator_busy']:.2f}" if "simulator_busy" in f else "")
        + (f"  other {f['other_busy']:.2f}" if "other_busy" in f else "")
    )


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


def fleet_of(suite: Suite, devices: int) -> Path:
    """A CSV fleet of ``devices`` rows, written once per suite."""
    path = suite.tmp / "fleets" / f"fleet-{devices}.csv"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        write_fleet(path, devices)
    return path


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


def share(f: dict[str, float]) -> str:
    return f"{f['share']:6.1%}"


def pct(x: float) -> str:
    return f"{x:+.1%}"


# A section's rows: add(figure, value, target="", met=None, note="")
Add = Callable[..., None]
