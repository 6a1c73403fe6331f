"""The producer's hand-out: a registered batch of devices, each to a worker from its first
command still to send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dispatcher.engine.settings import Totals
from dispatcher.ledger import Status
from dispatcher.plan import DeviceWork


@dataclass(frozen=True, slots=True)
class Work:
    device: DeviceWork
    start: int  # index of the first command still to send


class Handoff:
    """The producer's channel to the workers: a bounded asyncio queue.

    The hot loop hands every device through it, so it is a plain asyncio queue (an anyio
    memory stream costs a checkpoint and a cancel-scope check on each side); the run's
    task group still owns the tasks and their cancellation. The end of the stream is one
    ``None`` that each worker passes on; once every worker has left, the producer is told
    no one listens (what a memory stream's BrokenResourceError said).
    """

    def __init__(self, size: int, workers: int) -> None:
        self._queue: asyncio.Queue[Work | None] = asyncio.Queue(size)
        self._workers = workers

    async def put(self, work: Work) -> bool:
        """False when every worker has left: the device was not handed out."""
        if self._workers == 0:
            return False
        await self._queue.put(work)
        return self._workers > 0

    async def close(self) -> None:
        if self._workers == 0:
            return
        if self._queue.full():
            await self._queue.put(None)
        else:
            self._queue.put_nowait(None)

    async def get(self) -> Work | None:
        """The next device, or None at the end of the wave."""
        work = await self._queue.get()
        if work is None:
            self._queue.put_nowait(None)  # the slot it held: the next worker sees the end too
        return work

    def leave(self) -> None:
        """A worker is done. The last one empties the queue, so a producer waiting for room
        goes on and learns that no one listens."""
        self._workers -= 1
        if self._workers == 0:
            while not self._queue.empty():
                self._queue.get_nowait()


def ignore(future: asyncio.Future[Any]) -> None:
    """For a registration nobody waits for any more (the run stopped): its outcome is read."""
    if not future.cancelled():
        future.exception()


def first_to_send(statuses: list[Status], resend_in_doubt: bool) -> int | None:
    """Index of the first command to send, or None when there is nothing to send now."""
    for i, status in enumerate(statuses):
        if status is Status.OK:
            continue
        if status is Status.PENDING:
            return i
        if status is Status.IN_DOUBT and resend_in_doubt:
            return i
        return None  # failed, skipped, or held in doubt
    return None


async def hand_out(
    batch: list[DeviceWork],
    registered: asyncio.Future[Any],
    send: Handoff,
    totals: Totals,
    resend_in_doubt: bool,
    limit_reached: Callable[[], bool],
) -> bool:
    """Hand out a batch once its registration committed; False when the producer must stop.

    Raises the writer's LedgerError when the registration failed.
    """
    statuses: dict[str, list[Status]] = await registered
    for work in batch:
        totals.planned_devices += 1
        row = statuses[work.device.imei]
        start = first_to_send(row, resend_in_doubt)
        if start is None:
            if Status.IN_DOUBT in row:
                totals.held_in_doubt += 1
            else:
                totals.already_done += 1
            continue
        if limit_reached():
            return False
        totals.started_devices += 1
        if not await send.put(Work(work, start)):
            return False  # every worker has stopped
    return True
