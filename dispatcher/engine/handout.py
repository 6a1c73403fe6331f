"""The producer's hand-out: a registered batch of devices, each to a worker from its first
command still to send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from dispatcher.engine.settings import Totals
from dispatcher.ledger import Status
from dispatcher.plan import DeviceWork


@dataclass(frozen=True, slots=True)
class Work:
    device: DeviceWork
    start: int  # index of the first command still to send


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
    send: MemoryObjectSendStream[Work],
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
        try:
            await send.send(Work(work, start))
        except anyio.BrokenResourceError:
            return False  # every worker has stopped
    return True
