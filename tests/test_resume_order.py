"""A rerun compares request hashes on its check pass: the ledger is opened before the
check, and still nothing is written or sent before every refusal. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.check import check_job
from dispatcher.cli import main
from dispatcher.ledger import LedgerStore
from dispatcher.sent import Comparison, FleetChanges, find_changes
from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_fleet
from tests.pg import open_target

DEVICES = [imei(i) for i in range(40)]

JOB = """\
version: 1
name: order
fleets:
  - name: all
    csv: fleet.csv
  - name: inline
    devices:
      - {imei: "INLINE_A", server_ip: 10.1.1.1}
      - {imei: "INLINE_B", server_ip: 10.1.1.2}
window:
  expired_time: +48h
commands:
  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5750, val: "{server_ip}"}]}
  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}
rate:
  per_second: 1000
  concurrency: 4
""".replace("INLINE_A", imei(900)).replace("INLINE_B", imei(901))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def _fleet(directory: Path, imeis: list[str], ips: dict[str, str] | None = None) -> None:
    ips = ips or {}
    write_fleet(
        directory / "fleet.csv", imeis, {"server_ip": [ips.get(i, "10.0.0.1") for i in imeis]}
    )


def _job(directory: Path) -> Path:
    _fleet(directory, DEVICES)
    job = directory / "job.yaml"
    job.write_text(JOB, encoding="utf-8")
    return job


def run(job: Path, sim: Simulator, ledger: str, *extra: str) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", ledger, *extra])


def _snapshot(ledger: LedgerStore) -> tuple[Any, ...]:
    """Everything a rerun could have written: the run's record and every row."""
    rows = sorted(tuple(dict(r).items()) for r in ledger.items("order"))
    return (ledger.run("order"), rows)


def _summary(changes: FleetChanges) -> tuple[Any, ...]:
    return (
        [(c.work.device.imei, c.sent, c.first_unsent) for c in changes.changed],
        sorted(changes.legacy),
        list(changes.settled),
    )


def _half_sent(tmp_path: Path, sim: Simulator, ledger: str) -> Path:
    """A run that sent 5 devices; then the fleet changes: a sent device and a registered,
    unsent one render other requests, a device is added."""
    job = _job(tmp_path)
    assert run(job, sim, ledger, "--fleet", "all", "--limit", "5") == 0
    assert len(sim.commands) == 10
    _fleet(tmp_path, [*DEVICES, imei(99)], {DEVICES[0]: "10.9.9.9", DEVICES[12]: "10.8.8.8"})
    return job


def test_the_check_pass_finds_what_a_comparison_pass_of_its_own_finds(
    tmp_path: Path, ledger_target: str
) -> None:
    """Changed devices (sent and unsent), settled ones, new and inline ones: the comparison
    riding on the check pass says exactly what the separate pass says."""
    with simulator() as sim:
        job = _half_sent(tmp_path, sim, ledger_target)
    with open_target(ledger_target) as ledger:
        comparison = Comparison(ledger, "order")
        checked = check_job(job, now=datetime.now(UTC), consume=comparison.consume)
        on_check = _summary(comparison.changes)
        alone = _summary(find_changes(ledger, "order", checked.plan))
    assert alone == on_check
    changed, _, settled = on_check
    assert [(DEVICES[0], True, None), (DEVICES[12], False, 0)] == changed
    assert checked.stats.devices == len(settled) == 43
    # the four devices sent and unchanged are settled; the rest (changed, unsent, new) not
    assert 4 == sum(1 for s in settled if s != -1)


def test_a_rerun_with_bad_input_writes_nothing_and_sends_nothing(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed fleet file that also holds a bad row: the input error (FILE:LINE, exit 2)
    wins; the ledger opened for the comparison is left as it was."""
    with simulator() as sim:
        job = _half_sent(tmp_path, sim, ledger_target)
        path = tmp_path / "fleet.csv"
        path.write_text(path.read_text() + "12345,10.0.0.1\n", encoding="utf-8")
        with open_target(ledger_target) as ledger:
            before = _snapshot(ledger)
        capsys.readouterr()
        assert run(job, sim, ledger_target) == 2
        err = capsys.readouterr().err
        assert 'fleet.csv:43: imei "12345": must be 15 digits' in err
        assert "renders other requests" not in err  # refusals come after the check
        assert "Traceback" not in err
        assert len(sim.commands) == 10
        with open_target(ledger_target) as ledger:
            assert before == _snapshot(ledger)


def test_a_changed_fleet_is_refused_naming_file_and_devices_then_accepted(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with simulator() as sim:
        job = _half_sent(tmp_path, sim, ledger_target)
        with open_target(ledger_target) as ledger:
            before = _snapshot(ledger)
        capsys.readouterr()
        assert run(job, sim, ledger_target) == 2
        err = capsys.readouterr().err
        assert f"fleet.csv:2: device {DEVICES[0]}: renders other requests" in err
        assert f"fleet.csv:14: device {DEVICES[12]}: renders other requests" in err
        assert len(sim.commands) == 10
        with open_target(ledger_target) as ledger:
            assert before == _snapshot(ledger)
        assert run(job, sim, ledger_target, "--accept-changed-fleet") == 0
        writes = [c.imei for c in sim.commands if c.op == "write"]
        assert len(writes) == len(set(writes)) == 43  # every device once
        count = len(sim.commands)
        assert run(job, sim, ledger_target) == 0
        assert len(sim.commands) == count


def test_a_rerun_of_a_run_another_process_owns_is_refused(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rerun owns its run before its check pass: another owner means exit 2, nothing
    sent, the ledger as it was."""
    with simulator() as sim:
        job = _half_sent(tmp_path, sim, ledger_target)
        with open_target(ledger_target) as held:
            held.lock("order")
            before = _snapshot(held)
            capsys.readouterr()
            assert run(job, sim, ledger_target, "--accept-changed-fleet") == 2
            assert "in use by pid" in capsys.readouterr().err
            assert len(sim.commands) == 10
            assert before == _snapshot(held)
