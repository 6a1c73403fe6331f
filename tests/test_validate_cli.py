"""``onenet-dispatch validate`` on the checked-in jobs, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dispatcher.check
from dispatcher.errors import LedgerError
from tests.jobtools import BASE_JOB, validate, write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository root as working directory, as the README's commands run."""
    monkeypatch.chdir(ROOT)
    return ROOT


def test_example_job_validates(at_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The example job and its CSV fleet are valid, and the plan counts every device and request."""
    result = validate(capsys, "jobs/example.yaml")
    assert (0, "") == (result.code, result.err)
    lines = result.out.splitlines()
    assert "Job meter-interval-zone-a (jobs/example.yaml) is valid." == lines[0]
    assert [
        ["fleet", "devices", "duplicates", "dropped"],
        ["pilot", "2", "0"],
        ["lab", "2", "0"],
        ["zone-a", "200", "0"],
    ] == [line.split() for line in lines[1:5]]
    assert [
        "devices:             204 (0 duplicates dropped)",
        "commands per device: 2 (write, read)",
        "requests:            408",
        "valid from:          now (the platform's clock)",
    ] == lines[5:9]
    assert lines[9].startswith("expires:             ")
    assert " UTC+8 (" in lines[9] and lines[9].endswith(" local)")
    assert "rate:                50/s, 16 in flight -> about 8s of sending" == lines[10]


def test_example_csv_rows_match_the_plan() -> None:
    """The example CSV holds exactly the 200 devices the plan counts (header and comment aside)."""
    rows = (ROOT / "jobs/fleets/zone-a.csv").read_text(encoding="utf-8").splitlines()
    devices = [row for row in rows if row and not row.startswith("#")][1:]
    assert 200 == len(devices) == len({row.split(",")[0] for row in devices})


def test_broken_job_reports_every_problem(
    at_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broken job shows sixteen distinct problems in one run, exits 2 and sends nothing."""
    result = validate(capsys, "tests/data/broken.yaml")
    assert (2, "") == (result.code, result.out)
    problems = result.problems
    assert 16 == len(problems) == len(set(problems))
    assert "invalid: 16 problem(s); nothing was sent" == result.summary
    for expected in [
        'tests/data/broken.yaml:2: name: must use only a-z, 0-9, ".", "_" and "-", got "Broken Job"',
        'tests/data/broken.yaml:10: fleets[2].imei_colum: unknown key "imei_colum" (did you mean "imei_column"?)',
        "tests/data/broken.yaml:18: platform.retry: must be 0..10, got 11",
        "tests/data/broken.yaml:21: commands[0].write.mode: must be 1 or 2, got 3",
        'tests/data/broken.yaml:22: commands[0].write.data[1].val: type 1 (Opaque) needs an even-length hex string, got "ABC"',
        "tests/data/broken.yaml:24: commands[1].write.data[0].val: type 2 (Time) needs a number (Unix seconds), got '1700000000'",
        "tests/data/broken.yaml:28: rate.per_second: must be more than 0 and at most 1000, got 0",
        'tests/data/broken.yaml:5: fleets[0].imeis[0]: imei "86582003123": must be 15 digits',
        'tests/data/fleets/broken.csv:4: imei "86582004123456": must be 15 digits',
        'tests/data/broken.yaml:12: fleets[3].csv: fleet file "fleets/does-not-exist.csv" not found'
        f" (looked for {at_root.resolve() / 'tests/data/fleets/does-not-exist.csv'};"
        " relative to the job file)",
    ]:
        assert expected in problems
    [window] = [p for p in problems if "window" in p]
    assert window.startswith("tests/data/broken.yaml:15: window.expired_time: expired_time ")
    assert window.endswith("(UTC+8)")


def test_internal_errors_are_not_tracebacks(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug of ours exits 70 with one line asking for a report, never a traceback."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.delenv("ONENET_DISPATCH_DEBUG", raising=False)
    monkeypatch.setattr(dispatcher.check, "check_job", broken)
    write(workdir, "job.yaml", BASE_JOB)
    result = validate(capsys, "job.yaml")
    assert 70 == result.code
    assert "Traceback" not in result.err
    assert result.err.startswith("internal error: RuntimeError; this is a bug of onenet-dispatch")


def test_python_m_dispatcher_validates_the_example(at_root: Path) -> None:
    """``python -m dispatcher validate`` works in a fresh process, as the README runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "validate", "jobs/example.yaml"],
        cwd=at_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr)
    assert "requests:            408" in done.stdout


def test_a_task_groups_group_of_our_errors_maps_to_their_exit_code(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LedgerError a task group wrapped is an error of the ledger (exit 2), not a bug."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("tasks", [ExceptionGroup("inner", [LedgerError("disk full")])])

    monkeypatch.delenv("ONENET_DISPATCH_DEBUG", raising=False)
    monkeypatch.setattr(dispatcher.check, "check_job", broken)
    write(workdir, "job.yaml", BASE_JOB)
    result = validate(capsys, "job.yaml")
    assert (2, "error: disk full\n") == (result.code, result.err)


def test_an_internal_errors_group_shows_every_task_in_debug(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group holding a bug: exit 70, its kinds named; with the debug env, every traceback."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ExceptionGroup("tasks", [LedgerError("disk full"), KeyError("imei")])

    monkeypatch.setattr(dispatcher.check, "check_job", broken)
    write(workdir, "job.yaml", BASE_JOB)
    monkeypatch.delenv("ONENET_DISPATCH_DEBUG", raising=False)
    quiet = validate(capsys, "job.yaml")
    assert 70 == quiet.code
    assert "Traceback" not in quiet.err
    assert "internal error: ExceptionGroup (KeyError, LedgerError);" in quiet.err
    monkeypatch.setenv("ONENET_DISPATCH_DEBUG", "1")
    loud = validate(capsys, "job.yaml")
    assert 70 == loud.code
    assert "Traceback" in loud.err
    assert "KeyError: 'imei'" in loud.err
    assert "LedgerError: disk full" in loud.err
