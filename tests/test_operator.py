"""How the tool looks to an operator: a live display on a terminal, JSON lines elsewhere."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatcher.cli import build_parser
from tests.helpers import API_KEY, imei, simulator, write_job

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; its exit code and screen text."""
    main, child = pty.openpty()
    proc = subprocess.Popen(args, stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(main)
    code = proc.wait(10)
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_terminal_shows_progress_and_the_summary(tmp_path: Path) -> None:
    """Under a pseudo-terminal: the live progress line (done/total, rate, ETA), then the summary tables."""
    job = write_job(tmp_path, 60, rate=40, concurrency=4)
    env = {**os.environ, "ONENET_API_KEY": API_KEY, "COLUMNS": "160", "TERM": "xterm-256color"}
    with simulator() as sim:
        code, screen = _run_in_pty(
            [
                sys.executable,
                "-m",
                "dispatcher",
                "run",
                str(job),
                "--base-url",
                sim.base_url,
                "--ledger",
                str(tmp_path / "l.sqlite"),
            ],
            env,
        )
    assert 0 == code, screen[-2000:]
    assert re.search(r"\d+/120 ok \d+ failed 0 in doubt 0 \d+/s of 40/s ETA", screen), screen[
        -2000:
    ]
    assert "120/120" in screen
    assert "rows per status" in screen and "per fleet" in screen and "slowest answers" in screen
    assert "onenet-dispatch export" in screen


def test_without_a_terminal_logs_are_json_lines_with_the_run_id(tmp_path: Path) -> None:
    """Piped stderr: every log line is a JSON object naming the run; progress events come every interval."""
    job = write_job(tmp_path, 60, rate=60, concurrency=4)
    with simulator() as sim:
        proc = subprocess.run(
            [sys.executable, "-m", "dispatcher", "run", str(job), "--base-url", sim.base_url,
             "--ledger", str(tmp_path / "l.sqlite"), "--run-id", "zone-a-2026-11-22", "--progress-interval", "0.5"],
            env={**os.environ, "ONENET_API_KEY": API_KEY},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert {"zone-a-2026-11-22"} == {e.get("run_id") for e in events}
    names = [e["event"] for e in events]
    assert "run_started" == names[0] and "run_ended" == names[-1]
    assert names.count("progress") >= 1
    # never a line per device; progress lines come per interval, as many as the run takes
    # (more on a busy machine), so they are not counted here
    assert len([name for name in names if name != "progress"]) < 30
    progress = [e for e in events if e["event"] == "progress"]
    # one basis per name: run_* counts rows of the whole run, invocation_* this invocation
    for e in progress:
        assert e["run_total"] == 120
        assert e["run_done"] >= e["run_ok"] + e["run_failed"]
        assert e["invocation_sent"] >= e["run_ok"]  # a new run: all its rows are this invocation's
        assert not {"done", "ok", "failed", "total"} & set(e)


@pytest.mark.parametrize(
    "command",
    ["validate", "run", "export", "report", "status", "resume", "reconcile", "schema", "simulate"],
)
def test_every_command_help_has_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--help` of every command shows an example."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "example" in capsys.readouterr().out


def test_run_writes_the_pipeline_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--summary-json, --junit, --metrics-file and the GitHub step summary, each read back by a parser."""
    import xml.etree.ElementTree as ET

    from prometheus_client.parser import text_string_to_metric_families

    from dispatcher.cli import main

    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    job = write_job(tmp_path, 6)
    out = tmp_path / "out"
    out.mkdir()
    with simulator(fail_imeis={imei(3)}) as sim:
        code = main(
            ["run", str(job), "--base-url", sim.base_url, "--ledger", str(tmp_path / "l.sqlite"),
             "--summary-json", str(out / "summary.json"), "--junit", str(out / "junit.xml"),
             "--metrics-file", str(out / "metrics.prom")]
        )  # fmt: skip
    assert 1 == code
    summary = json.loads((out / "summary.json").read_text())
    assert (10, 1, 1) == (
        summary["counts"]["ok"],
        summary["counts"]["failed"],
        summary["counts"]["skipped"],
    )
    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert 2 == len(cases)
    failures = [c for c in cases if c.find("failure") is not None]
    assert failures and imei(3) in (failures[0].find("failure").text or "")  # type: ignore[union-attr]
    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families((out / "metrics.prom").read_text())
        for s in family.samples
    }
    assert 10 == samples[("onenet_dispatch_rows", "ok")]
    assert step_summary.read_text().startswith("## Rollout report")


def test_an_output_folder_that_does_not_exist_is_refused_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in --junit's folder: exit 2 at once, nothing sent."""
    from dispatcher.cli import main

    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 2)
    with simulator() as sim:
        code = main(
            [
                "run",
                str(job),
                "--base-url",
                sim.base_url,
                "--junit",
                str(tmp_path / "nope" / "j.xml"),
            ]
        )
        assert 0 == len(sim.requests)
    assert 2 == code
