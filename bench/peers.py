"""The clients the dispatcher is compared with, each sending a file of exact requests.

Run as a child of ``bench/run.py`` (so its CPU and memory are its own):

    python -m bench.peers aiohttp       REQUESTS.jsonl BASE_URL --concurrency 32
    python -m bench.peers aiohttp-wal   REQUESTS.jsonl BASE_URL --concurrency 32 --ledger FILE
    python -m bench.peers requests      REQUESTS.jsonl BASE_URL --concurrency 32

``REQUESTS.jsonl`` is what ``onenet-dispatch run --dry-run`` prints for the same job,
so every client sends byte for byte the requests the dispatcher sends. The key comes
from ``ONENET_API_KEY``. Each prints one JSON line: requests sent, answers with errno
0, seconds.

- ``aiohttp``: the leanest hand-written asyncio client: one session, N workers over a
  shared iterator, the answer read and parsed. No ledger. The ceiling.
- ``aiohttp-wal``: the same loop plus the least a durable write-ahead record costs:
  SQLite in WAL mode with ``synchronous=FULL``, rows registered 256 devices at a time,
  a row marked ``sending`` (committed) before its request leaves and its answer
  committed before the worker goes on, commits grouped by one writer thread. What the
  dispatcher's ledger costs at the least, whatever its code.
- ``requests``: what an operator would write without us: ``requests`` in a thread
  pool of N threads, one keep-alive session per thread.

``xargs -P N`` over curl needs no Python; ``bench/run.py`` builds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit


class Req(NamedTuple):
    method: str
    target: str  # path and query, as the dispatcher encoded them
    body: bytes | None
    imei: str
    command: int


def load(path: Path) -> list[Req]:
    """The requests of a ``--dry-run`` file, in the order the dispatcher would send them."""
    out = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            r = json.loads(line)
            url = urlsplit(r["url"])
            body = r["body"]
            out.append(
                Req(
                    r["method"],
                    f"{url.path}?{url.query}",
                    None
                    if body is None
                    else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                    r["imei"],
                    r["command"],
                )
            )
    return out


def headers_for(req: Req, key: str) -> dict[str, str]:
    if req.body is None:
        return {"api-key": key}
    return {"api-key": key, "Content-Type": "application/json"}


def ok_answer(raw: bytes) -> bool:
    try:
        answer = json.loads(raw)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("errno") == 0


# -- aiohttp, bare -----------------------------------------------------------------------


class Pacer:
    """Start times ``1/rate`` apart, as the dispatcher's limiter gives them (no slot given
    back after a late start, so no burst); a rate of 0 does not pace."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        at = max(self.next, now)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


async def aiohttp_loop(
    reqs: list[Req], base_url: str, concurrency: int, key: str, rate: float = 0.0
) -> int:
    import aiohttp

    ok = 0
    work = iter(reqs)
    pacer = Pacer(rate)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal ok
            for req in work:
                await pacer.wait()
                async with session.request(
                    req.method, base_url + req.target, data=req.body, headers=headers_for(req, key)
                ) as resp:
                    ok += ok_answer(await resp.read())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


# -- aiohttp + a write-ahead SQLite record -------------------------------------------------

REGISTER_BATCH = 256  # as the dispatcher's producer


class GroupCommit:
    """One writer thread; every operation waiting when a commit starts goes into it."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # as the dispatcher's ledger
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS items (imei TEXT NOT NULL, command INTEGER NOT NULL,"
            " status TEXT NOT NULL, uuid TEXT, errno INTEGER, sent_at REAL, answered_at REAL,"
            " UNIQUE (imei, command))"
        )
        self.pool = ThreadPoolExecutor(1)
        self.waiting: list[tuple[str, Any, bool, asyncio.Future[None]]] = []
        self.wake = asyncio.Event()
        self.commits = 0

    async def do(self, sql: str, params: Any, many: bool = False) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((sql, params, many, done))
        self.wake.set()
        await done

    def _commit(self, batch: list[tuple[str, Any, bool, asyncio.Future[None]]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        for sql, params, many, _ in batch:
            if many:
                self.db.executemany(sql, params)
            else:
                self.db.execute(sql, params)
        self.db.execute("COMMIT")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.waiting = self.waiting, []
            await loop.run_in_executor(self.pool, self._commit, batch)
            self.commits += 1
            for *_, done in batch:
                done.set_result(None)


async def aiohttp_wal_loop(
    reqs: list[Req], base_url: str, concurrency: int, key: str, ledger: Path, rate: float = 0.0
) -> int:
    import aiohttp

    ok = 0
    pacer = Pacer(rate)
    record = GroupCommit(ledger)
    queue: asyncio.Queue[Req | None] = asyncio.Queue(concurrency)

    async def produce() -> None:
        for start in range(0, len(reqs), REGISTER_BATCH):
            batch = reqs[start : start + REGISTER_BATCH]
            await record.do(
                "INSERT OR IGNORE INTO items (imei, command, status) VALUES (?, ?, 'pending')",
                [(r.imei, r.command) for r in batch],
                many=True,
            )
            for req in batch:
                await queue.put(req)
        for _ in range(concurrency):
            await queue.put(None)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal ok
            while (req := await queue.get()) is not None:
                await pacer.wait()
                await record.do(
                    "UPDATE items SET status = 'sending', sent_at = ? WHERE imei = ? AND command = ?",
                    (time.time(), req.imei, req.command),
                )
                async with session.request(
                    req.method, base_url + req.target, data=req.body, headers=headers_for(req, key)
                ) as resp:
                    raw = await resp.read()
                answer = json.loads(raw)
                ok += answer.get("errno") == 0
                await record.do(
                    "UPDATE items SET status = ?, uuid = ?, errno = ?, answered_at = ?"
                    " WHERE imei = ? AND command = ?",
                    (
                        "ok" if answer.get("errno") == 0 else "failed",
                        (answer.get("data") or {}).get("uuid"),
                        answer.get("errno"),
                        time.time(),
                        req.imei,
                        req.command,
                    ),
                )

        writer = asyncio.create_task(record.run())
        try:
            await asyncio.gather(produce(), *(worker() for _ in range(concurrency)))
        finally:
            writer.cancel()
    return ok


# -- requests + a thread pool ---------------------------------------------------------------


def requests_pool(reqs: list[Req], base_url: str, concurrency: int, key: str) -> int:
    import requests

    local = threading.local()

    def send(req: Req) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        resp = session.request(
            req.method, base_url + req.target, data=req.body, headers=headers_for(req, key)
        )
        return ok_answer(resp.content)

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(send, reqs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=("aiohttp", "aiohttp-wal", "requests"))
    parser.add_argument("requests_file", type=Path)
    parser.add_argument("base_url")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ledger", type=Path, help="aiohttp-wal: the SQLite file to write")
    parser.add_argument("--uvloop", action="store_true", help="run the asyncio clients on uvloop")
    parser.add_argument("--limit", type=int, help="send only the first N requests of the file")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (0: unpaced)")
    parser.add_argument("--cprofile", type=Path, metavar="FILE", help="profile the sending")
    args = parser.parse_args(argv)
    key = os.environ["ONENET_API_KEY"]
    reqs = load(args.requests_file)[: args.limit]
    base_url = args.base_url.rstrip("/")
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.client == "aiohttp-wal" and args.ledger is None:
        parser.error("aiohttp-wal needs --ledger")

    def send() -> int:
        if args.client == "aiohttp":
            return asyncio.run(aiohttp_loop(reqs, base_url, args.concurrency, key, args.rate))
        if args.client == "aiohttp-wal":
            return asyncio.run(
                aiohttp_wal_loop(reqs, base_url, args.concurrency, key, args.ledger, args.rate)
            )
        return requests_pool(reqs, base_url, args.concurrency, key)

    started = time.perf_counter()
    if args.cprofile is not None:
        import cProfile

        profiler = cProfile.Profile()
        try:
            ok = profiler.runcall(send)
        finally:
            profiler.dump_stats(args.cprofile)
    else:
        ok = send()
    seconds = time.perf_counter() - started
    print(json.dumps({"client": args.client, "sent": len(reqs), "ok": ok, "seconds": seconds}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
