"""A run's report: where it stands, what failed and why, per fleet and per command.

``build_report`` reads a run's aggregates from the ledger (every count is grouped by
SQLite, so a million-row run reports in seconds with flat memory) into a frozen
``Report``; the renderers turn it into a terminal summary, GitHub-flavoured markdown
(a change ticket, a CI job summary) or JSON (a pipeline). ``outputs`` writes it to
files.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dispatcher.ledger import Ledger, RunRecord, Status

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


def build_report(ledger: Ledger, run_id: str) -> Report:
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


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_text(report: Report, console: Console) -> None:
    """The summary for a terminal: a table per section, then where to look next."""
    run = report.run
    console.print(f"run {run.run_id} ({run.job}) -> {run.target}", style="bold", markup=False)
    state = run.state if not run.reason else f"{run.state}: {run.reason}"
    console.print(f"state:        {state}", markup=False)
    console.print(
        f"wave:         {run.wave} of {run.waves}   devices: {run.devices}"
        f"   not settled yet: {run.remaining}"
    )
    ended = "still running" if run.ended_at is None else _local(run.ended_at)
    duration = run.duration_seconds
    took = "" if duration is None else f" (last invocation {human_seconds(duration)})"
    console.print(f"started:      {_local(run.first_started_at)}   ended: {ended}{took}")

    statuses = shown_statuses(report)
    table = _table("rows per status", "status", "rows", "share")
    for status in statuses:
        n = report.counts.get(status)
        table.add_row(status, str(n), _share(n, report.counts.total))
    table.add_row("total", str(report.counts.total), "", style="bold")
    console.print(table)
    console.print(
        f"failure rate: {_percent(report.failure_rate)} ({report.counts.failed} failed of"
        f" {report.counts.answered} answered)   in doubt: {report.in_doubt}"
    )
    if report.in_doubt:
        console.print(
            "in-doubt rows may have been queued: they are not sent again unless the run is"
            " given --resend-in-doubt; `onenet-dispatch reconcile` settles them.",
            style="yellow",
        )
    if report.foreign_seen:
        console.print(
            "other applications' commands seen during reconciliation:"
            f" {report.foreign_seen} (on this run's devices; never taken for ours)"
        )

    if report.errors:
        table = _table("failed and in-doubt rows per errno", "errno", "error", "failed", "in doubt")
        for group in report.errors:
            table.add_row(
                _errno(group.errno), Text(group.error or ""), str(group.failed), str(group.in_doubt)
            )
        console.print(table)
        if report.errors_not_listed:
            console.print(f"... and {report.errors_not_listed} rows with other errors")

    table = _table("per fleet", "fleet", *statuses, "total")
    for fleet in report.fleets:
        # Text(): names and error texts are the user's or the platform's, never markup.
        table.add_row(Text(fleet.fleet), *_cells(fleet.counts, statuses))
    console.print(table)
    table = _table("per command", "command", *statuses, "total")
    for command in report.commands:
        table.add_row(command.label, *_cells(command.counts, statuses))
    console.print(table)

    if report.slowest:
        table = _table(
            "slowest answers (first send to answer)",
            "imei",
            "fleet",
            "command",
            "status",
            "seconds",
            "attempts",
        )
        for slow in report.slowest:
            table.add_row(
                slow.imei,
                Text(slow.fleet),
                f"{slow.command} ({slow.op})",
                slow.status,
                f"{slow.seconds:.3f}",
                str(slow.attempts),
            )
        console.print(table)

    if report.delivery:
        states = _delivery_states(report)
        table = _table("delivery on the platform (from `track`)", "fleet", *states)
        for fleet_name, row in _delivery_rows(report, states):
            table.add_row(Text(fleet_name), *row)
        console.print(table)

    again, export = report.see_more()
    # soft_wrap: a command folded at the terminal's width could not be pasted back.
    console.print(f"ledger: {report.ledger}", markup=False, soft_wrap=True)
    console.print(f"see:    {again}", markup=False, soft_wrap=True)
    console.print(f"        {export}", markup=False, soft_wrap=True)


def render_markdown(report: Report) -> str:
    """GitHub-flavoured markdown: a heading and a table per section, then where to look next."""
    run = report.run
    statuses = shown_statuses(report)
    duration = run.duration_seconds
    out = [f"## Rollout report: {_md(run.run_id)}", ""]
    out += _md_table(
        ("run", run.run_id),
        [
            ("job", run.job),
            ("target", run.target),
            ("state", run.state if not run.reason else f"{run.state}: {run.reason}"),
            ("wave", f"{run.wave} of {run.waves}"),
            ("devices", str(run.devices)),
            ("devices not settled yet", str(run.remaining)),
            ("started", iso_utc(run.first_started_at) or ""),
            ("ended", iso_utc(run.ended_at) or "still running"),
            ("last invocation", "" if duration is None else human_seconds(duration)),
            (
                "failure rate",
                f"{_percent(report.failure_rate)} ({report.counts.failed} failed of"
                f" {report.counts.answered} answered)",
            ),
            ("in doubt", str(report.in_doubt)),
        ],
    )

    out += ["### Rows per status", ""]
    rows = [
        (s, str(report.counts.get(s)), _share(report.counts.get(s), report.counts.total))
        for s in statuses
    ]
    out += _md_table(("status", "rows", "share"), [*rows, ("total", str(report.counts.total), "")])

    out += ["### Failed and in-doubt rows per errno", ""]
    if report.errors:
        out += _md_table(
            ("errno", "error", "failed", "in doubt"),
            [
                (_errno(g.errno), g.error or "", str(g.failed), str(g.in_doubt))
                for g in report.errors
            ],
        )
        if report.errors_not_listed:
            out += [f"... and {report.errors_not_listed} rows with other errors", ""]
    else:
        out += ["None.", ""]

    out += ["### Per fleet", ""]
    out += _md_table(
        ("fleet", *statuses, "total"),
        [(f.fleet, *_cells(f.counts, statuses)) for f in report.fleets],
    )
    out += ["### Per command", ""]
    out += _md_table(
        ("command", *statuses, "total"),
        [(c.label, *_cells(c.counts, statuses)) for c in report.commands],
    )
    out += ["### Slowest answers", ""]
    if report.slowest:
        out += _md_table(
            ("imei", "fleet", "command", "status", "seconds", "attempts"),
            [
                (
                    s.imei,
                    s.fleet,
                    f"{s.command} ({s.op})",
                    s.status,
                    f"{s.seconds:.3f}",
                    str(s.attempts),
                )
                for s in report.slowest
            ],
        )
    else:
        out += ["No answers recorded yet.", ""]

    if report.delivery:
        states = _delivery_states(report)
        out += ["### Delivery on the platform", ""]
        out += _md_table(
            ["fleet", *states], [[_md(f), *row] for f, row in _delivery_rows(report, states)]
        )
        out.append("")

    again, export = report.see_more()
    out += [f"Ledger: {_md(report.ledger)}", "", "See more:", "", "```sh", again, export, "```"]
    return "\n".join(out) + "\n"


# -- helpers --------------------------------------------------------------------------


def shown_statuses(report: Report) -> tuple[str, ...]:
    """The statuses worth a column: ok and failed always, the others when the run has any."""
    return tuple(
        s
        for s in STATUS_ORDER
        if s in (Status.OK.value, Status.FAILED.value) or report.counts.get(s)
    )


def iso_utc(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human_seconds(seconds: float, *, tenths: bool = True) -> str:
    """``8.2s``, ``3m05s``, ``2h10m``; whole seconds under a minute with ``tenths=False``."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if tenths else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _share(n: int, total: int) -> str:
    return _percent(n / total) if total else ""


def _percent(ratio: float) -> str:
    return f"{ratio:.1%}"


def _errno(errno: int | None) -> str:
    return "-" if errno is None else str(errno)


def _cells(counts: Counts, statuses: Sequence[str]) -> tuple[str, ...]:
    return (*(str(counts.get(s)) for s in statuses), str(counts.total))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, name in enumerate(columns):
        # Text columns (the first, and an error's text) left; counts right, to line up digits.
        numeric = i > 0 and name not in ("error", "fleet", "command", "status")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    return table


# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that
# would change a table cell (|), start emphasis, code, links, or HTML (<, &).
_MD_SPECIAL = frozenset("\\`*_[]<>|~&")


def _md(text: str) -> str:
    escaped = "".join(f"\\{ch}" if ch in _MD_SPECIAL else ch for ch in text)
    return " ".join(escaped.split())  # a newline would end the table row


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    out = [line([_md(h) for h in header])]
    out.append("|" + "|".join("---:" if _is_count(h) else "---" for h in header) + "|")
    out += [line([_md(c) for c in row]) for row in rows]
    out.append("")
    return out


def _is_count(header: str) -> bool:
    return header in (
        *STATUS_ORDER,
        "total",
        "rows",
        "share",
        "failed",
        "in doubt",
        "seconds",
        "attempts",
    )


_DELIVERY_ORDER = (
    "untracked",
    "waiting",
    "sent",
    "success",
    "failed",
    "expired",
    "cancelled",
    "timeout",
)


def _delivery_states(report: Report) -> list[str]:
    present = {state for _, state, _ in report.delivery}
    return [s for s in _DELIVERY_ORDER if s in present] + sorted(present - set(_DELIVERY_ORDER))


def _delivery_rows(report: Report, states: list[str]) -> list[tuple[str, list[str]]]:
    by_fleet: dict[str, dict[str, int]] = {}
    for fleet, state, n in report.delivery:
        by_fleet.setdefault(fleet, {})[state] = n
    return [
        (fleet, [str(counts.get(s, 0)) for s in states])
        for fleet, counts in sorted(by_fleet.items())
    ]
