"""Settling in-doubt rows by asking the platform instead of guessing.

A request whose answer never arrived may or may not have queued its command, and
other applications (another system, an operator's console) queue commands on the
same devices. For each device with in-doubt rows we read its history
(``platforms.HISTORY``) from the earliest send on, to its end, and take as
candidates the commands of the same kind, created since the row's send (less
``CLOCK_SKEW``: the platform's clock is not ours), whose uuid the ledger does not
know. Each candidate's detail is judged against what was sent (``evidence.judge``):

- exactly one candidate agrees and every other one is ruled out: ``ok`` with its uuid;
- no candidate is left, the whole history was read, and the request is old enough:
  ``pending`` (nothing was queued; the next run sends it);
- anything else (several agree, one could not be compared, a detail or a page could
  not be read, the history could not be read to its end): stays ``in_doubt``, with
  the reason in the row's error.

Commands ruled out for every in-doubt row of a device are another application's:
they never settle a row, and the ledger counts them for ``report``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from dispatcher.answerforms import answer_time, count, uuid_key, uuid_text, zone_written
from dispatcher.evidence import Judgement, Verdict, judge
from dispatcher.ledger import InDoubt, LedgerStore, Status
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.platforms import HISTORY, detail_path
from dispatcher.onenet.transport import PlatformQueries
from dispatcher.outcome import Outcome
from dispatcher.plan import Request
from dispatcher.timewindow import PLATFORM_TZ, wire_time

log = structlog.get_logger("dispatcher.reconcile")

CLOCK_SKEW = timedelta(minutes=2)
# The pages write times without a zone and never say which: we read them as UTC+8, but
# a server may mean its own zone (UTC, say) in the history's `start` and its
# `create_time`. Read 8 h early, our own command would look older than its send and be
# left out: "not queued", and sent twice. So the history is asked from this much earlier
# (UTC-12 read as UTC+8 is 20 h off), and a command whose zoneless create_time falls in
# this margin before the send can rule itself out but never be taken for ours.
ZONE_MARGIN = timedelta(hours=20)
# A device holds at most 10 cached commands at a time, but its history keeps the
# finished ones too; a history longer than this is not read to its end (in doubt).
MAX_PAGES = 50


@dataclass
class ReconcileReport:
    found: int = 0  # settled ok: the command was queued
    not_found: int = 0  # settled pending: nothing was queued
    undecided: int = 0  # the platform could not tell; still in doubt
    foreign: int = 0  # other applications' commands seen on our devices
    notes: list[str] = field(default_factory=list)

    @property
    def looked_at(self) -> int:
        return self.found + self.not_found + self.undecided


@dataclass(frozen=True, slots=True)
class Listed:
    """One command of a device's history, as listed."""

    uuid: str | None  # stripped; None when the item has none we can use
    type: object
    created: datetime | None  # None when the create_time does not parse
    create_time: str | None
    zoned: bool = False  # the create_time says its instant (a zone, or a Unix time)

    def may_be_since(self, start: datetime) -> bool:
        """Could it have been created at or after ``start``, whatever zone its time is in?"""
        if self.created is None or self.created >= start:
            return True
        return not self.zoned and self.created >= start - ZONE_MARGIN

    def surely_since(self, start: datetime) -> bool:
        return self.created is None or self.created >= start

    @property
    def key(self) -> str | None:
        """The uuid as compared (``answerforms.uuid_key``): case, dashes and spaces aside."""
        return uuid_key(self.uuid)


class _Undecided(Exception):
    pass


def kind_matches(item_type: object, op: str) -> bool:
    """Only a type text that plainly names another kind rules a command out ("READ" is a read)."""
    if not isinstance(item_type, str):
        return True
    text = item_type.lower()
    others = {"write", "read", "execute"} - {op}
    return op in text or not any(other in text for other in others)


async def reconcile_run(
    ledger: LedgerStore,
    run_id: str,
    platform: PlatformQueries,
    limiter: RateLimiter,
    *,
    fallback_sent_at: float,
    requests: Mapping[tuple[str, int], Request] | None = None,
    min_age: float = 0.0,
    now: float | None = None,
    owns: Callable[[str], bool] | None = None,
) -> ReconcileReport:
    """Settle every in-doubt row of ``run_id`` that the platform can settle (of the IMEIs
    ``owns`` accepts: a shard settles its own rows, never another shard's)."""
    report = ReconcileReport()
    devices: dict[str, list[InDoubt]] = {}
    for row in ledger.in_doubt(run_id):
        if owns is None or owns(row.imei):
            devices.setdefault(row.imei, []).append(row)
    if not devices:
        return report
    # Compared by key: the send's answer and the history may write one uuid differently.
    known = {key for key in map(uuid_key, ledger.known_uuids()) if key is not None}
    device = _Device(ledger, run_id, platform, limiter, known, report)
    for imei, rows in devices.items():
        sent = {
            row.command: datetime.fromtimestamp(
                row.sent_at if row.sent_at is not None else fallback_sent_at, PLATFORM_TZ
            )
            for row in rows
        }
        age = {
            row.command: (now or time.time()) - (row.sent_at or fallback_sent_at) for row in rows
        }
        wanted = {
            row.command: requests.get((row.imei, row.command)) if requests is not None else None
            for row in rows
        }
        await device.settle(imei, rows, sent, wanted, age, min_age)
    log.info(
        "reconciled",
        run_id=run_id,
        found=report.found,
        not_found=report.not_found,
        undecided=report.undecided,
        foreign=report.foreign,
    )
    return report


class _Device:
    """Reconciles one device's in-doubt rows at a time; details are fetched once per uuid."""

    def __init__(
        self,
        ledger: LedgerStore,
        run_id: str,
        platform: PlatformQueries,
        limiter: RateLimiter,
        known: set[str],
        report: ReconcileReport,
    ) -> None:
        self.ledger, self.run_id, self.platform, self.limiter = ledger, run_id, platform, limiter
        self.known, self.report = known, report

    async def settle(
        self,
        imei: str,
        rows: Sequence[InDoubt],
        sent: Mapping[int, datetime],
        wanted: Mapping[int, Request | None],
        age: Mapping[int, float],
        min_age: float,
    ) -> None:
        since = min(sent.values()) - CLOCK_SKEW
        try:
            listed = await self._history(imei, since - ZONE_MARGIN)
        except _Undecided as exc:
            for row in rows:
                self._keep(row, str(exc))
            return
        details: dict[str, Mapping[str, Any] | str] = {}  # uuid -> detail, or why not fetched
        ruled_out: dict[str, int] = {}  # uuid -> rows it was ruled out for
        matched_kind: dict[str, int] = {}  # uuid -> rows of its kind
        for row in rows:
            start = sent[row.command] - CLOCK_SKEW
            candidates = [
                item
                for item in listed
                if item.may_be_since(start)
                and kind_matches(item.type, row.op)
                and (item.uuid is None or item.key not in self.known)
            ]
            agree: list[str] = []
            unsure: list[tuple[str, str]] = []  # (uuid, why it cannot be ruled out)
            for item in candidates:
                if item.uuid is None:
                    unsure.append(("-", "listed without a uuid"))
                    continue
                matched_kind[item.uuid] = matched_kind.get(item.uuid, 0) + 1
                verdict = await self._judge(imei, item.uuid, wanted[row.command], details)
                if isinstance(verdict, str):
                    unsure.append((item.uuid, verdict))
                elif verdict.verdict is Verdict.AGREES and not item.surely_since(start):
                    # ours if the platform's times are not UTC+8; an earlier twin if they are
                    unsure.append(
                        (item.uuid, "agrees, but its create_time (no zone) is before the send")
                    )
                elif verdict.verdict is Verdict.AGREES:
                    agree.append(item.uuid)
                elif verdict.verdict is Verdict.NO_EVIDENCE:
                    unsure.append((item.uuid, verdict.why))
                else:
                    ruled_out[item.uuid] = ruled_out.get(item.uuid, 0) + 1
            self._decide(row, agree, unsure, age[row.command], min_age)
        foreign = [
            item
            for item in listed
            if item.uuid is not None
            and item.key not in self.known
            and (item.created is None or item.created >= since)
            and ruled_out.get(item.uuid, 0) == matched_kind.get(item.uuid, 0)
        ]
        if foreign:
            self.report.foreign += len(foreign)
            self.ledger.note_foreign(
                self.run_id,
                [(imei, item.uuid or "", str(item.type), item.create_time) for item in foreign],
                time.time(),
            )

    def _decide(
        self,
        row: InDoubt,
        agree: list[str],
        unsure: list[tuple[str, str]],
        age: float,
        min_age: float,
    ) -> None:
        if len(agree) == 1 and not unsure:
            uuid = agree[0]
            self.known.add(uuid_key(uuid) or uuid)
            self.ledger.settle(
                self.run_id, row, Status.OK, uuid, "reconciled: found on the platform"
            )
            self.report.found += 1
        elif len(agree) > 1:
            self._keep(
                row,
                f"{len(agree)} commands on the platform agree with what was sent;"
                " cannot tell which is ours",
                ", ".join(agree),
            )
        elif unsure:
            head = "one command agrees, but" if agree else "no command agrees, and"
            # The ledger's error holds no uuids, so `report` groups rows by reason.
            reasons = "; ".join(dict.fromkeys(why for _, why in unsure))
            self._keep(
                row,
                f"{head} {len(unsure)} of the right kind since the send cannot be ruled out"
                f" ({reasons})",
                ", ".join(uuid for uuid, _ in unsure[:5]),
            )
        elif age < min_age:
            # It may still be on its way: "not found" is only an answer for an old enough request.
            self._keep(row, "sent too recently to tell; try again later")
        else:
            self.ledger.settle(
                self.run_id, row, Status.PENDING, None, "reconciled: not queued on the platform"
            )
            self.report.not_found += 1

    def _keep(self, row: InDoubt, why: str, uuids: str = "") -> None:
        self.report.undecided += 1
        which = f" [{uuids}]" if uuids else ""
        self.report.notes.append(f"{row.imei} command {row.command}: {why}{which}")
        self.ledger.settle(self.run_id, row, Status.IN_DOUBT, None, f"in doubt: {why}")

    async def _judge(
        self,
        imei: str,
        uuid: str,
        request: Request | None,
        details: dict[str, Mapping[str, Any] | str],
    ) -> Judgement | str:
        if request is None:
            return "the job as sent is not available to compare with"
        detail = details.get(uuid)
        if detail is None:
            await self.limiter.acquire()
            answer = await self.platform.ask(detail_path(uuid), [("imei", imei)])
            detail = (
                answer
                if not isinstance(answer, Outcome)
                else f"detail not available ({answer.error})"
            )
            if not isinstance(answer, Outcome):
                details[uuid] = answer  # a failed fetch is asked again for the next row
        if isinstance(detail, str):
            return detail
        return judge(detail, request)

    async def _history(self, imei: str, since: datetime) -> list[Listed]:
        """Every command listed since ``since``, or _Undecided when the end was not reached.

        The pages do not say how a server pages: a page that lists nothing new (a server
        that ignores ``page``) or a count that the pages never reach leaves the history
        unread to its end, never "read" on what was seen twice.
        """
        listed: dict[str, Listed] = {}  # by uuid key
        anonymous: list[Listed] = []
        for page in range(1, MAX_PAGES + 1):
            await self.limiter.acquire()
            data = await self.platform.ask(
                HISTORY,
                [("imei", imei), ("start", wire_time(since)), ("page", str(page)), ("sort", "ASC")],
            )
            if isinstance(data, Outcome):
                raise _Undecided(f"history not available ({data.error})")
            total = count(data.get("total_count"))
            if total is not None and total < 0:
                # -1 and the like: "not counted", never "all -1 seen" after the first page
                total = None
            items = data.get("items")
            if items is None and total == 0:
                items = []  # "nothing listed" said by the count alone: items left out, or null
            if not isinstance(items, list):
                raise _Undecided("history answer without a list of items")
            new = 0
            for item in items:
                entry = _listed(item)
                if entry.key is None:
                    anonymous.append(entry)
                    new += 1
                elif entry.key not in listed:
                    listed[entry.key] = entry
                    new += 1
            seen = len(listed) + len(anonymous)
            if not items:
                if total is not None and seen < total:
                    raise _Undecided(
                        f"history ended after {seen} of the {total} commands it counts"
                    )
                break
            if new == 0:
                raise _Undecided(f"history page {page} lists only commands of earlier pages")
            if total is not None and seen >= total:
                break
        else:
            raise _Undecided(f"history runs past {MAX_PAGES} page(s); not read to its end")
        return [*listed.values(), *anonymous]


def _listed(item: object) -> Listed:
    if not isinstance(item, dict):
        return Listed(None, None, None, None)
    # cmd_uuid is the pages' name; a server writing the send answer's "uuid" names the same.
    uuid = uuid_text(item.get("cmd_uuid")) or uuid_text(item.get("uuid"))
    if uuid_key(uuid) is None:
        uuid = None  # only noise ("-"): nothing to ask a detail for
    create_time = item.get("create_time")
    return Listed(
        uuid,
        item.get("type"),
        answer_time(create_time),
        None if create_time is None or create_time == "" else str(create_time),
        zone_written(create_time),
    )
