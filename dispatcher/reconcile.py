"""Settling in-doubt rows by asking the platform instead of guessing.

A request whose answer never arrived may or may not have queued its command. The
platform lists a device's cached commands (``GET /nbiot/offline/history``), so for
each in-doubt row we look for a command on that device created since the request
was sent, of the same kind, whose uuid the ledger does not know yet, and whose
content (when the platform's text parses) matches what we sent:

- found: the row is ``ok`` with that uuid (the command was queued);
- not found: the row is ``pending`` (nothing was queued: the next run sends it);
- the platform did not answer: the row stays ``in_doubt``.

The match relies only on what the contract documents (device, type, create_time,
cmd_uuid); content is a further check only when it parses, since its format is not
documented. ``create_time`` is the platform's clock, ours may differ: a command
created up to ``CLOCK_SKEW`` before our send time still counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from dispatcher.ledger import InDoubt, Ledger, Status
from dispatcher.limiter import RateLimiter
from dispatcher.outcome import Outcome
from dispatcher.plan import Request
from dispatcher.platforms import HISTORY, detail_path
from dispatcher.timewindow import PLATFORM_TZ, wire_time

log = structlog.get_logger("dispatcher.reconcile")

CLOCK_SKEW = timedelta(minutes=2)
MAX_PAGES = 20  # a device holds at most 10 cached commands; history beyond 20 pages is noise


class PlatformQueries(Protocol):
    async def ask(self, path: str, pairs: list[tuple[str, str]]) -> dict[str, Any] | Outcome: ...


@dataclass
class ReconcileReport:
    found: int = 0  # settled ok: the command was queued
    not_found: int = 0  # settled pending: nothing was queued
    undecided: int = 0  # the platform could not tell; still in doubt
    notes: list[str] = field(default_factory=list)

    @property
    def looked_at(self) -> int:
        return self.found + self.not_found + self.undecided


def _answer_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLATFORM_TZ)
    except ValueError:
        return None


def _kind_matches(item_type: object, op: str) -> bool:
    """Only a type text that plainly names another kind rules a command out."""
    if not isinstance(item_type, str):
        return True
    text = item_type.lower()
    others = {"write", "read", "execute"} - {op}
    return op in text or not any(other in text for other in others)


def _content_matches(content: object, request: Request) -> bool:
    """False only when the platform's content parses and says something else than we sent."""
    if not isinstance(content, str):
        return True
    try:
        theirs = json.loads(content)
    except ValueError:
        return True
    if request.body is not None:
        return bool(theirs == json.loads(request.body))
    if not isinstance(theirs, dict):
        return True
    ours = dict(request.head)
    return all(str(value) == ours.get(key, str(value)) for key, value in theirs.items())


async def reconcile_run(
    ledger: Ledger,
    run_id: str,
    platform: PlatformQueries,
    limiter: RateLimiter,
    *,
    fallback_sent_at: float,
    requests: Mapping[tuple[str, int], Request] | None = None,
    min_age: float = 0.0,
    now: float | None = None,
) -> ReconcileReport:
    """Settle every in-doubt row of ``run_id`` that the platform can settle."""
    report = ReconcileReport()
    for row in ledger.in_doubt(run_id):
        request = requests.get((row.imei, row.command)) if requests is not None else None
        try:
            uuid = await _find(row, platform, limiter, ledger, fallback_sent_at, request)
        except _Undecided as exc:
            report.undecided += 1
            report.notes.append(f"{row.imei} command {row.command}: {exc}")
            continue
        if (
            uuid is None
            and row.sent_at is not None
            and (now or time.time()) - row.sent_at < min_age
        ):
            # It may still be on its way: "not found" is only an answer for an old enough request.
            report.undecided += 1
            report.notes.append(
                f"{row.imei} command {row.command}: sent too recently to tell; try again later"
            )
            continue
        if uuid is not None:
            ledger.settle(run_id, row, Status.OK, uuid, "reconciled: found on the platform")
            report.found += 1
        else:
            ledger.settle(
                run_id, row, Status.PENDING, None, "reconciled: not queued on the platform"
            )
            report.not_found += 1
    if report.looked_at:
        log.info(
            "reconciled",
            run_id=run_id,
            found=report.found,
            not_found=report.not_found,
            undecided=report.undecided,
        )
    return report


class _Undecided(Exception):
    pass


async def _find(
    row: InDoubt,
    platform: PlatformQueries,
    limiter: RateLimiter,
    ledger: Ledger,
    fallback_sent_at: float,
    request: Request | None,
) -> str | None:
    sent = datetime.fromtimestamp(
        row.sent_at if row.sent_at is not None else fallback_sent_at, PLATFORM_TZ
    )
    since = sent - CLOCK_SKEW
    candidates: list[tuple[datetime, str]] = []
    seen = 0
    for page in range(1, MAX_PAGES + 1):
        await limiter.acquire()
        data = await platform.ask(
            HISTORY,
            [("imei", row.imei), ("start", wire_time(since)), ("page", str(page)), ("sort", "ASC")],
        )
        if isinstance(data, Outcome):
            raise _Undecided(f"history not available ({data.error})")
        items = data.get("items")
        if not isinstance(items, list):
            raise _Undecided("history answer without items")
        for item in items:
            if not isinstance(item, dict):
                continue
            uuid = item.get("cmd_uuid")
            created = _answer_time(item.get("create_time"))
            if not isinstance(uuid, str) or not uuid or created is None or created < since:
                continue
            if not _kind_matches(item.get("type"), row.op) or ledger.uuid_known(uuid):
                continue
            candidates.append((created, uuid))
        seen += len(items)
        total = data.get("total_count")
        if not items or (isinstance(total, int) and seen >= total):
            break
    candidates.sort()
    for _, uuid in candidates:
        if request is None:
            return uuid
        await limiter.acquire()
        detail = await platform.ask(detail_path(uuid), [("imei", row.imei)])
        if isinstance(detail, Outcome) or _content_matches(detail.get("content"), request):
            return uuid
    return None
