"""Files a pipeline or a monitor reads after a run: summary JSON, JUnit XML, Prometheus metrics.

Every file is written whole or not at all (a temporary file beside it, then
``os.replace``), so a CI step, a dashboard or node_exporter never reads half of
one. Failing to write one is an ``InputError`` naming the file: the path was the
caller's choice, and the CLI turns it into a message, not a traceback.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from dispatcher.errors import InputError
from dispatcher.formatting import iso_utc
from dispatcher.ledger import LedgerStore
from dispatcher.report import STATUS_ORDER, CellCounts, Report, RunInfo, render_json
from dispatcher.resume import RunState

MAX_ERROR_CHARS = 200  # per listed device, so one long platform answer cannot bloat a report
MAX_FAILURES_TOTAL = 1000  # devices listed over all test cases: a file CI can still render

# -- summary JSON ---------------------------------------------------------------------


def write_summary_json(report: Report, path: Path) -> None:
    """The final summary for a pipeline to read: ``render_json``, written atomically."""
    _atomic_write(path, render_json(report).encode())


# -- JUnit XML ------------------------------------------------------------------------

# XML 1.0 cannot carry most control characters, escaped or not, and ElementTree
# writes them as they are: one in a platform's error text would make the whole
# file unparseable for the CI system.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def write_junit(
    report: Report,
    ledger: LedgerStore,
    run_id: str,
    path: Path,
    max_failures_listed: int = 50,
    *,
    max_failures_total: int = MAX_FAILURES_TOTAL,
) -> None:
    """A JUnit XML report: one test case per fleet and command, the run as one test suite.

    A case fails when any of its rows is failed, in doubt or skipped; its failure text
    lists those devices (failed first), at most ``max_failures_listed`` per case and
    ``max_failures_total`` in all, then how many more. A case whose rows are all ok or
    not yet sent (pending) is skipped when some are pending, passed otherwise.
    """
    if run_id != report.run.run_id:
        raise ValueError(f"report is of run {report.run.run_id!r}, not {run_id!r}")
    listed = _listed_devices(ledger, run_id, max_failures_listed)
    run = report.run
    failures = sum(1 for cell in report.cells if cell.counts.not_ok)
    skipped = sum(1 for cell in report.cells if not cell.counts.not_ok and _unsent(cell))
    totals = {
        "tests": str(len(report.cells)),
        "failures": str(failures),
        # JUnit's "errors" are tests that could not run; a row that could not be sent is
        # a failure of its case here, so there are none.
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{run.duration_seconds or 0.0:.3f}",
    }
    root = ET.Element("testsuites", {"name": "onenet-dispatch", **totals})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _xml(f"onenet-dispatch run {run.run_id}"),
            **totals,
            "timestamp": _junit_timestamp(run),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", run.run_id),
        ("job", run.job),
        ("state", run.state),
        ("reason", run.reason or ""),
        ("target", run.target),
        ("wave", f"{run.wave} of {run.waves}"),
        ("ledger", report.ledger),
        ("failure_rate", f"{report.failure_rate:.4f}"),
    ):
        ET.SubElement(properties, "property", {"name": name, "value": _xml(value)})

    export = report.see_more()[1]
    budget = max_failures_total
    for cell in report.cells:
        case = ET.SubElement(suite, "testcase", {"classname": _xml(cell.fleet), "name": cell.label})
        if cell.counts.not_ok:
            lines = listed.get((cell.fleet, cell.command), [])[: max(budget, 0)]
            budget -= len(lines)
            # The listing is read after the report: with a run still writing, it may
            # have moved on meanwhile, and a negative count would only confuse.
            more = max(0, cell.counts.not_ok - len(lines))
            if more:
                lines.append(f"... and {more} more")
            lines.append(f"every row: {export}")
            failure = ET.SubElement(
                case,
                "failure",
                {"message": _xml(_failure_message(cell)), "type": _worst_status(cell)},
            )
            failure.text = _xml("\n".join(lines))
        elif _unsent(cell):
            ET.SubElement(
                case,
                "skipped",
                {"message": f"{_unsent(cell)} of {cell.counts.total} rows not sent yet"},
            )
    ET.indent(root)
    buffer = io.BytesIO()
    ET.ElementTree(root).write(buffer, encoding="utf-8", xml_declaration=True)
    _atomic_write(path, buffer.getvalue() + b"\n")


def _listed_devices(
    ledger: LedgerStore, run_id: str, per_cell: int
) -> dict[tuple[str, int], list[str]]:
    """The failure text's device lines per (fleet, command), at most ``per_cell`` each."""
    listed: dict[tuple[str, int], list[str]] = {}
    for fleet, command, imei, status, errno, error in ledger.not_ok_rows(run_id, per_cell):
        text = (error or "")[:MAX_ERROR_CHARS]
        errno_text = "-" if errno is None else str(errno)
        listed.setdefault((fleet, command), []).append(
            f"{imei} {status} errno={errno_text} {text}".rstrip()
        )
    return listed


def _failure_message(cell: CellCounts) -> str:
    c = cell.counts
    parts = [f"{c.get(s)} {s}" for s in ("failed", "in_doubt", "skipped") if c.get(s)]
    return f"{c.not_ok} of {c.total} devices not ok: {', '.join(parts)}"


def _worst_status(cell: CellCounts) -> str:
    return next(s for s in ("failed", "in_doubt", "skipped") if cell.counts.get(s))


def _unsent(cell: CellCounts) -> int:
    return cell.counts.pending + cell.counts.sending


def _junit_timestamp(run: RunInfo) -> str:
    # JUnit's schema takes a dateTime without a zone; the value is UTC.
    return (iso_utc(run.first_started_at) or "").removesuffix("Z")


# -- Prometheus metrics -----------------------------------------------------------------

# The states ``runner.run_job`` records (not `cancel`'s). Each gets a sample (0 or 1), so
# an alert on state="aborted" sees 0 rather than no data.
RUN_STATES = tuple(s.value for s in RunState if s is not RunState.CANCELLED)
_LAST_SUCCESS = "onenet_dispatch_last_success_timestamp_seconds"


def write_metrics(report: Report, path: Path, *, now: float) -> None:
    """Prometheus text exposition for node_exporter's textfile collector, written atomically.

    ``now`` (Unix seconds) stands in for the end of a run still going on. The last
    success time is set when the run finished with every row ok; otherwise the value
    already in ``path`` for this job is kept, so an alert on its age keeps working.
    The file is rewritten whole each time: give each job (each timer) a file of its own.
    """
    run = report.run
    ids = {"run_id": run.run_id, "job": run.job}
    end = run.ended_at if run.ended_at is not None else now
    last_success: float | None
    if run.state == RunState.FINISHED and report.all_ok:
        last_success = end
    else:
        last_success = _previous_last_success(path, run.job)
    states = RUN_STATES if run.state in RUN_STATES else (*RUN_STATES, run.state)

    out: list[str] = []
    _metric(
        out,
        "onenet_dispatch_rows",
        "Ledger rows of the run by status.",
        # Every status, zeros included: a series that vanishes reads as "no data", not 0.
        [({**ids, "status": s}, report.counts.get(s)) for s in STATUS_ORDER],
    )
    _metric(
        out,
        "onenet_dispatch_run_duration_seconds",
        "Wall time of the run's last invocation (until now while it runs).",
        [(ids, max(0.0, end - run.started_at))],
    )
    if last_success is not None:
        _metric(
            out,
            _LAST_SUCCESS,
            "When a run of this job last finished with every row ok (Unix seconds).",
            [({"job": run.job}, last_success)],
        )
    _metric(
        out,
        "onenet_dispatch_run_state",
        "1 for the run's current state, 0 for the others.",
        [({**ids, "state": s}, 1 if s == run.state else 0) for s in states],
    )
    _metric(
        out,
        "onenet_dispatch_failure_ratio",
        "Failed rows over answered rows (ok + failed) of the run.",
        [(ids, report.failure_rate)],
    )
    _atomic_write(path, "".join(out).encode())


def _metric(
    out: list[str], name: str, help_text: str, samples: list[tuple[Mapping[str, str], float]]
) -> None:
    out.append(f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} gauge\n")
    for labels, value in samples:
        pairs = ",".join(f'{key}="{_escape_label(val)}"' for key, val in labels.items())
        # No timestamp: the textfile collector refuses samples that carry one.
        out.append(f"{name}{{{pairs}}} {_number(value)}\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))  # repr round-trips; Prometheus reads 1e+20, inf and nan alike


def _previous_last_success(path: Path, job: str) -> float | None:
    """This job's last success time in the metrics file we wrote before, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # no file yet, or not ours: there is nothing to keep
    prefix = f'{_LAST_SUCCESS}{{job="{_escape_label(job)}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            try:
                return float(line[len(prefix) :])
            except ValueError:
                return None
    return None


# -- GitHub Actions -----------------------------------------------------------------------


def append_github_step_summary(markdown: str, env: Mapping[str, str]) -> bool:
    """Append to the job summary GitHub Actions names in ``GITHUB_STEP_SUMMARY``; False if unset."""
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    try:
        # Appended, not replaced: earlier steps of the job may have written theirs.
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise InputError(
            f"cannot append to GITHUB_STEP_SUMMARY {target}: {exc.strerror or exc}"
        ) from None
    return True


# -- writing ---------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or keeps what it held: never a part of it."""
    # The temporary file is in the same directory (os.replace cannot cross file
    # systems) and its name is hidden and does not end in .prom, so node_exporter's
    # textfile collector, which reads *.prom, never reads it half-written.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp makes the file 0600; node_exporter and CI uploaders run as
            # other users, and nothing written here is secret.
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
