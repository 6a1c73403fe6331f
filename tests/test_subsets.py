"""Subsets stay subsets, and a run remembers what it sent: the CLI against the simulator."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli import main
from dispatcher.engine import core as engine
from dispatcher.fleets import Device
from dispatcher.plan import Plan
from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_fleet

NORTH = [imei(i) for i in range(30)]
SOUTH = [imei(i, prefix="86582006") for i in range(20)]

JOB = """\
version: 1
name: subsets
fleets:
  - name: north
    csv: north.csv
  - name: south
    csv: south.csv
window:
  expired_time: +48h
commands:
  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5750, val: "{server_ip}"}]}
  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}
rate:
  per_second: 1000
  concurrency: 4
"""


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def _fleet(path: Path, imeis: list[str], ips: dict[str, str] | None = None) -> None:
    ips = ips or {}
    write_fleet(path, imeis, {"server_ip": [ips.get(i, "10.0.0.1") for i in imeis]})


def _job(directory: Path) -> Path:
    _fleet(directory / "north.csv", NORTH)
    _fleet(directory / "south.csv", SOUTH)
    job = directory / "job.yaml"
    job.write_text(JOB, encoding="utf-8")
    return job


def run(job: Path, sim: Simulator, ledger: Path, *extra: str) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger), *extra])


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(list(args)) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, dict)
    return data


def _state(capsys: pytest.CaptureFixture[str], ledger: Path) -> tuple[str, int]:
    run = _json(capsys, "status", str(ledger), "--format", "json")
    remaining = run["remaining_devices"]
    assert isinstance(remaining, int)
    return str(run["state"]), remaining


def test_the_subset_sequence_sends_each_device_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--limit (on a registration-batch boundary), --fleet, --imei-file, full, full again: once each."""
    # --limit 10 lands exactly on a batch: the devices after it are not even registered.
    monkeypatch.setattr(engine, "REGISTER_BATCH", 10)
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    picked = tmp_path / "picked.txt"
    picked.write_text("# a few of the north fleet\n" + "\n".join(NORTH[20:25]) + "\n")
    with simulator() as sim:
        capsys.readouterr()
        assert run(job, sim, ledger, "--limit", "10") == 0
        out = capsys.readouterr().out
        assert "40 devices of the job are not settled yet" in out
        assert f"onenet-dispatch run {job} --ledger {ledger} --base-url {sim.base_url}" in out
        assert _state(capsys, ledger) == ("partial", 40)
        report = _json(capsys, "report", str(ledger), "--format", "json")
        assert report["run"]["remaining_devices"] == 40  # type: ignore[index]

        assert run(job, sim, ledger, "--fleet", "south") == 0
        assert _state(capsys, ledger) == ("partial", 20)
        assert run(job, sim, ledger, "--imei-file", str(picked)) == 0
        assert _state(capsys, ledger) == ("partial", 15)
        assert run(job, sim, ledger) == 0
        assert _state(capsys, ledger) == ("finished", 0)
        assert run(job, sim, ledger) == 0
        assert _state(capsys, ledger) == ("finished", 0)
        sent = Counter((c.imei, c.op) for c in sim.commands)
    assert {(i, op) for i in NORTH + SOUTH for op in ("write", "read")} == set(sent)
    assert {1} == set(sent.values())


def test_a_subset_that_covers_the_rest_finishes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state comes from the whole job: the last subset to complete it ends the run finished."""
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    with simulator() as sim:
        assert run(job, sim, ledger, "--fleet", "north") == 0
        assert _state(capsys, ledger) == ("partial", 20)
        assert run(job, sim, ledger, "--fleet", "south") == 0
        assert _state(capsys, ledger) == ("finished", 0)
        assert len(sim.commands) == 100


def test_a_resume_over_a_changed_fleet_file_is_refused_then_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed variable of a device already sent or registered: exit 2 naming file and
    devices, nothing sent; --accept-changed-fleet sends new and unsent devices only."""
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    with simulator() as sim:
        assert run(job, sim, ledger, "--fleet", "north", "--limit", "5") == 0
        assert len(sim.commands) == 10
        sent_write = next(c for c in sim.commands if c.imei == NORTH[0] and c.op == "write")
        # NORTH[0] was sent; NORTH[12] is registered but unsent; a new device is added
        new = imei(99)
        _fleet(
            tmp_path / "north.csv",
            [*NORTH, new],
            {NORTH[0]: "10.9.9.9", NORTH[12]: "10.8.8.8"},
        )
        capsys.readouterr()
        assert run(job, sim, ledger) == 2
        err = capsys.readouterr().err
        assert f"north.csv:2: device {NORTH[0]}: renders other requests" in err
        assert f"north.csv:14: device {NORTH[12]}: renders other requests" in err
        assert "--accept-changed-fleet" in err
        assert "Traceback" not in err
        assert len(sim.commands) == 10  # nothing sent

        assert run(job, sim, ledger, "--accept-changed-fleet") == 0
        writes = Counter(c.imei for c in sim.commands if c.op == "write")
        bodies = {c.imei: c.body for c in sim.commands if c.op == "write"}
        # every device once, the one already sent never again (with the value it was sent with)
        assert set(writes) == {*NORTH, *SOUTH, new}
        assert {1} == set(writes.values())
        assert bodies[NORTH[0]] == sent_write.body
        assert bodies[NORTH[0]] == {"data": [{"res_id": 5750, "val": "10.0.0.1"}]}
        assert bodies[NORTH[12]] == {"data": [{"res_id": 5750, "val": "10.8.8.8"}]}
        # accepted once: the next run neither refuses nor sends
        count = len(sim.commands)
        assert run(job, sim, ledger) == 0
        assert len(sim.commands) == count


def test_an_unchanged_fleet_resumes_without_question(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewriting a fleet file with the same values (another order, new devices) is no change."""
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    with simulator() as sim:
        assert run(job, sim, ledger, "--limit", "3") == 0
        _fleet(tmp_path / "north.csv", [imei(98), *reversed(NORTH)])
        assert run(job, sim, ledger) == 0
        assert len(sim.commands) == 2 * 51
        assert len({(c.imei, c.op) for c in sim.commands}) == 2 * 51


def test_reconcile_after_an_accepted_change_compares_with_what_was_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lost answers, then a fleet value changed: the accepted resume finds the commands that
    were queued where what was sent can be compared, keeps the changed device in doubt (the
    ledger holds only a hash of what it was sent: nothing to compare with), and never sends
    the new value a second time."""
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert 1 == run(job, sim, ledger, "--fleet", "south", "--limit", "3")
        assert {"in_doubt": 3} == {
            k: v
            for k, v in _json(capsys, "status", str(ledger), "--format", "json")["counts"].items()  # type: ignore[attr-defined]
            if k != "pending"
        }
        sim.config.drop_after_queue_rate = 0.0
        _fleet(tmp_path / "south.csv", SOUTH, {SOUTH[0]: "10.7.7.7"})
        assert 2 == run(job, sim, ledger, "--fleet", "south")
        assert 1 == run(job, sim, ledger, "--accept-changed-fleet")
        writes = Counter(c.imei for c in sim.commands if c.op == "write")
        body = next(c.body for c in sim.commands if c.imei == SOUTH[0] and c.op == "write")
        assert set(writes) == {*NORTH, *SOUTH} and {1} == set(writes.values())
        capsys.readouterr()
        assert 0 == main(["export", str(ledger)])
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {(SOUTH[0], 0)} == {
            (r["imei"], r["command"]) for r in rows if r["status"] == "in_doubt"
        }
        # the changed device is not settled: a later resume must accept the change again
        _fleet(tmp_path / "south.csv", [*SOUTH, imei(7, "86582007")], {SOUTH[0]: "10.7.7.7"})
        assert 2 == run(job, sim, ledger)
        assert 1 == run(job, sim, ledger, "--accept-changed-fleet")
        # every command once; the changed device's read waits behind its in-doubt write
        assert len(sim.commands) == 2 * 51 - 1
        assert len({(c.imei, c.op) for c in sim.commands}) == 2 * 51 - 1
    assert body == {"data": [{"res_id": 5750, "val": "10.0.0.1"}]}


def test_a_full_path_resume_renders_settled_devices_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check pass also compares request hashes (the ledger is opened before it) and
    learns which devices are settled; the producer streams them unrendered and
    unregistered: a settled device is rendered once (the check), and only the unsettled
    ones a second time (to be sent)."""
    job = _job(tmp_path)
    ledger = tmp_path / "ledger.sqlite"
    rendered: Counter[str] = Counter()
    real = Plan._render

    def counting(self: Plan, device: Device, *args: Any) -> Any:
        rendered[device.imei] += 1
        return real(self, device, *args)

    with simulator() as sim:
        assert run(job, sim, ledger, "--limit", "3") == 0
        done = {c.imei for c in sim.commands}
        assert 3 == len(done)
        # the same values in another order, and a new device: the full path (not the
        # rerun shortcut), the new device and the 47 unsent ones are sent
        new = imei(97)
        _fleet(tmp_path / "north.csv", [new, *reversed(NORTH)])
        monkeypatch.setattr(Plan, "_render", counting)
        assert run(job, sim, ledger) == 0
        assert len(sim.commands) == 2 * 51
        assert len({(c.imei, c.op) for c in sim.commands}) == 2 * 51
    assert {i: 1 for i in done} == {i: rendered[i] for i in done}
    assert {2} == {n for i, n in rendered.items() if i not in done}
    assert 51 == len(rendered)
