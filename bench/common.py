"""Helpers shared by the benchmark scripts: fleets, a simulator process, measured children."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"


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
    directory: Path, devices: int, *, rate: float, concurrency: int, commands: str | None = None
) -> Path:
    write_fleet(directory / "fleet.csv", devices)
    job = directory / "job.yaml"
    job.write_text(
        f"""version: 1
name: bench
fleets:
  - name: all
    csv: fleet.csv
window: {{valid_time: now, expired_time: +48h}}
commands:
{commands or '  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5750, val: "{server_ip}"}]}'}
rate: {{per_second: {rate}, concurrency: {concurrency}}}
""",
        encoding="utf-8",
    )
    return job


@dataclass
class Measured:
    returncode: int
    seconds: float
    max_rss_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str


def measure(args: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run a child to its end; its own peak RSS and CPU time (read with wait4, not its siblings')."""
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            args, stdout=devnull, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
        )
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return Measured(
        proc.returncode, seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, "", err
    )


@contextmanager
def simulator_process(*extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The simulator in its own process, so it is not the bottleneck of what is measured."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher.simulator", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ONENET_SIM_API_KEY": KEY},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    try:
        yield match.group(1), proc
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
