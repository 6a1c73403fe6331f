"""Peak memory of `run` for 10k and 100k devices against a simulator in its own process.

Usage: python bench/run_memory.py [--sizes 10000,100000] [--rate 1000]
Prints a table and writes bench/run_memory.json. Memory must not grow with fleet size:
the fleet is streamed and the ledger is on disk.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import KEY, cpu_seconds, measure, simulator_process, write_job


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp, simulator_process() as (url, sim):
            job = write_job(Path(tmp), size, rate=args.rate, concurrency=args.concurrency)
            m = measure(
                [
                    sys.executable,
                    "-m",
                    "dispatcher",
                    "run",
                    str(job),
                    "--base-url",
                    url,
                    "--ledger",
                    f"{tmp}/l.sqlite",
                ],
                env={"ONENET_API_KEY": KEY},
            )
            sim_cpu = cpu_seconds(sim.pid)
            if m.returncode != 0:
                print(m.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"run of {size} devices exited {m.returncode}")
            results.append(
                {
                    "devices": size,
                    "seconds": round(m.seconds, 2),
                    "requests_per_second": round(size / m.seconds, 1),
                    "peak_rss_mb": round(m.max_rss_mb, 1),
                    "client_cpu_seconds": round(m.cpu_seconds, 2),
                    "simulator_cpu_seconds": round(sim_cpu, 2),
                }
            )
            print(results[-1], flush=True)
    first, last = results[0], results[-1]
    ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
    print(f"\npeak RSS {last['devices']} vs {first['devices']} devices: {ratio:.2f}x")
    out = Path(__file__).with_name("run_memory.json")
    out.write_text(
        json.dumps({"rate": args.rate, "runs": results, "rss_ratio": round(ratio, 3)}, indent=2)
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
