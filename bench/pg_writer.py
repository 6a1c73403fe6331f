"""The run's real ledger writer on SQLite and on PostgreSQL: requests recorded per second.

    python -m bench.pg_writer [--concurrency 1,8,32,64] [--seconds 2] [--rounds 3]
                              [--url postgresql://...] [--out bench/pg_writer.json]

``bench/pg_drivers.py`` compares drivers on a bare table; this drives the product's own
path: ``LedgerWriter`` (the run's writer task, group commit, ``apply`` in a worker
thread) over ``open_ledger`` of a SQLite file (WAL, ``synchronous=FULL``) or of a
PostgreSQL database (psycopg 3, ``synchronous_commit=on``; a throwaway local cluster
with fsync on, unless ``--url`` names a server). C worker tasks each record requests
as a run does: the ``sending`` mark (awaited: durable before the request would leave),
then the answer. No HTTP: what is measured is what the ledger lets through.

Figures per backend and concurrency: requests recorded/s (two row writes each),
commits/s and the mean operations per commit (the writer's grouping). Backends
alternate within each round; the median round is kept. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from dispatcher.ledger import Answer, LedgerStore, RunRecord, Status, open_ledger
from dispatcher.ledger.ops import Register
from dispatcher.ledger.writer import LedgerWriter
from dispatcher.pgurl import PgUrl
from tests import pg_server  # the throwaway cluster the tests use

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 100_000  # more than any measure gets through


def _record(run_id: str) -> RunRecord:
    return RunRecord(
        run_id, "bench", "job.yaml", "hash", "http://127.0.0.1:9", None,
        "2026-11-24T10:00:00+08:00", 1.0, 1.0, None, "running", None,
    )  # fmt: skip


def _prepare(ledger: LedgerStore, run_id: str) -> list[str]:
    """A run with DEVICES registered rows, outside the timing."""
    ledger.start_run(_record(run_id))
    imeis = [f"86{i:013d}" for i in range(DEVICES)]
    for at in range(0, DEVICES, 5000):
        ledger.apply([Register(run_id, [(i, "f", ["write"]) for i in imeis[at : at + 5000]])])
    return imeis


async def _drive(
    ledger: LedgerStore, run_id: str, imeis: list[str], workers: int, seconds: float
) -> dict[str, float]:
    writer = LedgerWriter(ledger, run_id, capacity=4 * workers)
    done = 0
    ops = 0
    deadline = time.monotonic() + seconds
    rows = iter(imeis)

    async def worker() -> None:
        nonlocal done, ops
        for imei in rows:
            if time.monotonic() >= deadline:
                return
            await writer.sending(imei, 0, time.time())
            await writer.answer(Answer(imei, 0, Status.OK, "u", 0, None, 200, 1, time.time()))
            done += 1
            ops += 2

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        async with anyio.create_task_group() as workers_tg:
            for _ in range(workers):
                workers_tg.start_soon(worker)
        await writer.close()
    elapsed = time.monotonic() - started
    return {
        "requests_per_second": done / elapsed,
        "commits_per_second": writer.commits / elapsed,
        "ops_per_commit": ops / max(writer.commits, 1),
    }


def measure(
    targets: dict[str, Any], levels: list[int], rounds: int, seconds: float
) -> dict[str, Any]:
    samples: dict[str, dict[int, list[dict[str, float]]]] = {
        b: {c: [] for c in levels} for b in targets
    }
    n = 0
    for _ in range(rounds):
        for workers in levels:
            for backend, target in targets.items():
                n += 1
                run_id = f"bench-{n}"
                with open_ledger(target) as ledger:
                    imeis = _prepare(ledger, run_id)
                    samples[backend][workers].append(
                        anyio.run(_drive, ledger, run_id, imeis, workers, seconds)
                    )
    out: dict[str, Any] = {}
    for backend, by_level in samples.items():
        out[backend] = {}
        for workers, runs in by_level.items():
            median = sorted(runs, key=lambda r: r["requests_per_second"])[len(runs) // 2]
            out[backend][str(workers)] = {
                **{k: round(v, 1) for k, v in median.items()},
                "requests_per_second_all": [round(r["requests_per_second"]) for r in runs],
                "spread": round(statistics.pstdev(r["requests_per_second"] for r in runs), 1),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="an existing server (default: a throwaway local cluster)")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "pg_writer.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    base = Path(tempfile.mkdtemp(prefix="onenet-pg-bench-"))
    base.chmod(0o755)  # the server's user (postgres, when we are root) must reach it
    try:
        url = args.url or pg_server.start(base / "cluster", durable=True).url
        targets: dict[str, Any] = {"sqlite": base / "ledger.sqlite", "postgresql": PgUrl(url)}
        figures = measure(targets, levels, args.rounds, args.seconds)
    finally:
        if not args.url:
            pg_server.stop(base / "cluster")
        for leftover in base.glob("ledger.sqlite*"):
            leftover.unlink()
        base.rmdir()
    print(f"{'backend':10} {'workers':>7} {'requests/s':>10} {'commits/s':>9} {'ops/commit':>10}")
    for backend, by_level in figures.items():
        for workers, f in by_level.items():
            print(
                f"{backend:10} {workers:>7} {f['requests_per_second']:>10.0f}"
                f" {f['commits_per_second']:>9.0f} {f['ops_per_commit']:>10.1f}"
            )
    record = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average_after": os.getloadavg(),
        "server": "local cluster, fsync=on, synchronous_commit=on"
        if not args.url
        else "given by --url",
        "seconds_per_measure": args.seconds,
        "rounds": args.rounds,
        "figures": figures,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
