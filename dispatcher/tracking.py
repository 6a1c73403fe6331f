"""Closing the loop with the platform: where queued commands stand (`track`), and taking
back those still waiting (`cancel`).

A uuid only says the platform queued a command. The detail call (``platforms.detail_path``)
says whether it reached the device, whether the device confirmed it, and for a read
what the device answered. Both passes go through one rate limiter and a fixed pool of
workers, like a run; commands already final are never asked about again, so a pass
costs one request per unfinished command.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from dispatcher.answerforms import SEND_STATUS as SEND_STATUS
from dispatcher.answerforms import answer_time, send_state
from dispatcher.clock import unix_now
from dispatcher.ledger import Delivered, LedgerStore, Queued
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.platforms import cancel_path, detail_path
from dispatcher.onenet.transport import PlatformQueries
from dispatcher.outcome import Outcome
from dispatcher.timewindow import PLATFORM_TZ

log = structlog.get_logger("dispatcher.tracking")

FINAL = frozenset({"success", "failed", "expired", "cancelled", "timeout"})
FLUSH_EVERY = 200  # delivery states written to the ledger per transaction


def status_field(detail: dict[str, Any]) -> object:
    """The detail's ``send_status``; ``status`` where a server names it so; None if neither."""
    value = detail.get("send_status")
    if value is None or value == "":
        value = detail.get("status")
    return None if value == "" else value


def delivery_from(detail: dict[str, Any], row: Queued) -> Delivered:
    """A detail answer as the ledger records it; what the contract leaves open is kept as text.

    ``send_status`` is read as a code (``5``, ``"5"``) or a name (``"SUCCESS"``); a name
    we do not know is kept as ``unknown (NAME)``, never guessed into a final state.
    """
    raw = status_field(detail)
    state = send_state(raw)
    if state is None:
        text = raw.strip()[:32] if isinstance(raw, str) else ""
        state = f"unknown ({text})" if text else "undefined"
    result = detail.get("cmd_result")
    if result is not None and not isinstance(result, str):
        result = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    confirm = detail.get("confirm_status")
    return Delivered(
        imei=row.imei,
        command=row.command,
        send_status=state,
        confirm_status=None if confirm is None else str(confirm),
        cmd_result=result,
        send_time=_time_text(detail.get("send_time")),
        confirm_time=_time_text(detail.get("confirm_time")),
        tracked_at=unix_now(),
    )


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _time_text(value: object) -> str | None:
    """A time in the pages' own form (``YYYY-MM-DD HH:MM:SS``, UTC+8) whatever form it came
    in (a ``T``, a zone, epoch milliseconds), so the ledger's times sort and compare; a
    time that does not read is kept as the platform wrote it."""
    moment = answer_time(value)
    if moment is None:
        return _text(value)
    try:
        moment = moment.astimezone(PLATFORM_TZ)
    except OverflowError:  # beyond year 1 or 9999 once in UTC+8: not a time to rewrite
        return _text(value)
    # the year by hand: strftime's %Y leaves out the leading zeros of a year below 1000
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"


@dataclass
class PassReport:
    asked: int = 0
    states: Counter[str] = field(default_factory=Counter)  # delivery state after this pass
    unanswered: int = 0  # the platform did not tell us
    cancelled: int = 0
    not_cancellable: int = 0  # already sent, or final
    notes: list[str] = field(default_factory=list)


async def _fan_out(
    rows: Sequence[Queued],
    work: Callable[[Queued], Awaitable[Delivered | None]],
    ledger: LedgerStore,
    run_id: str,
    limiter: RateLimiter,
    concurrency: int,
) -> None:
    """Every row through ``work`` on a pool of workers at the limiter's rate; results flushed in batches."""
    pending: list[Delivered] = []
    send, recv = anyio.create_memory_object_stream[Queued](concurrency)

    def flush() -> None:
        if pending:
            ledger.record_delivery(run_id, pending)
            pending.clear()

    async def produce() -> None:
        async with send:
            for row in rows:
                await send.send(row)

    async def worker(stream: anyio.abc.ObjectReceiveStream[Queued]) -> None:
        async with stream:
            async for row in stream:
                await limiter.acquire()
                delivered = await work(row)
                if delivered is not None:
                    pending.append(delivered)
                    if len(pending) >= FLUSH_EVERY:
                        flush()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async with recv:
                for _ in range(concurrency):
                    tg.start_soon(worker, recv.clone())
    finally:
        flush()


async def track_pass(
    ledger: LedgerStore,
    run_id: str,
    platform: PlatformQueries,
    limiter: RateLimiter,
    *,
    concurrency: int,
) -> PassReport:
    """Ask where each unfinished queued command stands; record it."""
    report = PassReport()
    rows = ledger.queued(run_id, final=FINAL)

    async def ask(row: Queued) -> Delivered | None:
        report.asked += 1
        detail = await platform.ask(detail_path(row.uuid), [("imei", row.imei)])
        if isinstance(detail, Outcome) or status_field(detail) is None:
            # An answer without a send_status says nothing: the state known so far is kept.
            report.unanswered += 1
            why = detail.error if isinstance(detail, Outcome) else "detail without a send_status"
            if len(report.notes) < 50:
                report.notes.append(f"{row.imei} command {row.command}: {why}")
            return None
        delivered = delivery_from(detail, row)
        report.states[delivered.send_status] += 1
        return delivered

    await _fan_out(rows, ask, ledger, run_id, limiter, concurrency)
    log.info(
        "tracked",
        run_id=run_id,
        asked=report.asked,
        unanswered=report.unanswered,
        **dict(report.states),
    )
    return report


DELIVERED = frozenset({"sent", "success", "failed", "timeout"})


def already_delivered(
    ledger: LedgerStore, run_id: str, fleets: frozenset[str] | None, imeis: frozenset[str] | None
) -> int:
    """Queued commands the ledger already knows reached their device: beyond cancelling."""
    return sum(
        1
        for row in ledger.queued(run_id, final=frozenset())
        if row.send_status in DELIVERED
        and (fleets is None or row.fleet in fleets)
        and (imeis is None or row.imei in imeis)
    )


def cancel_candidates(
    ledger: LedgerStore, run_id: str, fleets: frozenset[str] | None, imeis: frozenset[str] | None
) -> list[Queued]:
    """Queued commands not known to have left the platform (waiting, or never tracked)."""
    rows = ledger.queued(run_id, final=FINAL | {"sent"})
    return [
        row
        for row in rows
        if (fleets is None or row.fleet in fleets) and (imeis is None or row.imei in imeis)
    ]


async def cancel_pass(
    ledger: LedgerStore,
    run_id: str,
    rows: Sequence[Queued],
    platform: PlatformQueries,
    limiter: RateLimiter,
    *,
    concurrency: int,
) -> PassReport:
    """Cancel each row's command; a refusal is followed by a look at where it stands."""
    report = PassReport()

    async def cancel(row: Queued) -> Delivered | None:
        report.asked += 1
        answer = await platform.ask(cancel_path(row.uuid), [("imei", row.imei)], method="PUT")
        if not isinstance(answer, Outcome):
            report.cancelled += 1
            report.states["cancelled"] += 1
            return Delivered(row.imei, row.command, "cancelled", None, None, None, None, unix_now())
        if answer.errno is None:
            report.unanswered += 1  # no answer: we cannot tell whether it was cancelled
            if len(report.notes) < 50:
                report.notes.append(f"{row.imei} command {row.command}: {answer.error}")
            return None
        # Refused: the errno for "no longer waiting" is not documented, so look.
        await limiter.acquire()
        detail = await platform.ask(detail_path(row.uuid), [("imei", row.imei)])
        if isinstance(detail, Outcome) or status_field(detail) is None:
            report.unanswered += 1
            return None
        delivered = delivery_from(detail, row)
        report.states[delivered.send_status] += 1
        if delivered.send_status != "cancelled":
            report.not_cancellable += 1
        else:
            report.cancelled += 1
        return delivered

    await _fan_out(rows, cancel, ledger, run_id, limiter, concurrency)
    log.info(
        "cancelled",
        run_id=run_id,
        cancelled=report.cancelled,
        not_cancellable=report.not_cancellable,
    )
    return report
