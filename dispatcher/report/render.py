"""The report's renderers: a terminal summary, GitHub-flavoured markdown (a change ticket,
a CI job summary) and JSON (a pipeline)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dispatcher.formatting import human_seconds, iso_utc, local_time, percent, share
from dispatcher.ledger import Status
from dispatcher.report.model import STATUS_ORDER, Counts, Report


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
    ended = "still running" if run.ended_at is None else local_time(run.ended_at)
    duration = run.duration_seconds
    took = "" if duration is None else f" (last invocation {human_seconds(duration)})"
    console.print(f"started:      {local_time(run.first_started_at)}   ended: {ended}{took}")

    statuses = shown_statuses(report)
    table = _table("rows per status", "status", "rows", "share")
    for status in statuses:
        n = report.counts.get(status)
        table.add_row(status, str(n), share(n, report.counts.total))
    table.add_row("total", str(report.counts.total), "", style="bold")
    console.print(table)
    console.print(
        f"failure rate: {percent(report.failure_rate)} ({report.counts.failed} failed of"
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
                f"{percent(report.failure_rate)} ({report.counts.failed} failed of"
                f" {report.counts.answered} answered)",
            ),
            ("in doubt", str(report.in_doubt)),
        ],
    )

    out += ["### Rows per status", ""]
    rows = [
        (s, str(report.counts.get(s)), share(report.counts.get(s), report.counts.total))
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
