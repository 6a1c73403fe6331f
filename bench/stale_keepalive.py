"""Stale keep-alive connections: how many requests die on a pooled connection the server
has just closed, with the client's pool idle time longer vs shorter than the server's.

A server (or the load balancer in front of the platform) closes a keep-alive connection
that has been idle for its idle timeout. A client that keeps idle connections longer may
write its next request onto a connection the server is closing at that very moment: the
request fails without an answer, so a cached command counts as in doubt although the
server never saw it. The traffic here leaves the pool idle for about the server's idle
timeout again and again (bursts, then pauses drawn around it), which is where that race
lives.

Usage: python bench/stale_keepalive.py [--requests 10000] [--server-idle 1.0]
                                       [--long 4.0] [--short 0.5] [--burst 100]
Prints one line per setting and writes bench/stale_keepalive.json. The simulator runs in
its own process, so the race is a real one between two event loops.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the simulator child imports this checkout whatever the working directory
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
)

from bench.common import KEY, luhn, simulator_process  # noqa: E402
from dispatcher.config import HttpConfig, Secret  # noqa: E402
from dispatcher.onenet.auth import ApiKeyAuth  # noqa: E402
from dispatcher.onenet.client import OneNetClient  # noqa: E402
from dispatcher.outcome import Kind, Outcome  # noqa: E402
from dispatcher.plan import Request  # noqa: E402
from dispatcher.timewindow import PLATFORM_TZ, Window  # noqa: E402

CONCURRENCY = 16


def request(n: int) -> Request:
    """A cached write to device ``n``: one device per request keeps clear of the 10-command cap."""
    imei = luhn(f"86{n:012d}")
    head = (("imei", imei), ("obj_id", "3300"), ("obj_inst_id", "0"), ("mode", "1"))
    return Request(n, "write", imei, head, (), b'{"data":[{"res_id":5700,"val":60}]}')


def server_seen(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/_sim/stats") as answer:
        stats: dict[str, int] = json.load(answer)
    return stats["requests"]


async def traffic(
    base_url: str, keepalive: float, total: int, burst: int, server_idle: float, seed: int
) -> Counter[str]:
    """``total`` requests in bursts of ``burst``, each burst after a pause near ``server_idle``."""
    rng = random.Random(seed)
    window = Window(valid=None, expired=datetime.now(PLATFORM_TZ) + timedelta(days=2))
    kinds: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    http = HttpConfig(keepalive=keepalive)
    async with OneNetClient(
        base_url, ApiKeyAuth(Secret(KEY)), http, concurrency=CONCURRENCY
    ) as client:

        async def one(n: int) -> None:
            outcome: Outcome = await client.send(request(n), window, datetime.now(PLATFORM_TZ))
            kinds[outcome.kind.value] += 1
            if outcome.kind is not Kind.OK:
                # "... for http://host/path?query": the same error whatever the device
                errors[(outcome.error or "?").split(" for http")[0]] += 1

        sent = 0
        while sent < total:
            async with anyio.create_task_group() as tg:
                for n in range(sent, min(total, sent + burst)):
                    tg.start_soon(one, n)
            sent = min(total, sent + burst)
            # Idle for about the server's timeout: some pauses end just before it closes
            # the pooled connections, some just after.
            await anyio.sleep(server_idle * rng.uniform(0.97, 1.03))
    for error, count in errors.most_common(5):
        print(f"    {count:5d}  {error}", flush=True)
    return kinds


def measure(keepalive: float, args: argparse.Namespace) -> dict[str, object]:
    with simulator_process("--keepalive-timeout", str(args.server_idle)) as (url, _):
        started = time.perf_counter()
        kinds = anyio.run(
            traffic, url, keepalive, args.requests, args.burst, args.server_idle, args.seed
        )
        seconds = time.perf_counter() - started
        seen = server_seen(url)
    bad = kinds[Kind.IN_DOUBT.value] + kinds[Kind.RETRY.value]
    return {
        "client_keepalive_s": keepalive,
        "server_idle_timeout_s": args.server_idle,
        "requests": args.requests,
        "burst": args.burst,
        "concurrency": CONCURRENCY,
        "pause_s": [round(args.server_idle * 0.97, 3), round(args.server_idle * 1.03, 3)],
        "seed": args.seed,
        "ok": kinds[Kind.OK.value],
        "in_doubt": kinds[Kind.IN_DOUBT.value],
        "retry": kinds[Kind.RETRY.value],
        "failed": kinds[Kind.FAILED.value],
        "stale_rate": round(bad / args.requests, 5),
        "server_saw": seen,
        "never_reached_server": args.requests - seen,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--server-idle", type=float, default=1.0, help="server idle timeout (s)")
    parser.add_argument("--long", type=float, default=4.0, help="client keepalive above it (s)")
    parser.add_argument("--short", type=float, default=0.5, help="client keepalive below it (s)")
    parser.add_argument("--burst", type=int, default=100, help="requests per burst")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not args.long > args.server_idle > args.short:
        raise SystemExit("--long must be above --server-idle, and --short below it")
    results = []
    for label, keepalive in (("longer", args.long), ("shorter", args.short)):
        print(f"client keepalive {keepalive} s ({label} than the server's {args.server_idle} s):")
        result = {"setting": label, **measure(keepalive, args)}
        results.append(result)
        print(
            f"  {result['in_doubt']} in doubt + {result['retry']} retry of {args.requests}"
            f" = {float(str(result['stale_rate'])):.3%};"
            f" {result['never_reached_server']} never reached the server;"
            f" {result['seconds']} s",
            flush=True,
        )
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
