"""The write-ahead step of each attempt of a request: its rate slot and its durable mark.

The mark is queued when the slot is reserved, so the writer commits it with the marks of
the other workers in one group, just before the earliest of their slots; the request
leaves only once its mark is durable. A request that never left (the run stopped while
it waited) has its row put back to pending; if the process dies first, the row stays
``sending``: in doubt, one per worker at most, and reconciliation settles it.

The mark's ``sent_at`` is the slot's time, when the request is due to leave, not the
time the mark was queued: reconciliation takes a row as "not queued" only once it is
older than the read timeout and a margin, measured from ``sent_at``, and a request that
waited for its slot (a whole group's share at a low rate) or for a retry must not look
older than it is. A retry is marked again for the same reason.
"""

from __future__ import annotations

import contextlib

import anyio

from dispatcher.clock import Clock, unix_now
from dispatcher.errors import LedgerError
from dispatcher.ledger import Answer, Status
from dispatcher.ledger.writer import LedgerWriter
from dispatcher.limiter import RateLimiter
from dispatcher.plan import Request


async def take_slot(
    request: Request, limiter: RateLimiter, writer: LedgerWriter, clock: Clock, stop: anyio.Event
) -> bool:
    """Wait for the request's slot with its mark durable; False if it must not leave."""
    lead = limiter.reserve()
    mark = writer.intend(request.imei, request.index, unix_now() + max(lead, 0.0), lead)
    sent = False
    try:
        if lead > 0:
            await clock.sleep(lead)
        if mark is not None:
            await mark
        sent = not stop.is_set()
    finally:
        if not sent and mark is not None:
            unmark(writer, request)
    return sent


def unmark(writer: LedgerWriter, request: Request) -> None:
    """The row of a request that never left goes back to pending (queued, not awaited)."""
    with contextlib.suppress(LedgerError):
        writer.answer(
            Answer(
                imei=request.imei,
                command=request.index,
                status=Status.PENDING,
                uuid=None,
                errno=None,
                error=None,
                http_status=None,
                attempts=0,
                answered_at=unix_now(),
            )
        )
