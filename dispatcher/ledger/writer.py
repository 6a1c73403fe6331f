"""The run's one ledger writer: group commit from many workers, one transaction at a time.

Workers hand operations to the writer; while one batch is being committed (in a worker
thread, so the event loop keeps sending), the next operations queue up and go into the
following transaction together: the ledger costs one fsync per group, not per request.

The write-ahead rule holds per group: ``sending`` returns only once its mark is durable,
so the group of requests whose marks share a commit leaves together when it lands.
Answers are not awaited: ``answer`` queues the row and returns, and the caller's
``on_durable`` runs when the commit that holds it lands. Because the queue is applied in
order, a worker's answer is always in the same commit as its next ``sending`` mark or an
earlier one: after a crash at most one row per worker is ``sending`` (in doubt), and
reconciliation settles it.

A group is committed as late as it may be: each write says when it is needed (a mark:
when its request's rate slot comes, taken before the worker waits for the slot; an
answer: soon; anything awaited: now), and the writer starts the commit just early
enough for the earliest of them (twice the recent commit time, plus a millisecond), or
at once when the group is as large as the concurrency. At 1,000/s that is one commit
for a dozen requests instead of one per request; without a rate limit the groups form
by themselves while the previous commit runs.

The hot loop uses plain asyncio futures (a request costs one future and one wake-up, not
an anyio stream, an event and a shielded scope); the run's structure and cancellation
stay with anyio's task groups.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from dispatcher.errors import LedgerError
from dispatcher.ledger.ops import (
    MarkSending,
    RecordAnswer,
    Register,
    Reopen,
    SetWave,
    SkipRest,
    WriteOp,
)
from dispatcher.ledger.records import Answer, Status
from dispatcher.ledger.store import LedgerStore

# what a queued write settles once its commit lands: a future someone awaits, or a callback
_Done = asyncio.Future[Any] | Callable[[], None] | None

MAX_LEAD = 0.02  # seconds a mark may wait for companions, however far its slot is
ANSWER_LEAD = 0.02  # seconds an answer may wait for the next group
MARGIN = 0.001  # seconds: a commit starts this much (plus twice its usual time) before due


def _poke(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


class LedgerWriter:
    """Owns all writes of one run; ``run()`` is its task in the run's task group."""

    def __init__(
        self, ledger: LedgerStore, run_id: str, *, capacity: int, record_sends: bool = True
    ) -> None:
        self._ledger = ledger
        self._run_id = run_id
        # False only to measure what the ledger costs (the benchmarks' ablation): the
        # "sending" marks and the answers are then not written, so nothing is durable.
        self._record_sends = record_sends
        # Kept for the callers' sake: the queue is unbounded because a worker holds at
        # most one write in it at a time (its answer is queued only after its mark landed).
        self._group = max(1, capacity)  # commit at once when this many writes wait
        self._queue: list[tuple[WriteOp, _Done]] = []
        self._due = math.inf  # the loop time by which the queued group must be durable
        self._commit_time = 0.001  # a moving average of how long a commit takes
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = math.inf
        self._closed = False
        self.commits = 0
        self.groups_max = 0  # the largest group committed at once (reported by the benchmark)
        self.failed: LedgerError | None = None

    async def run(self) -> None:
        """Apply operations until ``close()``; a batch is everything queued at that moment."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    await self._sleep(loop, math.inf)
                    continue
                start_by = self._start_by()
                if self._closed or len(self._queue) >= self._group or start_by <= loop.time():
                    batch, self._queue = self._queue, []
                    self._due = math.inf
                    began = loop.time()
                    await self._apply(batch)
                    self._commit_time = 0.8 * self._commit_time + 0.2 * (loop.time() - began)
                else:
                    await self._sleep(loop, start_by)
        finally:
            self._closed = True
            # Nobody may wait forever on a writer that is gone.
            gone = self.failed or LedgerError("the ledger writer stopped")
            batch, self._queue = self._queue, []
            self._settle(batch, None, gone)

    def _start_by(self) -> float:
        return self._due - 2 * self._commit_time - MARGIN

    async def _sleep(self, loop: asyncio.AbstractEventLoop, until: float) -> None:
        """Wait until ``until`` (loop time), or until a write needs the group sooner."""
        self._wake = wake = loop.create_future()
        self._wake_at = until
        timer = loop.call_at(until, _poke, wake) if until != math.inf else None
        try:
            await wake
        finally:
            if timer is not None:
                timer.cancel()
            self._wake = None

    async def _apply(self, batch: list[tuple[WriteOp, _Done]]) -> None:
        if self.failed is not None:
            self._settle(batch, None, self.failed)
            return
        try:
            # Shielded: a commit that started must finish, or a sent request's answer is lost.
            with anyio.CancelScope(shield=True):
                results = await anyio.to_thread.run_sync(
                    self._ledger.apply, [write for write, _ in batch]
                )
        except LedgerError as exc:
            self.failed = exc
            self._settle(batch, None, exc)
            return
        self.commits += 1
        self.groups_max = max(self.groups_max, len(batch))
        self._settle(batch, results, None)

    @staticmethod
    def _settle(
        batch: list[tuple[WriteOp, _Done]], results: list[Any] | None, error: LedgerError | None
    ) -> None:
        for i, (_, done) in enumerate(batch):
            if isinstance(done, asyncio.Future):
                if done.done():
                    continue  # its waiter was cancelled; the write itself stands
                if error is not None:
                    done.set_exception(error)
                    # read here: a waiter that was cancelled meanwhile (a stop) never will,
                    # and asyncio would log it as an error never retrieved
                    done.exception()
                else:
                    done.set_result(results[i] if results is not None else None)
            elif done is not None and error is None:
                done()

    def _queue_write(self, write: WriteOp, done: _Done, lead: float = 0.0) -> None:
        """Queue ``write``, needed durable within ``lead`` seconds."""
        if self._closed:
            raise self.failed or LedgerError("the ledger writer stopped")
        self._queue.append((write, done))
        due = asyncio.get_running_loop().time() + lead
        if due < self._due:
            self._due = due
        wake = self._wake
        if (
            wake is not None
            and not wake.done()
            and (self._start_by() < self._wake_at or len(self._queue) >= self._group)
        ):
            wake.set_result(None)

    async def close(self) -> None:
        """No more writes: the writer commits what is queued, then ``run()`` returns."""
        self._closed = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _do(self, write: WriteOp) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue_write(write, done)
        return await done

    async def register(
        self, devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]
    ) -> dict[str, list[Status]]:
        result: dict[str, list[Status]] = await self.register_soon(devices)
        return result

    def register_soon(
        self, devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]
    ) -> asyncio.Future[Any]:
        """Queue a registration; the future gives every device's statuses once committed."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue_write(Register(self._run_id, devices), done)
        return done

    async def sending(self, imei: str, command: int, at: float) -> None:
        """Returns once the mark is durable: only then may the request leave."""
        mark = self.intend(imei, command, at, 0.0)
        if mark is not None:
            await mark

    def intend(self, imei: str, command: int, at: float, lead: float) -> asyncio.Future[Any] | None:
        """Queue the ``sending`` mark of a request due to leave in ``lead`` seconds.

        The request may leave once the returned future is done (None: nothing to wait
        for, the ablation); the mark joins the group committed just before it is needed.
        """
        if not self._record_sends:
            return None
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue_write(
            MarkSending(self._run_id, imei, command, at), done, min(max(lead, 0.0), MAX_LEAD)
        )
        return done

    def answer(self, answer: Answer, on_durable: Callable[[], None] | None = None) -> None:
        """Queue an answer without waiting; ``on_durable`` runs once its commit lands."""
        if not self._record_sends:
            if on_durable is not None:
                on_durable()
            return
        self._queue_write(RecordAnswer(self._run_id, answer), on_durable, ANSWER_LEAD)

    async def skip_rest(self, imei: str, after: int, reason: str) -> None:
        await self._do(SkipRest(self._run_id, imei, after, reason))

    async def reopen(self, rows: Sequence[tuple[str, int]]) -> None:
        await self._do(Reopen(self._run_id, rows))

    async def set_wave(self, wave: int) -> None:
        await self._do(SetWave(self._run_id, wave))
