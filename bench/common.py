"""Helpers shared by the benchmark scripts: fleets, a simulator process, measured children."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
# Children import this checkout (``bench.*``, ``dispatcher``) whatever the working directory.
CHILD_ENV = {
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    "ONENET_API_KEY": KEY,
}
# ... and run from a neutral folder: ``python -m`` puts the working directory first on the path.
CHILD_CWD = tempfile.gettempdir()


def use_checkout(checkout: Path) -> None:
    """Children import ``dispatcher`` from another checkout (``bench`` still from this one):
    to measure a branch, or HEAD while the working tree is being edited."""
    if not (checkout / "dispatcher" / "__init__.py").is_file():
        raise SystemExit(f"{checkout}: no dispatcher package there")
    paths = (str(checkout.resolve()), str(ROOT), os.environ.get("PYTHONPATH"))
    CHILD_ENV["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)


def luhn(first14: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(first14)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return first14 + str((10 - total % 10) % 10)


def write_fleet(path: Path, devices: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("imei,server_ip\n")
        for i in range(devices):
            out.write(f"{luhn(f'86{i:012d}')},10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")


def write_job(
    directory: Path,
    devices: int,
    *,
    rate: float,
    concurrency: int,
    commands: str | None = None,
    fleet: Path | None = None,
    name: str = "job.yaml",
) -> Path:
    """A job with one CSV fleet of ``devices`` (written beside it unless ``fleet`` is given)."""
    if fleet is None:
        fleet = directory / "fleet.csv"
        write_fleet(fleet, devices)
    job = directory / name
    job.write_text(
        f"""version: 1
name: bench
fleets:
  - name: all
    csv: {fleet.name if fleet.parent == directory else fleet.resolve()}
window: {{valid_time: now, expired_time: +48h}}
commands:
{commands or '  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5750, val: "{server_ip}"}]}'}
rate: {{per_second: {rate}, concurrency: {concurrency}}}
""",
        encoding="utf-8",
    )
    return job


def dry_run(job: Path, out: Path) -> int:
    """The exact requests a run of ``job`` sends, as ``run --dry-run`` writes them; how many."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dispatcher",
            "run",
            str(job),
            "--dry-run",
            "--requests-out",
            str(out),
            "--base-url",
            "http://127.0.0.1:9",
        ],
        env={**os.environ, **CHILD_ENV},
        cwd=CHILD_CWD,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"(\d+) requests", done.stdout + done.stderr)
    return int(match.group(1)) if match else sum(1 for _ in out.open())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


MACHINE = 0  # pseudo-pids under which CpuSampler records the whole machine's busy CPU ...
STEAL = -1  # ... and the CPU time the hypervisor gave to other machines (steal)


def _cpu_line() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have been busy since boot (Linux /proc/stat),
    steal and idle left out."""
    user, nice, system, _idle, _iowait, irq, softirq = _cpu_line()[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def machine_steal_seconds() -> float:
    """CPU seconds a virtual machine's CPUs were ready to run but given to another guest."""
    fields = _cpu_line()
    return (fields[7] if len(fields) > 7 else 0) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """CPU seconds of some processes, read every ``interval`` s, to tell a run's steady state
    from its start-up: ``between(pid, t0, t1)`` is the CPU a process used between two
    wall-clock (``time.time()``) instants, interpolated between samples. Pid ``MACHINE``
    is every process of the machine: what is left after the client and the simulator is
    other work competing for the cores; pid ``STEAL`` is the time the hypervisor took the
    CPUs away (both: the noise of the figure)."""

    def __init__(self, pids: Sequence[int], interval: float = 0.02) -> None:
        self.pids = [MACHINE, STEAL, *pids]
        self.interval = interval
        self.samples: dict[int, list[tuple[float, float]]] = {pid: [] for pid in self.pids}
        self._reads = {MACHINE: machine_busy_seconds, STEAL: machine_steal_seconds}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, pid: int) -> None:
        self.samples.setdefault(pid, [])
        self.pids.append(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for pid in list(self.pids):
                try:
                    read = self._reads.get(pid)
                    self.samples[pid].append((now, read() if read else cpu_seconds(pid)))
                except (OSError, ValueError, IndexError):
                    self.pids.remove(pid)  # gone (or reaped)
            self._stop.wait(self.interval)

    def at(self, pid: int, t: float) -> float:
        points = self.samples[pid]
        if not points:
            return 0.0
        if t <= points[0][0]:
            return points[0][1]
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1
        return points[-1][1]

    def between(self, pid: int, t0: float, t1: float) -> float:
        return self.at(pid, t1) - self.at(pid, t0)


@dataclass
class Measured:
    returncode: int
    seconds: float
    max_rss_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str
    started_at: float = 0.0  # time.time() at start
    sampler: CpuSampler | None = field(default=None, repr=False)
    pid: int = 0


def measure(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    sample: Sequence[int] = (),
    capture_stdout: bool = False,
    timeout: float | None = None,
    stdin: Path | None = None,
) -> Measured:
    """Run a child to its end; its own peak RSS and CPU time (read with wait4, not its
    siblings'). With ``sample``, the CPU of the child and of those processes is also read
    while it runs (``Measured.sampler``). A child past ``timeout`` seconds is killed."""
    start = time.perf_counter()
    started_at = time.time()
    source = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        args,
        stdin=source,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=CHILD_CWD,
    )
    streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def drain(name: str) -> None:
        stream = getattr(proc, name)
        streams[name] = stream.read()
        stream.close()

    readers = [threading.Thread(target=drain, args=(n,)) for n in streams if getattr(proc, n)]
    for reader in readers:
        reader.start()
    sampler = CpuSampler([proc.pid, *sample]) if sample else None
    killer = threading.Timer(timeout, proc.kill) if timeout else None
    if killer is not None:
        killer.start()
    try:
        if sampler is not None:
            sampler.__enter__()
        for reader in readers:
            reader.join()
        # wait4, not Popen.wait: the child's own resource usage comes with its status.
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if stdin is not None:
            source.close()  # type: ignore[union-attr]
        if killer is not None:
            killer.cancel()
        if sampler is not None:
            sampler.__exit__()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return Measured(
        proc.returncode,
        seconds,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        streams["stdout"].decode(errors="replace"),
        streams["stderr"].decode(errors="replace"),
        started_at,
        sampler,
        proc.pid,
    )


@contextmanager
def simulator_process(
    *extra: str, uvloop: bool = False
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The simulator in its own process, so it is not the bottleneck of what is measured."""
    module = ["bench.simulator", "--uvloop"] if uvloop else ["dispatcher.simulator"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *module, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **CHILD_ENV, "ONENET_SIM_API_KEY": KEY},
        cwd=CHILD_CWD,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://[^\s)]+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    try:
        yield match.group(1), proc
    finally:
        proc.terminate()
        proc.wait(10)


class Sim:
    """A simulator process and its test-only endpoints."""

    def __init__(self, url: str, proc: subprocess.Popen[str]) -> None:
        self.url = url
        self.pid = proc.pid

    def _call(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)

    def reset(self) -> None:
        self._call("/_sim/reset", "POST")

    def requests(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self._call("/_sim/requests")["requests"]
        return records

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


@dataclass
class Arrivals:
    """What the simulator saw of one client's run."""

    times: list[float]  # received_at, sorted
    ok: int  # answered errno 0

    @classmethod
    def of(cls, sim: Sim) -> Arrivals:
        records = sim.requests()
        return cls(sorted(r["received_at"] for r in records), sum(r["errno"] == 0 for r in records))

    @property
    def count(self) -> int:
        return len(self.times)

    @property
    def span(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    @property
    def rate(self) -> float:
        """Requests per second from the first arrival to the last."""
        return (len(self.times) - 1) / self.span if self.span > 0 else 0.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    """The machine and software the figures were taken on."""
    import platform
    from importlib import metadata

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in ("aiohttp", "anyio", "yarl", "multidict", "uvloop", "requests", "pydantic"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    import sqlite3

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "curl": curl.stdout.split()[1] if curl.returncode == 0 else None,
        "packages": versions,
        "load_average": os.getloadavg(),
    }
