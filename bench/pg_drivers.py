"""asyncpg against psycopg 3 (async) on the ledger's write pattern, on a local cluster.

    python -m bench.pg_drivers [--seconds 3] [--rounds 3] [--groups 1,8,32,128]
                               [--url postgresql://...] [--out bench/pg_drivers.json]

Starts a throwaway PostgreSQL cluster (``tests/pg_server.py``, fsync on) unless
``--url`` names one. The table is keyed like the ledger's items, (run_id, imei,
command); rows are registered beforehand, outside the timing. A *group* of G is one
transaction that updates G rows' status (the writer grouping the answers that arrived
together), committed with ``synchronous_commit=on``; group 1 is a single-row commit
(the ``sending`` mark written ahead of one request). Each driver sends the group its
own best way: asyncpg ``executemany`` (one prepared statement, pipelined binds),
psycopg ``cursor.executemany`` (pipeline mode since 3.1).

Figures: rows/s, and CPU per row of the client (this process) and of the server
backend serving it (``/proc/PID/stat`` of ``pg_backend_pid()``). Drivers alternate
within each round and the median round is kept, so load from other processes on the
machine hits both alike. Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests import pg_server  # the throwaway cluster the tests use

ROOT = Path(__file__).resolve().parent.parent

RUN = "bench-run"
COMMAND = "write"
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    run_id text NOT NULL,
    imei text NOT NULL,
    command text NOT NULL,
    status text NOT NULL,
    http_status integer,
    uuid text,
    updated_at double precision,
    PRIMARY KEY (run_id, imei, command)
)
"""
UPDATE_ASYNCPG = (
    "UPDATE items SET status = $4, http_status = $5, uuid = $6, updated_at = $7"
    " WHERE run_id = $1 AND imei = $2 AND command = $3"
)
UPDATE_PSYCOPG = (
    "UPDATE items SET status = %s, http_status = %s, uuid = %s, updated_at = %s"
    " WHERE run_id = %s AND imei = %s AND command = %s"
)
ROWS = 200_000  # more than any group size gets through in the time given

Rows = list[tuple[str, str, str, str, int, str, float]]


def _ticks(pid: int) -> float:
    """CPU seconds (user + system) of a local process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rows(sample: int) -> Rows:
    """Fresh rows for each measure, so every update finds a registered, untouched row."""
    return [
        (RUN, f"86{sample:05d}{i:08d}", COMMAND, "ok", 200,
         f"u{i}", time.time())
        for i in range(ROWS)
    ]  # fmt: skip


async def _measure(
    write: Callable[[Rows], Awaitable[None]], backend: int, rows: Rows, group: int, seconds: float
) -> dict[str, float]:
    done = 0
    cpu, server = time.process_time(), _ticks(backend)
    started = time.perf_counter()
    while done + group <= len(rows) and time.perf_counter() - started < seconds:
        await write(rows[done : done + group])
        done += group
    elapsed = time.perf_counter() - started
    cpu, server = time.process_time() - cpu, _ticks(backend) - server
    return {
        "rows_per_second": done / elapsed,
        "commits_per_second": done / group / elapsed,
        "client_cpu_us_per_row": cpu / done * 1e6,
        "server_cpu_us_per_row": server / done * 1e6,
    }


async def _register(url: str, rows: Rows) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)
        await conn.copy_records_to_table(
            "items",
            records=[(r[0], r[1], r[2], "pending", None, None, None) for r in rows],
            columns=["run_id", "imei", "command", "status", "http_status", "uuid", "updated_at"],
        )
    finally:
        await conn.close()


async def bench_asyncpg(url: str, rows: Rows, group: int, seconds: float) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET synchronous_commit = on")
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))

        async def write(batch: Rows) -> None:
            async with conn.transaction():
                if len(batch) == 1:
                    [(run, imei, command, status, http, uuid, at)] = batch
                    await conn.execute(UPDATE_ASYNCPG, run, imei, command, status, http, uuid, at)
                else:
                    await conn.executemany(UPDATE_ASYNCPG, batch)

        return await _measure(write, backend, rows, group, seconds)
    finally:
        await conn.close()


async def bench_psycopg(url: str, rows: Rows, group: int, seconds: float) -> dict[str, float]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url)
    try:
        await conn.execute("SET synchronous_commit = on")
        await conn.commit()
        cur = await conn.execute("SELECT pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        backend = int(row[0])

        async def write(batch: Rows) -> None:
            params = [(s, h, u, a, r, i, c) for r, i, c, s, h, u, a in batch]
            async with conn.transaction(), conn.cursor() as cursor:
                if len(params) == 1:
                    await cursor.execute(UPDATE_PSYCOPG, params[0])
                else:
                    await cursor.executemany(UPDATE_PSYCOPG, params)

        return await _measure(write, backend, rows, group, seconds)
    finally:
        await conn.close()


DRIVERS: dict[str, Callable[[str, Rows, int, float], Awaitable[dict[str, float]]]] = {
    "asyncpg": bench_asyncpg,
    "psycopg": bench_psycopg,
}


async def run(url: str, groups: list[int], rounds: int, seconds: float) -> dict[str, Any]:
    samples: dict[str, dict[int, list[dict[str, float]]]] = {
        d: {g: [] for g in groups} for d in DRIVERS
    }
    sample = 0
    for _ in range(rounds):
        for group in groups:
            for name, bench in DRIVERS.items():
                sample += 1
                rows = _rows(sample)
                await _register(url, rows)
                samples[name][group].append(await bench(url, rows, group, seconds))
    result: dict[str, Any] = {}
    for name, by_group in samples.items():
        result[name] = {}
        for group, runs in by_group.items():
            median = sorted(runs, key=lambda r: r["rows_per_second"])[len(runs) // 2]
            result[name][str(group)] = {
                **{k: round(v, 1) for k, v in median.items()},
                "rows_per_second_all": [round(r["rows_per_second"]) for r in runs],
            }
    return result


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="an existing server (default: a throwaway local cluster)")
    parser.add_argument("--groups", default="1,8,32,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "pg_drivers.json")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",")]
    base = Path(tempfile.mkdtemp(prefix="onenet-pg-bench-"))
    base.chmod(0o755)  # the server's user (postgres, when we are root) must reach it
    try:
        url = args.url or pg_server.start(base / "cluster", durable=True).url
        figures = asyncio.run(run(url, groups, args.rounds, args.seconds))
    finally:
        if not args.url:
            pg_server.stop(base / "cluster")
        base.rmdir()
    print(f"{'driver':8} {'group':>5} {'rows/s':>9} {'client µs/row':>14} {'server µs/row':>14}")
    for name, by_group in figures.items():
        for group, f in by_group.items():
            print(
                f"{name:8} {group:>5} {f['rows_per_second']:>9.0f}"
                f" {f['client_cpu_us_per_row']:>14.1f} {f['server_cpu_us_per_row']:>14.1f}"
            )
    record = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average_after": os.getloadavg(),
        "versions": {m: _version(m) for m in ("asyncpg", "psycopg", "psycopg-binary")},
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
