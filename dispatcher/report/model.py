"""A run's report as data: where it stands, what failed and why, per fleet and per command.

``build_report`` reads a run's aggregates from the ledger (every count is grouped by
SQLite, so a million-row run reports in seconds with flat memory) into a frozen
``Report``; ``render`` turns it into a terminal summary, markdown or JSON, and
``outputs`` writes it to files.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dispatcher.formatting import iso_utc
from dispatcher.ledger import LedgerStore, RunRecord, Status

REPORT_VERSION = 1  # bump when a key of ``Report.to_dict`` changes meaning or goes away
TOP_ERRORS = 20  # error texts can vary per device; a report lists the largest groups only
TOP_SLOWEST = 10
# Settled first, then what still needs the run: the order of every table's columns.
STATUS_ORDER: tuple[str, ...] = tuple(
    s.value
    for s in (
        Status.OK,
        Status.FAILED,
        Status.IN_DOUBT,
        Status.SKIPPED,
        Status.PENDING,
        Status.SENDING,
    )
)


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows per status."""

    ok: int = 0
    failed: int = 0
    in_doubt: int = 0
    skipped: int = 0
    pending: int = 0
    sending: int = 0

    @classmethod
    def of(cls, by_status: dict[str, int]) -> Counts:
        # Status() refuses a status this version does not know rather than dropping its rows.
        return cls(**{Status(status).value: n for status, n in by_status.items()})

    def get(self, status: str) -> int:
        value: int = getattr(self, Status(status).value)
        return value

    @property
    def total(self) -> int:
        return sum(self.get(status) for status in STATUS_ORDER)

    @property
    def answered(self) -> int:
        """Rows the platform settled one way or the other: the failure rate's denominator."""
        return self.ok + self.failed

    @property
    def not_ok(self) -> int:
        """Rows that need an operator: failed, in doubt, or skipped behind a failure."""
        return self.failed + self.in_doubt + self.skipped

    @property
    def failure_rate(self) -> float:
        return self.failed / self.answered if self.answered else 0.0

    def to_dict(self) -> dict[str, int]:
        return {**{status: self.get(status) for status in STATUS_ORDER}, "total": self.total}


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The run's record as the report shows it; times are Unix seconds."""

    run_id: str
    job: str
    state: str
    reason: str | None
    target: str
    wave: int  # 1-based, as people count waves
    waves: int
    devices: int
    first_started_at: float
    started_at: float  # the last invocation's start
    ended_at: float | None
    remaining: int = 0  # devices of the job not settled yet (unsent, pending or in doubt)

    @classmethod
    def of(cls, record: RunRecord, remaining: int = 0) -> RunInfo:
        return cls(
            run_id=record.run_id,
            job=record.job_name,
            state=record.state,
            reason=record.reason,
            target=record.target,
            wave=record.wave + 1,
            waves=record.waves,
            devices=record.devices,
            first_started_at=record.first_started_at,
            started_at=record.started_at,
            ended_at=record.ended_at,
            remaining=remaining,
        )

    @property
    def duration_seconds(self) -> float | None:
        """The last invocation's wall time; None while it is still going on."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "state": self.state,
            "reason": self.reason,
            "target": self.target,
            "wave": self.wave,
            "waves": self.waves,
            "devices": self.devices,
            "remaining_devices": self.remaining,
            "first_started_at": iso_utc(self.first_started_at),
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
            "duration_seconds": _round(self.duration_seconds),
        }


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Failed and in-doubt rows sharing an errno and error text."""

    errno: int | None  # None: an HTTP-level or network failure, known by its text
    error: str | None
    failed: int
    in_doubt: int

    @property
    def rows(self) -> int:
        return self.failed + self.in_doubt

    def to_dict(self) -> dict[str, Any]:
        return {
            "errno": self.errno,
            "error": self.error,
            "failed": self.failed,
            "in_doubt": self.in_doubt,
            "rows": self.rows,
        }


@dataclass(frozen=True, slots=True)
class FleetCounts:
    fleet: str
    counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {"fleet": self.fleet, "counts": self.counts.to_dict()}


@dataclass(frozen=True, slots=True)
class CommandCounts:
    command: int  # 0-based index in the job, as in the ledger and `export`
    op: str
    counts: Counts

    @property
    def label(self) -> str:
        return f"command {self.command} ({self.op})"

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "op": self.op, "counts": self.counts.to_dict()}


@dataclass(frozen=True, slots=True)
class CellCounts:
    """One fleet's rows of one command: a test case in the JUnit report."""

    fleet: str
    command: int
    op: str
    counts: Counts

    @property
    def label(self) -> str:
        return f"command {self.command} ({self.op})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet,
            "command": self.command,
            "op": self.op,
            "counts": self.counts.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SlowAnswer:
    imei: str
    fleet: str
    command: int
    op: str
    status: str
    seconds: float  # first send to answer, retries included
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "imei": self.imei,
            "fleet": self.fleet,
            "command": self.command,
            "op": self.op,
            "status": self.status,
            "seconds": _round(self.seconds),
            "attempts": self.attempts,
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the summaries show about one run, read in one snapshot of the ledger."""

    ledger: str
    run: RunInfo
    counts: Counts
    errors: tuple[ErrorGroup, ...]  # the TOP_ERRORS largest groups
    errors_not_listed: int  # failed and in-doubt rows in the groups left out
    fleets: tuple[FleetCounts, ...]
    commands: tuple[CommandCounts, ...]
    cells: tuple[CellCounts, ...]  # per fleet and command
    slowest: tuple[SlowAnswer, ...]
    # queued rows by fleet and delivery state, once `track` asked the platform (empty before)
    delivery: tuple[tuple[str, str, int], ...] = ()
    # other applications' commands reconciliation saw on this run's devices (never ours)
    foreign_seen: int = 0

    @property
    def in_doubt(self) -> int:
        return self.counts.in_doubt

    @property
    def failure_rate(self) -> float:
        """failed / (ok + failed), the measure a rollout's abort rule watches."""
        return self.counts.failure_rate

    @property
    def all_ok(self) -> bool:
        return self.counts.total > 0 and self.counts.ok == self.counts.total

    def see_more(self) -> tuple[str, str]:
        """The commands that show this run again and every row of it, ready to paste."""
        ledger, run_id = shlex.quote(self.ledger), shlex.quote(self.run.run_id)
        return (
            f"onenet-dispatch report {ledger} --run-id {run_id}",
            f"onenet-dispatch export {ledger} --run-id {run_id}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``json.dumps``: times ISO 8601 UTC, seconds rounded to ms."""
        report, export = self.see_more()
        return {
            "report_version": REPORT_VERSION,
            "ledger": self.ledger,
            "run": self.run.to_dict(),
            "counts": self.counts.to_dict(),
            "answered": self.counts.answered,
            "failure_rate": round(self.failure_rate, 4),
            "in_doubt": self.in_doubt,
            "all_ok": self.all_ok,
            "errors": [group.to_dict() for group in self.errors],
            "errors_not_listed": self.errors_not_listed,
            "fleets": [fleet.to_dict() for fleet in self.fleets],
            "commands": [command.to_dict() for command in self.commands],
            "cells": [cell.to_dict() for cell in self.cells],
            "slowest": [slow.to_dict() for slow in self.slowest],
            "delivery": [
                {"fleet": f, "send_status": state, "rows": n} for f, state, n in self.delivery
            ],
            "foreign_commands_seen": self.foreign_seen,
            "see_more": {"report": report, "export": export},
        }


def build_report(ledger: LedgerStore, run_id: str) -> Report:
    """A run's report, from aggregates SQLite computes; raises InputError for an unknown run."""
    with ledger.snapshot():
        record = ledger.require_run(run_id)
        rollup = ledger.rollup_counts(run_id)
        groups = ledger.error_groups(run_id, TOP_ERRORS)
        slowest = ledger.slowest_answers(run_id, TOP_SLOWEST)
        delivery = ledger.delivery_by_fleet(run_id)
        foreign = ledger.foreign_seen(run_id)

    # The rollup's rows are already aggregates (a few per fleet and command); here
    # they are only sorted into the report's sections.
    total: dict[str, int] = {}
    by_fleet: defaultdict[str, dict[str, int]] = defaultdict(dict)
    by_command: defaultdict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    by_cell: defaultdict[tuple[str, int, str], dict[str, int]] = defaultdict(dict)
    for fleet, command, op, status, n in rollup:
        if fleet is None and command is None:
            total[status] = n
        elif command is None:
            assert fleet is not None
            by_fleet[fleet][status] = n
        elif fleet is None:
            assert op is not None
            by_command[command, op][status] = n
        else:
            assert op is not None
            by_cell[fleet, command, op][status] = n
    counts = Counts.of(total)
    errors = tuple(ErrorGroup(*group) for group in groups)
    return Report(
        ledger=str(ledger.path),
        run=RunInfo.of(record, max(0, record.devices - ledger.settled_devices(run_id))),
        counts=counts,
        errors=errors,
        errors_not_listed=counts.failed + counts.in_doubt - sum(g.rows for g in errors),
        fleets=tuple(FleetCounts(f, Counts.of(c)) for f, c in sorted(by_fleet.items())),
        commands=tuple(
            CommandCounts(cmd, op, Counts.of(c)) for (cmd, op), c in sorted(by_command.items())
        ),
        cells=tuple(
            CellCounts(f, cmd, op, Counts.of(c)) for (f, cmd, op), c in sorted(by_cell.items())
        ),
        slowest=tuple(SlowAnswer(*slow) for slow in slowest),
        delivery=tuple(delivery) if any(state != "untracked" for _, state, _ in delivery) else (),
        foreign_seen=foreign,
    )


# -- rendering ------------------------------------------------------------------------


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
