"""Small CLI promises: the path a dry run prints, the run `track` picks by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispatcher.cli import main
from tests.helpers import API_KEY, imei, simulator, write_job

EXECUTE = "  - execute: {obj_id: 3303, obj_inst_id: 0, res_id: 5605, args: reset}\n"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def test_dry_run_prints_the_execute_path_for_executes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An execute goes to /nbiot/execute/offline; the dry run says so, as `run` would send it."""
    job = write_job(tmp_path, 2, commands=EXECUTE)
    capsys.readouterr()
    assert 0 == main(["run", str(job), "--base-url", "http://127.0.0.1:9", "--dry-run"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["op"] for r in records] == ["execute", "execute"]
    assert all(
        r["url"].startswith("http://127.0.0.1:9/nbiot/execute/offline?imei=") for r in records
    )
    with simulator() as sim:  # and that is where the run sends it
        assert 0 == main(
            ["run", str(job), "--base-url", sim.base_url, "--ledger", str(tmp_path / "l.sqlite")]
        )
        assert {"/nbiot/execute/offline"} == {r.path for r in sim.requests}


def test_track_takes_the_only_run_of_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like `report`: without --run-id, `track` asks about the ledger's one run; with two it asks which."""
    job = write_job(tmp_path, 2)
    ledger = tmp_path / "l.sqlite"
    with simulator() as sim:
        run = ["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)]
        assert 0 == main(run)
        capsys.readouterr()
        assert main(["track", str(ledger), "--base-url", sim.base_url]) in (0, 1)
        assert "run test-job: 1 pass(es), 4 commands asked about" in capsys.readouterr().out
        assert 0 == main([*run, "--run-id", "second"])
        capsys.readouterr()
        assert 2 == main(["track", str(ledger), "--base-url", sim.base_url])
        err = capsys.readouterr().err
        assert "holds 2 runs (test-job, second): name one with --run-id" in err
        assert imei(0) not in err
