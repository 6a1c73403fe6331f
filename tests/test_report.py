"""Reports of a run: counts from the ledger, and the text, markdown, JSON, JUnit and metrics made of them."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from dispatcher.errors import InputError
from dispatcher.ledger import Answer, Ledger, LedgerStore, RunRecord, Status
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register, SkipRest
from dispatcher.outputs import (
    append_github_step_summary,
    write_junit,
    write_metrics,
    write_summary_json,
)
from dispatcher.report import (
    Counts,
    Report,
    build_report,
    render_json,
    render_markdown,
    render_text,
)
from tests.helpers import imei
from tests.pg import open_target

RUN = "zone-2026-11-22"
STARTED, ENDED = 1_795_312_800.0, 1_795_313_100.0  # a five-minute invocation
OPS = ["write", "read"]
NOT_FOUND = "device not exist"  # errno 10's text, as the platform sends it
TIMEOUT = "no answer within the read timeout"

A1, A2, A3, A4 = (imei(n) for n in range(1, 5))
B1, B2, B3 = (imei(n) for n in range(11, 14))
C1, C2 = (imei(n) for n in range(21, 23))


def run_record(run_id: str = RUN, *, job: str = "meter-interval") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        job_name=job,
        job_path="/jobs/meter.yaml",
        job_hash="hash",
        target="https://iot-api.heclouds.com",
        valid_time=None,
        expired_time="2026-11-24T10:00:00+08:00",
        first_started_at=STARTED,
        started_at=STARTED,
        ended_at=None,
        state="running",
        reason=None,
        devices=9,
        waves=2,
        wave=1,
    )


def answer(
    ledger: LedgerStore,
    run_id: str,
    device: str,
    command: int,
    status: Status,
    *,
    sent: float,
    took: float,
    errno: int | None = None,
    error: str | None = None,
    http_status: int | None = 200,
    attempts: int = 1,
) -> None:
    """A request sent and answered, through the same ledger operations a run uses."""
    uuid = f"uuid-{device}-{command}" if status is Status.OK else None
    ledger.apply(
        [
            MarkSending(run_id, device, command, sent),
            RecordAnswer(
                run_id,
                Answer(
                    device,
                    command,
                    status,
                    uuid,
                    0 if status is Status.OK else errno,
                    error,
                    http_status,
                    attempts,
                    sent + took,
                ),
            ),
        ]
    )


def fail_first(ledger: LedgerStore, device: str, errno: int | None, error: str, http: int) -> None:
    """Command 0 failed, so the run skipped the device's command 1."""
    answer(
        ledger,
        RUN,
        device,
        0,
        Status.FAILED,
        sent=100,
        took=0.2,
        errno=errno,
        error=error,
        http_status=http,
    )
    ledger.apply([SkipRest(RUN, device, 0, "command 0 failed; not sent")])


@pytest.fixture
def ledger(ledger_target: str) -> Iterator[LedgerStore]:
    """Three fleets, two commands each (write, then read), every outcome a run can record.

    zone-a: A1 ok/ok; A2 errno 10 then skipped; A3 ok (3 s) then in doubt (30 s);
            A4 HTTP 404 then skipped.
    zone-b: B1 ok then errno 10; B2 ok then pending; B3 errno 2001 then skipped.
    zone-c: C1 ok/ok; C2 ok then pending.
    """
    with open_target(ledger_target) as ledger:  # on both backends (tests/pg.py)
        ledger.start_run(run_record())
        devices = [(d, "zone-a", OPS) for d in (A1, A2, A3, A4)]
        devices += [(d, "zone-b", OPS) for d in (B1, B2, B3)]
        devices += [(d, "zone-c", OPS) for d in (C1, C2)]
        ledger.apply([Register(RUN, devices)])
        answer(ledger, RUN, A1, 0, Status.OK, sent=100, took=0.5)
        answer(ledger, RUN, A1, 1, Status.OK, sent=101, took=0.2)
        fail_first(ledger, A2, 10, NOT_FOUND, 200)
        answer(ledger, RUN, A3, 0, Status.OK, sent=100, took=3.0, attempts=2)
        answer(
            ledger,
            RUN,
            A3,
            1,
            Status.IN_DOUBT,
            sent=104,
            took=30.0,
            error=TIMEOUT,
            http_status=None,
        )
        fail_first(ledger, A4, None, "HTTP 404", 404)
        answer(ledger, RUN, B1, 0, Status.OK, sent=100, took=0.4)
        answer(ledger, RUN, B1, 1, Status.FAILED, sent=101, took=0.6, errno=10, error=NOT_FOUND)
        answer(ledger, RUN, B2, 0, Status.OK, sent=100, took=1.5)
        fail_first(ledger, B3, 2001, "not supported", 200)
        answer(ledger, RUN, C1, 0, Status.OK, sent=100, took=0.1)
        answer(ledger, RUN, C1, 1, Status.OK, sent=101, took=0.1)
        answer(ledger, RUN, C2, 0, Status.OK, sent=100, took=0.3)
        ledger.end_run(RUN, ENDED, "finished", None)
        yield ledger


@pytest.fixture
def report(ledger: LedgerStore) -> Report:
    return build_report(ledger, RUN)


def test_counts_per_status(report: Report) -> None:
    """Every row of the run is counted once, under its status."""
    assert Counts(ok=8, failed=4, in_doubt=1, skipped=3, pending=2) == report.counts
    assert 18 == report.counts.total
    assert 1 == report.in_doubt
    assert 4 / 12 == report.failure_rate


def test_run_record(report: Report) -> None:
    """The report carries the run's state, wave (1-based), target and times."""
    run = report.run
    assert ("finished", None, 2, 2) == (run.state, run.reason, run.wave, run.waves)
    assert "https://iot-api.heclouds.com" == run.target
    assert 300.0 == run.duration_seconds


def test_errors_group_by_errno_and_text(report: Report) -> None:
    """Failed and in-doubt rows group by (errno, error); HTTP failures without errno by text."""
    groups = {(g.errno, g.error): (g.failed, g.in_doubt) for g in report.errors}
    assert {
        (10, NOT_FOUND): (2, 0),
        (None, "HTTP 404"): (1, 0),
        (2001, "not supported"): (1, 0),
        (None, TIMEOUT): (0, 1),
    } == groups
    assert (10, NOT_FOUND) == (report.errors[0].errno, report.errors[0].error)  # largest first
    assert 0 == report.errors_not_listed


def test_counts_per_fleet_and_command(report: Report) -> None:
    """Per fleet and per command (index and op), each status's rows."""
    assert {
        "zone-a": Counts(ok=3, failed=2, in_doubt=1, skipped=2),
        "zone-b": Counts(ok=2, failed=2, skipped=1, pending=1),
        "zone-c": Counts(ok=3, pending=1),
    } == {f.fleet: f.counts for f in report.fleets}
    assert {
        (0, "write"): Counts(ok=6, failed=3),
        (1, "read"): Counts(ok=2, failed=1, in_doubt=1, skipped=3, pending=2),
    } == {(c.command, c.op): c.counts for c in report.commands}
    assert 6 == len(report.cells)
    assert report.counts.total == sum(c.counts.total for c in report.cells)


def test_slowest_answers(report: Report) -> None:
    """Slowest first, from first send to answer, with the device and command."""
    top = report.slowest[0]
    assert (A3, "zone-a", 1, "read", "in_doubt", 30.0) == (
        top.imei,
        top.fleet,
        top.command,
        top.op,
        top.status,
        top.seconds,
    )
    assert (A3, 0, 2) == (
        report.slowest[1].imei,
        report.slowest[1].command,
        report.slowest[1].attempts,
    )
    assert 10 == len(report.slowest)  # 11 rows were answered; the ten slowest are kept
    seconds = [s.seconds for s in report.slowest]
    assert sorted(seconds, reverse=True) == seconds


def test_unknown_run_is_an_input_error(ledger: LedgerStore) -> None:
    """A run id not in the ledger is refused with the ids that are."""
    with pytest.raises(InputError, match=f"runs: {RUN}"):
        build_report(ledger, "nope")


def test_json_round_trips(report: Report, tmp_path: Path) -> None:
    """The JSON is to_dict() exactly, and the summary file holds the same text."""
    data = json.loads(render_json(report))
    assert report.to_dict() == data
    assert {
        "ok": 8,
        "failed": 4,
        "in_doubt": 1,
        "skipped": 3,
        "pending": 2,
        "sending": 0,
        "total": 18,
    } == data["counts"]
    assert 0.3333 == data["failure_rate"]
    assert "2026-11-22T02:05:00Z" == data["run"]["ended_at"]
    path = tmp_path / "summary.json"
    write_summary_json(report, path)
    assert render_json(report) == path.read_text(encoding="utf-8")


def test_markdown_has_a_table_per_section(report: Report) -> None:
    """Each section is a heading followed by a GitHub table; the text ends with the commands."""
    markdown = render_markdown(report)
    sections = re.split(r"^#{2,3} ", markdown, flags=re.MULTILINE)[1:]
    titles = [s.splitlines()[0] for s in sections]
    assert [
        f"Rollout report: {RUN}",
        "Rows per status",
        "Failed and in-doubt rows per errno",
        "Per fleet",
        "Per command",
        "Slowest answers",
    ] == titles
    separator = re.compile(r"^\|(?:-{3}|-{3}:)(?:\|(?:-{3}|-{3}:))*\|$", re.MULTILINE)
    for section in sections:
        assert separator.search(section), section
    assert "| zone-a | 3 | 2 | 1 | 2 | 0 | 8 |" in markdown
    assert "| 10 | device not exist | 2 | 0 |" in markdown
    ledger = report.ledger
    assert markdown.endswith(
        f"```sh\nonenet-dispatch report {ledger} --run-id {RUN}\n"
        f"onenet-dispatch export {ledger} --run-id {RUN}\n```\n"
    )


def test_markdown_escapes_cells(tmp_path: Path) -> None:
    """A pipe or a newline in a platform's error text cannot break the table."""
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.start_run(run_record("r"))
        ledger.apply([Register("r", [(A1, "f", ["write"])])])
        answer(
            ledger, "r", A1, 0, Status.FAILED, sent=1, took=1, errno=5, error="bad | <b>x</b>\nnext"
        )
        markdown = render_markdown(build_report(ledger, "r"))
    assert "| 5 | bad \\| \\<b\\>x\\</b\\> next | 1 | 0 |" in markdown


def test_text_rendering_contains_the_numbers(report: Report) -> None:
    """The terminal summary shows the counts, errors, fleets, rate and where to look next."""
    console = Console(record=True, width=120, markup=False, highlight=False, file=io.StringIO())
    render_text(report, console)
    text = console.export_text()
    lines = text.splitlines()
    assert re.search(r"^\s*ok\s+8\s+44\.4%\s*$", text, re.MULTILINE), text
    assert re.search(r"^\s*total\s+18\s*$", text, re.MULTILINE)
    assert re.search(r"^\s*10\s+device not exist\s+2\s+0\s*$", text, re.MULTILINE)
    assert re.search(r"^\s*zone-a\s+3\s+2\s+1\s+2\s+0\s+8\s*$", text, re.MULTILINE)
    assert "failure rate: 33.3% (4 failed of 12 answered)   in doubt: 1" in text
    assert re.search(
        rf"^\s*{A3}\s+zone-a\s+1 \(read\)\s+in_doubt\s+30\.000\s+1\s*$", text, re.MULTILINE
    )
    assert f"ledger: {report.ledger}" == lines[-3]
    assert f"see:    onenet-dispatch report {report.ledger} --run-id {RUN}" == lines[-2]
    assert f"        onenet-dispatch export {report.ledger} --run-id {RUN}" == lines[-1]


def junit_cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    return {(c.attrib["classname"], c.attrib["name"]): c for c in root.iter("testcase")}


def test_junit_case_per_fleet_and_command(
    report: Report, ledger: LedgerStore, tmp_path: Path
) -> None:
    """One case per fleet and command; failed devices listed in the failure, failed first."""
    path = tmp_path / "junit.xml"
    write_junit(report, ledger, RUN, path)
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert {"tests": "6", "failures": "4", "errors": "0", "skipped": "1"} == {
        k: suite.attrib[k] for k in ("tests", "failures", "errors", "skipped")
    }
    cases = junit_cases(path)
    assert {
        ("zone-a", "command 0 (write)"),
        ("zone-a", "command 1 (read)"),
        ("zone-b", "command 0 (write)"),
        ("zone-b", "command 1 (read)"),
        ("zone-c", "command 0 (write)"),
        ("zone-c", "command 1 (read)"),
    } == set(cases)
    failure = cases["zone-a", "command 1 (read)"].find("failure")
    assert failure is not None
    assert "3 of 4 devices not ok: 1 in_doubt, 2 skipped" == failure.attrib["message"]
    assert "in_doubt" == failure.attrib["type"]
    assert [
        f"{A3} in_doubt errno=- {TIMEOUT}",
        f"{A2} skipped errno=- command 0 failed; not sent",
        f"{A4} skipped errno=- command 0 failed; not sent",
        f"every row: onenet-dispatch export {report.ledger} --run-id {RUN}",
    ] == (failure.text or "").splitlines()
    failure = cases["zone-a", "command 0 (write)"].find("failure")
    assert failure is not None
    assert [f"{A2} failed errno=10 {NOT_FOUND}", f"{A4} failed errno=- HTTP 404"] == (
        failure.text or ""
    ).splitlines()[:2]
    assert [] == list(cases["zone-c", "command 0 (write)"])  # passed
    skipped = cases["zone-c", "command 1 (read)"].find("skipped")
    assert skipped is not None
    assert "1 of 2 rows not sent yet" == skipped.attrib["message"]
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert ("finished", "2 of 2") == (properties["state"], properties["wave"])


def test_junit_is_bounded_for_ten_thousand_failures(tmp_path: Path) -> None:
    """10,000 failed rows: 50 listed, then how many more, in a file of a few KiB."""
    devices = [imei(n) for n in range(10_000)]
    long_error = "device not exist " * 40  # longer than a listed line may be
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.start_run(run_record("big"))
        ledger.apply([Register("big", [(d, "all", ["write"]) for d in devices])])
        ledger.apply(
            [
                RecordAnswer("big", Answer(d, 0, Status.FAILED, None, 10, long_error, 200, 1, 5.0))
                for d in devices
            ]
        )
        ledger.end_run("big", ENDED, "finished", None)
        path = tmp_path / "junit.xml"
        write_junit(build_report(ledger, "big"), ledger, "big", path)
    [case] = junit_cases(path).values()
    failure = case.find("failure")
    assert failure is not None
    lines = (failure.text or "").splitlines()
    assert [f"{d} failed errno=10" for d in devices[:50]] == [
        " ".join(line.split()[:3]) for line in lines[:50]
    ]
    assert "... and 9950 more" == lines[50]
    assert 52 == len(lines)
    assert path.stat().st_size < 16 * 1024


def test_junit_total_listing_is_bounded(
    report: Report, ledger: LedgerStore, tmp_path: Path
) -> None:
    """Over all cases, no more devices are listed than the total budget allows."""
    path = tmp_path / "junit.xml"
    write_junit(report, ledger, RUN, path, max_failures_listed=2, max_failures_total=3)
    texts = [(f.text or "") for f in ET.parse(path).getroot().iter("failure")]
    listed = [line for t in texts for line in t.splitlines() if re.match(r"\d{15} ", line)]
    assert 3 == len(listed)


def test_junit_survives_control_characters(tmp_path: Path) -> None:
    """A control character in an error text is replaced, so the XML still parses."""
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.start_run(run_record("r"))
        ledger.apply([Register("r", [(A1, "f", ["write"])])])
        answer(ledger, "r", A1, 0, Status.FAILED, sent=1, took=1, errno=5, error="bad\x00\x1bbyte")
        path = tmp_path / "junit.xml"
        write_junit(build_report(ledger, "r"), ledger, "r", path)
    failure = next(ET.parse(path).getroot().iter("failure"))
    assert (failure.text or "").startswith(f"{A1} failed errno=5 bad\ufffd\ufffdbyte")


def samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a metrics file, parsed by Prometheus' own parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for s in family.samples
    }


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def test_metrics_file(report: Report, tmp_path: Path) -> None:
    """Rows per status, duration, state and failure ratio; no success time for a failed run."""
    (tmp_path / "textfile").mkdir()
    path = tmp_path / "textfile" / "onenet.prom"
    write_metrics(report, path, now=ENDED + 60)
    got = samples(path)
    ids = {"run_id": RUN, "job": "meter-interval"}
    for status, n in [
        ("ok", 8),
        ("failed", 4),
        ("in_doubt", 1),
        ("skipped", 3),
        ("pending", 2),
        ("sending", 0),
    ]:
        assert n == got["onenet_dispatch_rows", labels(**ids, status=status)]
    assert 300.0 == got["onenet_dispatch_run_duration_seconds", labels(**ids)]
    assert 1 == got["onenet_dispatch_run_state", labels(**ids, state="finished")]
    assert 0 == got["onenet_dispatch_run_state", labels(**ids, state="aborted")]
    assert 4 / 12 == pytest.approx(got["onenet_dispatch_failure_ratio", labels(**ids)])
    assert not [k for k in got if k[0] == "onenet_dispatch_last_success_timestamp_seconds"]
    families = {f.name: f.type for f in text_string_to_metric_families(path.read_text())}
    assert "gauge" == families["onenet_dispatch_rows"]
    assert ["onenet.prom"] == [p.name for p in path.parent.iterdir()]  # no temporary file left


def all_ok_run(ledger: LedgerStore, run_id: str, ended: float) -> Report:
    ledger.start_run(run_record(run_id))
    ledger.apply([Register(run_id, [(A1, "f", ["write"])])])
    answer(ledger, run_id, A1, 0, Status.OK, sent=1, took=1)
    ledger.end_run(run_id, ended, "finished", None)
    return build_report(ledger, run_id)


def test_last_success_is_kept_across_failed_runs(tmp_path: Path) -> None:
    """A run with every row ok sets the success time; a later failed run keeps it."""
    path = tmp_path / "onenet.prom"
    key = ("onenet_dispatch_last_success_timestamp_seconds", labels(job="meter-interval"))
    with Ledger(tmp_path / "l.sqlite") as ledger:
        write_metrics(all_ok_run(ledger, "day-1", ENDED), path, now=ENDED + 5)
        assert ENDED == samples(path)[key]
        ledger.start_run(run_record("day-2"))
        ledger.apply([Register("day-2", [(A1, "f", ["write"])])])
        answer(ledger, "day-2", A1, 0, Status.FAILED, sent=1, took=1, errno=10, error=NOT_FOUND)
        ledger.end_run("day-2", ENDED + 86_400, "finished", None)
        write_metrics(build_report(ledger, "day-2"), path, now=ENDED + 86_405)
        got = samples(path)
        assert ENDED == got[key]
        assert (
            1
            == got[
                "onenet_dispatch_rows",
                labels(run_id="day-2", job="meter-interval", status="failed"),
            ]
        )


def test_metrics_label_values_are_escaped(tmp_path: Path) -> None:
    """A run id with quotes, backslashes and a newline reads back unchanged."""
    run_id = 'zone "a"\\2026\nretry'
    path = tmp_path / "onenet.prom"
    with Ledger(tmp_path / "l.sqlite") as ledger:
        write_metrics(all_ok_run(ledger, run_id, ENDED), path, now=ENDED)
    got = samples(path)
    assert (
        1 == got["onenet_dispatch_rows", labels(run_id=run_id, job="meter-interval", status="ok")]
    )


def test_running_run_duration_runs_to_now(ledger: LedgerStore, tmp_path: Path) -> None:
    """While a run is still going on, its duration is measured to ``now``."""
    ledger.start_run(run_record())  # started again: ended_at cleared, state running
    path = tmp_path / "onenet.prom"
    write_metrics(build_report(ledger, RUN), path, now=STARTED + 42)
    got = samples(path)
    ids = labels(run_id=RUN, job="meter-interval")
    assert 42.0 == got["onenet_dispatch_run_duration_seconds", ids]
    assert (
        1
        == got[
            "onenet_dispatch_run_state", labels(run_id=RUN, job="meter-interval", state="running")
        ]
    )


def test_github_step_summary_appends(report: Report, tmp_path: Path) -> None:
    """With GITHUB_STEP_SUMMARY set the markdown is appended; without it nothing is written."""
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    markdown = render_markdown(report)
    assert append_github_step_summary(markdown, {"GITHUB_STEP_SUMMARY": str(target)})
    assert "earlier step\n" + markdown == target.read_text(encoding="utf-8")
    assert not append_github_step_summary(markdown, {})


def test_unwritable_output_is_an_input_error(report: Report, tmp_path: Path) -> None:
    """A file that cannot be written is named in an InputError, not a traceback."""
    with pytest.raises(InputError, match="cannot write"):
        write_summary_json(report, tmp_path / "missing-dir" / "summary.json")


def test_run_without_rows_reports_zeros(tmp_path: Path) -> None:
    """A run that registered no device yet renders everywhere, with zero counts."""
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.start_run(run_record("empty"))
        report = build_report(ledger, "empty")
        write_junit(report, ledger, "empty", tmp_path / "junit.xml")
    assert Counts() == report.counts
    assert (0.0, False) == (report.failure_rate, report.all_ok)
    render_text(report, Console(file=io.StringIO(), markup=False, highlight=False))
    assert "### Per fleet" in render_markdown(report)
    assert "0" == ET.parse(tmp_path / "junit.xml").getroot().attrib["tests"]
    write_metrics(report, tmp_path / "onenet.prom", now=STARTED)
    got = samples(tmp_path / "onenet.prom")
    assert (
        0 == got["onenet_dispatch_rows", labels(run_id="empty", job="meter-interval", status="ok")]
    )
