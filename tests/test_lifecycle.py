"""After the run: execute commands, delivery tracking and cancel, end to end over loopback HTTP."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import main
from tests.helpers import API_KEY, imei, simulator, write_job

# The simulator's clock runs an hour per second and devices wake every simulated 10 minutes:
# a device receives its commands within a fraction of a real second.
FAST = {"delivery": True, "clock_speed": 3600.0, "wake_interval": 600.0}
EXECUTE = '  - execute: {obj_id: 3, obj_inst_id: 0, res_id: 4, args: "reboot={server_ip}"}\n'


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def export(ledger: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert 0 == main(["export", str(ledger)])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_track_watch_follows_every_command_to_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run, then track --watch: every command ends success as the simulator says, reads with their result."""
    job = write_job(tmp_path, 8)
    ledger = tmp_path / "l.sqlite"
    with simulator(**FAST) as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        args = ["track", str(ledger), "--run-id", "test-job", "--base-url", sim.base_url]
        assert 0 == main([*args, "--watch", "--interval", "1s"])
        truth = {c.uuid: c.send_status for c in sim.commands}
    rows = export(ledger, capsys)
    assert 16 == len(rows)
    assert {5} == set(truth.values())
    assert {"success"} == {r["send_status"] for r in rows}
    assert all(r["cmd_result"] is not None for r in rows if r["op"] == "read")
    assert all(r["cmd_result"] is None for r in rows if r["op"] == "write")
    assert all(r["confirm_time"] for r in rows)


def test_failed_on_the_device_makes_watch_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Devices that answer with a failure: track --watch ends when all are final, exit 1, rows failed."""
    job = write_job(
        tmp_path,
        4,
        commands="  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n",
    )
    ledger = tmp_path / "l.sqlite"
    with simulator(**FAST, confirm_fail_rate=1.0) as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        code = main(
            [
                "track",
                str(ledger),
                "--run-id",
                "test-job",
                "--base-url",
                sim.base_url,
                "--watch",
                "--interval",
                "1s",
            ]
        )
    assert 1 == code
    rows = export(ledger, capsys)
    assert {"failed"} == {r["send_status"] for r in rows}
    assert all(r["confirm_status"] for r in rows)


def test_cancel_before_delivery_leaves_nothing_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Devices asleep: cancel takes every command back; none is ever delivered; the run is never resumed."""
    job = write_job(tmp_path, 6)
    ledger = tmp_path / "l.sqlite"
    with simulator(delivery=True, wake_interval=10**6) as sim:
        assert 0 == main(  # a partial run whose subset all went ok
            ["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger), "--limit", "3"]
        )
        capsys.readouterr()
        assert 0 == main(["cancel", str(ledger), "--run-id", "test-job", "--dry-run"])
        assert "6 commands would be cancelled" in capsys.readouterr().out
        assert 0 == main(
            ["cancel", str(ledger), "--run-id", "test-job", "--base-url", sim.base_url]
        )
        assert {2} == {c.send_status for c in sim.commands}
        before = len(sim.commands)
        capsys.readouterr()
        assert 2 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        assert "cancelled" in capsys.readouterr().err
        assert before == len(sim.commands)
        assert 0 == main(
            [
                "run",
                str(job),
                "--base-url",
                sim.base_url,
                "--ledger",
                str(ledger),
                "--run-id",
                "again",
            ]
        )
    rows = [r for r in export(ledger, capsys) if r["run_id"] == "test-job" and r["status"] == "ok"]
    assert {"cancelled"} == {r["send_status"] for r in rows}


def test_cancel_after_delivery_is_refused_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands already delivered cannot be cancelled: counted, exit 1, their state kept."""
    job = write_job(tmp_path, 3)
    ledger = tmp_path / "l.sqlite"
    with simulator(**FAST) as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        assert 0 == main(
            [
                "track",
                str(ledger),
                "--run-id",
                "test-job",
                "--base-url",
                sim.base_url,
                "--watch",
                "--interval",
                "1s",
            ]
        )
        capsys.readouterr()
        assert 1 == main(
            ["cancel", str(ledger), "--run-id", "test-job", "--base-url", sim.base_url]
        )
        out = capsys.readouterr().out
        assert {5} == {c.send_status for c in sim.commands}
    # known delivered from the last track: nothing asked, nothing cancelled, all counted
    assert "0 cancelled, 6 already sent" in out
    assert {"success"} == {r["send_status"] for r in export(ledger, capsys)}


def test_cancel_of_a_sent_command_is_counted_not_cancelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command delivered since the last track: the platform refuses the cancel; the tool looks and counts it."""
    job = write_job(tmp_path, 3)
    ledger = tmp_path / "l.sqlite"
    with simulator(**FAST) as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        capsys.readouterr()
        # no track: the ledger does not know they were delivered meanwhile
        import time

        time.sleep(1.0)
        assert 1 == main(
            ["cancel", str(ledger), "--run-id", "test-job", "--base-url", sim.base_url]
        )
        out = capsys.readouterr().out
        assert {5} == {c.send_status for c in sim.commands}
    assert "0 cancelled, 6 already sent" in out
    assert {"success"} == {r["send_status"] for r in export(ledger, capsys)}


def test_execute_commands_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An execute command goes to /nbiot/execute/offline with its per-device args, once per device."""
    job = write_job(tmp_path, 5, commands=EXECUTE)
    ledger = tmp_path / "l.sqlite"
    with simulator() as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        commands = list(sim.commands)
    assert Counter(c.op for c in commands) == {"execute": 5}
    first = next(c for c in commands if c.imei == imei(2))
    assert {"args": "reboot=10.0.0.2"} == first.body
    assert first.raw_query.startswith(
        f"imei={imei(2)}&obj_id=3&obj_inst_id=0&res_id=4&expired_time="
    )
    rows = export(ledger, capsys)
    assert {("execute", "ok")} == {(r["op"], r["status"]) for r in rows}
