"""A closed stdout (`... | head`) ends the CLI quietly, as a program killed by SIGPIPE would.

Each case runs the real CLI in a subprocess with a real pipe as stdout, reads one line and
closes the pipe. The output is many times a pipe's capacity, so the CLI is certainly still
writing when the reader goes away: the EPIPE is not a matter of timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.cli import EXIT_OK, EXIT_STDOUT_CLOSED, main
from tests.helpers import write_job

ROOT = Path(__file__).resolve().parent.parent


def _read_one_line_then_close(args: list[str], cwd: Path) -> tuple[int, str, bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("ONENET_DISPATCH_DEBUG", None)
    err_path = cwd / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=cwd,
            env=env,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(120)
    return code, err_path.read_text(encoding="utf-8"), first


def _assert_quiet(code: int, stderr: str) -> None:
    assert EXIT_STDOUT_CLOSED == code == 141
    for noise in ("internal error", "Exception ignored", "Traceback", "BrokenPipe"):
        assert noise not in stderr


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`run JOB --dry-run | head`: exit 141, no traceback, no "Exception ignored"."""
    job = write_job(tmp_path, 3000)  # about 2 MB of requests
    code, stderr, first = _read_one_line_then_close(["run", str(job), "--dry-run"], tmp_path)
    assert first.startswith(b'{"wave":1,')
    _assert_quiet(code, stderr)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_into_a_closed_pipe_ends_quietly(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export LEDGER | head`, in both formats: exit 141, no traceback, no "Exception ignored"."""
    job = write_job(tmp_path, 1000)  # 2000 ledger rows, some 400 kB exported
    assert EXIT_OK == main(["run", str(job), "--simulate", "--run-id", "r1"])
    capsys.readouterr()
    ledger = tmp_path / "ledger.simulated.sqlite"
    code, stderr, first = _read_one_line_then_close(
        ["export", str(ledger), "--format", fmt], tmp_path
    )
    assert first
    _assert_quiet(code, stderr)
