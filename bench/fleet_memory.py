"""Peak memory and wall time of ``validate`` on CSV fleets of growing size.

A benchmark, not a test: it prints figures and writes ``bench/fleet_memory.json``.
Each size runs in a fresh interpreter, so the peak RSS is that run's alone (read
with ``os.wait4``, which returns the resource usage of exactly that child).

    .venv/bin/python bench/fleet_memory.py               # 10k, 100k and 1M rows
    .venv/bin/python bench/fleet_memory.py --sizes 1000 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().with_suffix(".json")
SIZES = (10_000, 100_000, 1_000_000)
BASELINE_ROWS = 10  # the interpreter, pydantic, rich and the job alone

JOB = """\
version: 1
name: bench-{rows}
fleets:
  - name: zone
    csv: {csv}
window:
  expired_time: +48h
commands:
  - write: {{obj_id: 3300, obj_inst_id: 0, mode: 1,
            data: [{{res_id: 5700, val: 60}}, {{res_id: 5750, val: "{{server_ip}}"}}]}}
  - read: {{obj_id: 3300, obj_inst_id: 0, res_id: 5700}}
rate:
  per_second: 300
"""


def luhn_digit(first14: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(first14)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def write_fleet(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("imei,server_ip,meter_model\n")
        for n in range(rows):
            first14 = f"8658200{n:07d}"
            out.write(
                f"{first14}{luhn_digit(first14)},10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255},WM-25\n"
            )


def measure(job: Path) -> tuple[int, float, int, str]:
    """Exit code, wall seconds, peak RSS in bytes and stdout of one ``validate`` run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "validate", str(job)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return child.returncode, wall, peak, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="fleet-memory-") as tmp:
        for rows in [BASELINE_ROWS, *args.sizes]:
            csv = Path(tmp) / f"fleet-{rows}.csv"
            job = Path(tmp) / f"job-{rows}.yaml"
            write_fleet(csv, rows)
            job.write_text(JOB.format(rows=rows, csv=csv.name), encoding="utf-8")
            code, wall, peak, text = measure(job)
            if code != 0 or f"devices:             {rows} " not in text:
                print(text, file=sys.stderr)
                print(f"validate failed on {rows} rows (exit {code})", file=sys.stderr)
                return 1
            results.append(
                {
                    "rows": rows,
                    "csv_bytes": csv.stat().st_size,
                    "peak_rss_bytes": peak,
                    "wall_seconds": round(wall, 3),
                }
            )
            print(
                f"{rows:>9} rows  {csv.stat().st_size / 2**20:7.1f} MiB csv  "
                f"peak RSS {peak / 2**20:6.1f} MiB  {wall:6.2f} s",
                flush=True,
            )
    base = results[0]["peak_rss_bytes"]
    top = results[-1]["peak_rss_bytes"]
    print(
        f"growth from {BASELINE_ROWS} to {results[-1]['rows']} rows: {(top - base) / 2**20:+.1f} MiB"
    )
    OUT.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "command": "onenet-dispatch validate JOB.yaml (one CSV fleet, write with a variable + read)",
                "results": results,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
