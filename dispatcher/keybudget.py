"""One API key's budget, shared by every process that talks to the platform with it.

The platform limits calls per key, whoever makes them: a rollout, its shards, a `track
--watch` timer and a `reconcile` all spend from one budget (the config's `key_budget`,
requests per second; unset, the largest rate any of them asks for). Each process holds a lease in the ledger they share
(``ledger.leases``) saying the rate it wants, renews it every ``BEAT`` seconds, and sends
at its share: its wanted rate, scaled down by budget / (sum of the live leases' wanted
rates) when they would exceed the budget together. So two timers on one key, or a
rollout and a track, never exceed the key's budget together, and a process that dies
stops counting once its lease is ``TTL`` old.

A newcomer waits one beat when other processes hold live leases: by then they have seen
its lease and cut their share, so the sum never goes over the budget for longer than the
platform's token bucket absorbs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import structlog

from dispatcher.errors import LedgerError
from dispatcher.ledger.leases import Lease, LeaseTable, open_leases
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.auth import ApiKeyAuth, Authenticator, TokenAuth
from dispatcher.pgurl import LedgerTarget

log = structlog.get_logger("dispatcher.keybudget")

BEAT = 2.0  # seconds between renewals; the share follows the others within a beat


def key_hash(secret: str) -> str:
    """What the ledger stores of a key: a keyed hash, so the key cannot be read back."""
    return hashlib.blake2b(secret.encode(), digest_size=16, person=b"onenet-key").hexdigest()


def share(wanted: float, live: list[Lease], budget: float | None) -> float:
    """This process's rate: what it wants, scaled down when the key's leases exceed the budget.

    Without a configured budget the key's budget is what the most demanding of its users
    asks for: the sum of one run's shards (they split one rate between them), or a
    track's or reconcile's rate. A process alone is never slowed; several runs, or a run
    and a track, together send no faster than the most demanding one asked to.
    """
    total = sum(lease.rate for lease in live)
    if budget is None:
        groups: dict[tuple[str, str], float] = {}
        for lease in live:
            key = (lease.run_id, lease.kind)
            groups[key] = groups.get(key, 0.0) + lease.rate
        budget = max(groups.values(), default=wanted)
    return wanted if total <= budget else wanted * budget / total


def key_of(auth: Authenticator) -> str | None:
    """The secret that names a key's budget; None for an authenticator without one."""
    if isinstance(auth, ApiKeyAuth | TokenAuth):
        return auth.identity()
    return None


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@asynccontextmanager
async def key_lease(
    target: LedgerTarget,
    auth: Authenticator,
    *,
    run_id: str,
    kind: str,
    wanted: float,
    budget: float | None,
    limiter: RateLimiter,
    now: Callable[[], float] = time.time,
) -> AsyncIterator[None]:
    """Hold a lease on the key while the block talks to the platform, keeping ``limiter``
    at this process's share of the key's budget."""
    secret = key_of(auth)
    if secret is None:
        yield
        return
    table: LeaseTable = await anyio.to_thread.run_sync(open_leases, target)
    kh, holder = key_hash(secret), holder_id()
    current = [wanted]  # the share last given to the limiter (a ramp may move its target)
    try:

        async def beat() -> list[Lease]:
            live = await anyio.to_thread.run_sync(
                table.beat, kh, holder, run_id, kind, wanted, now()
            )
            rate = share(wanted, live, budget)
            if rate != current[0]:
                current[0] = rate
                limiter.set_rate(rate)
                log.info("key_share", kind=kind, per_second=round(rate, 3), leases=len(live))
            return live

        joined = now()
        live = await beat()
        # Wait (one beat at most) for the others to see this lease and cut their share. A
        # lease silent for longer than that is a process that died: it still counts in the
        # shares until it expires (the safe side), but is not waited for.
        if any(x.holder != holder and joined - 2 * BEAT <= x.heartbeat < joined for x in live):
            await anyio.sleep(BEAT * 1.2)
            await beat()
        async with anyio.create_task_group() as tg:

            async def renew() -> None:
                while True:
                    await anyio.sleep(BEAT)
                    try:
                        await beat()
                    except LedgerError as exc:
                        # the ledger's writer reports a lost ledger; keep the last share
                        log.warning("key_lease_not_renewed", error=str(exc))

            tg.start_soon(renew)
            failed: BaseException | None = None
            try:
                yield
            except BaseException as exc:
                # raised after the renewal stops, as it is: not wrapped in an ExceptionGroup
                failed = exc
            finally:
                tg.cancel_scope.cancel()
        if failed is not None:
            raise failed
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(table.release, kh, holder)
            except LedgerError as exc:
                # the lease expires by itself after TTL seconds
                log.warning("key_lease_not_released", error=str(exc))
            await anyio.to_thread.run_sync(table.close)
