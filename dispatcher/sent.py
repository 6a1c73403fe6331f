"""What a run sent: each ledger row holds the hash of its rendered request.

The job file's commands and window are in the run's fingerprint; a fleet file's
per-device variables are not, so they are checked here, request by request. A
resume whose fleet files render another request for a device the run already sent
is refused before anything leaves (or, when the operator accepts it, that device
is left as it was sent); reconcile compares the platform's history only with a
rendering whose hash matches what was sent.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import structlog

from dispatcher.errors import InputError
from dispatcher.ledger import DONE, LedgerStore
from dispatcher.plan import DeviceWork, Plan, Request
from dispatcher.problems import Problems

log = structlog.get_logger("dispatcher.sent")

BATCH = 500  # devices looked up per ledger query (SQLite's variable limit is far above)
NOT_SETTLED = -1  # never an IMEI's hash: Python's hash() gives -2 for what would be -1
_DONE = frozenset(s.value for s in DONE)

KEPT_AS_SENT = (
    "not sent: the fleet file changed after this device was sent (--accept-changed-fleet)"
)


@dataclass(frozen=True, slots=True)
class Changed:
    """A device whose fleet row now renders other requests than the run stored."""

    work: DeviceWork
    sent: bool  # at least one of its requests left (or may have left)
    first_unsent: int | None  # the first command not sent yet whose rendering differs


@dataclass
class FleetChanges:
    changed: list[Changed] = field(default_factory=list)
    legacy: list[tuple[str, int, str]] = field(default_factory=list)  # rows stored without hash
    # By the device's ordinal in the plan's pass: its IMEI's hash when all its rows are
    # settled (ok, failed, skipped) and unchanged, else NOT_SETTLED. 8 bytes a device,
    # not a set of strings: a 1M-device resume keeps 8 MB, not a hundred.
    settled: array[int] = field(default_factory=lambda: array("q"))

    def is_settled(self, ordinal: int, imei: str) -> bool:
        """The ordinal-th device of a later pass is settled: the producer need not render,
        register or hand it out. The IMEI's hash guards against a fleet file that changed
        between the passes (another device at that ordinal is not skipped)."""
        return ordinal < len(self.settled) and self.settled[ordinal] == hash(imei)

    @property
    def sent(self) -> list[Changed]:
        return [c for c in self.changed if c.sent]

    @property
    def unsent(self) -> list[Changed]:
        return [c for c in self.changed if not c.sent]


def _batches(items: Iterable[DeviceWork]) -> Iterator[list[DeviceWork]]:
    iterator = iter(items)
    while batch := list(islice(iterator, BATCH)):
        yield batch


class Comparison:
    """Compares each device of a pass with the request hashes a run stored, batch by batch.

    Read-only, so it can ride on the check pass (``check_job(consume=...)``): the pass
    renders and hashes every device once, and the ledger is read per batch while it goes.
    Nothing is refused here: ``changes`` is what ``refuse_or_accept`` decides on, after
    the check found the input sound.
    """

    def __init__(self, ledger: LedgerStore, run_id: str) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.changes = FleetChanges()

    def consume(self, works: Iterable[DeviceWork]) -> None:
        """Compare every device of ``works`` (a whole pass, in its order)."""
        for batch in _batches(works):
            self.add(batch)

    def add(self, batch: list[DeviceWork]) -> None:
        changes = self.changes
        settled = changes.settled
        stored: dict[str, dict[int, tuple[str | None, bool]]] = {}
        done: dict[str, int] = {}  # rows settled, by device
        for imei, command, digest, status, ever_sent in self.ledger.stored_requests(
            self.run_id, [w.device.imei for w in batch]
        ):
            rows = stored.get(imei)
            if rows is None:
                rows = stored[imei] = {}
            rows[command] = (digest, bool(ever_sent) or status != "pending")
            if status in _DONE:
                done[imei] = done.get(imei, 0) + 1
        for work in batch:
            imei = work.device.imei
            rows = stored.get(imei)
            if rows is None:
                settled.append(NOT_SETTLED)
                continue  # a device this run has not registered yet: nothing to compare
            differs = False
            first_unsent: int | None = None
            for request in work.requests:
                ours = request.digest
                stored_digest, ever_sent = rows.get(request.index, (ours, False))
                if stored_digest == ours:
                    continue
                if stored_digest is None:
                    changes.legacy.append((request.imei, request.index, ours))
                else:
                    differs = True
                    if not ever_sent and first_unsent is None:
                        first_unsent = request.index
            if differs:
                sent = any(ever for _, ever in rows.values())
                changes.changed.append(Changed(work, sent, first_unsent))
                settled.append(NOT_SETTLED)
            elif done.get(imei, 0) == len(work.requests) == len(rows):
                settled.append(hash(imei))
            else:
                settled.append(NOT_SETTLED)


def find_changes(ledger: LedgerStore, run_id: str, plan: Plan) -> FleetChanges:
    """Every device of ``plan`` whose rendered requests differ from the hashes ``run_id`` stored
    (a pass of its own: when the check pass could not compare, see ``Comparison``)."""
    comparison = Comparison(ledger, run_id)
    comparison.consume(plan.devices(Problems()))
    return comparison.changes


def refuse_or_accept(
    ledger: LedgerStore, run_id: str, changes: FleetChanges, *, accept: bool
) -> frozenset[str]:
    """Refuse a resume over changed fleet files (InputError, exit 2), or record the acceptance.

    Accepted: a changed device never sent is sent as its fleet row now says; a changed
    device already sent keeps what was sent: its unsent commands are sent while they
    render as before, and skipped from the first one that renders otherwise. Returns
    the IMEIs whose stored requests can no longer be re-rendered (reconcile must not
    compare with today's rendering of them).
    """
    if changes.legacy:
        # A ledger from before request hashes: today's rendering is the best evidence left.
        ledger.fill_hashes(run_id, changes.legacy)
    if not changes.changed:
        return frozenset()
    if not accept:
        problems = Problems()
        for change in changes.changed:
            device = change.work.device
            verb = "was sent" if change.sent else "was registered"
            problems.error(
                device.file,
                device.line,
                f"device {device.imei}",
                f'renders other requests than when run "{run_id}" {verb} with it',
            )
        raise InputError(
            problems.shown,
            [
                *problems.notes(),
                f"{len(changes.changed)} devices changed in the fleet files since the run started;"
                " nothing was sent. Restore the files, start a new run id (--run-id), or rerun"
                " with --accept-changed-fleet (new devices are sent, devices already sent are"
                " left as they were sent)",
            ],
            errors=problems.errors,
        )
    unsent = [
        (r.imei, r.index, r.digest) for change in changes.unsent for r in change.work.requests
    ]
    if unsent:
        ledger.store_hashes(run_id, unsent)
    kept = [change.work.device.imei for change in changes.sent]
    if kept:
        ledger.keep_as_sent(
            run_id,
            [
                (c.work.device.imei, c.first_unsent)
                for c in changes.sent
                if c.first_unsent is not None
            ],
            KEPT_AS_SENT,
        )
        accept_settled(ledger, run_id, changes)
    log.warning(
        "fleet_changed_accepted",
        run_id=run_id,
        devices_kept_as_sent=len(kept),
        devices_sent_as_changed=len(changes.unsent),
    )
    return frozenset(kept)


def accept_settled(ledger: LedgerStore, run_id: str, changes: FleetChanges) -> None:
    """Settled rows of accepted devices take today's hash, so the change is not refused again."""
    ledger.accept_hashes(
        run_id,
        [(r.imei, r.index, r.digest) for change in changes.sent for r in change.work.requests],
    )


def sent_requests(
    ledger: LedgerStore, run_id: str, plan: Plan, imeis: set[str]
) -> dict[tuple[str, int], Request]:
    """The rendered requests of a few devices, only where they hash to what the run stored.

    A request whose fleet row changed since it was sent is left out: reconcile then
    has no rendering to compare with, rather than a wrong one.
    """
    found: dict[tuple[str, int], Request] = {}
    if not imeis:
        return found
    wanted = [w for w in plan.devices(Problems()) if w.device.imei in imeis]
    for batch in _batches(wanted):
        stored = {
            (imei, command): digest
            for imei, command, digest, _, _ in ledger.stored_requests(
                run_id, [w.device.imei for w in batch]
            )
        }
        for work in batch:
            for request in work.requests:
                digest = stored.get((request.imei, request.index))
                if digest is None or digest == request.digest:
                    found[(request.imei, request.index)] = request
    return found
