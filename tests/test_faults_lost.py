"""Lost answers: the platform queues the command, then the answer never arrives (dropped
connection, or later than the read timeout). Through the CLI the row is in doubt, sent
once, reported, and the run exits 1."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_job

WRITE = "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"
READ = "  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n"
DEVICES = 3  # few: a whole fleet without answers would be an outage (the circuit breaker's case)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def run(job: Path, sim: Simulator, ledger: Path, *extra: str) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger), *extra])


def rows(ledger: Path) -> list[tuple[str, int, str, str | None, int, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        return db.execute(
            "SELECT imei, command, status, uuid, attempts, error FROM items ORDER BY imei, command"
        ).fetchall()
    finally:
        db.close()


def check_held(ledger: Path, sim: Simulator, op: str, with_second: bool) -> None:
    """Every device's first command in doubt after one attempt; its second still pending, unsent."""
    assert Counter({imei(i): 1 for i in range(DEVICES)}) == Counter(c.imei for c in sim.commands)
    assert {op} == {c.op for c in sim.commands}
    assert DEVICES == len(sim.requests)
    got = rows(ledger)
    first = [r for r in got if r[1] == 0]
    assert [("in_doubt", None, 1)] * DEVICES == [(r[2], r[3], r[4]) for r in first]
    if with_second:
        assert ["pending"] * DEVICES == [r[2] for r in got if r[1] == 1]


@pytest.mark.parametrize(
    ("commands", "op"), [(WRITE + READ, "write"), (READ, "read")], ids=["write", "read"]
)
def test_dropped_connection_after_queueing_is_in_doubt_and_not_resent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], commands: str, op: str
) -> None:
    """Queued then dropped: in doubt, sent once (a GET too), the next command held, reported, exit 1."""
    job = write_job(tmp_path, DEVICES, commands=commands)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0) as sim:
        capsys.readouterr()
        assert 1 == run(job, sim, ledger)
        check_held(ledger, sim, op, with_second=commands != READ)
    assert f"{DEVICES} rows are in doubt" in capsys.readouterr().out


def test_answer_later_than_the_read_timeout_is_in_doubt_and_not_resent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Queued then answered after the configured 0.5 s read timeout: in doubt, sent once, exit 1."""
    job = write_job(tmp_path, DEVICES, commands=WRITE + READ)
    ledger = tmp_path / "ledger.sqlite"
    config = tmp_path / "config.yaml"
    config.write_text("http: {read_timeout: 0.5}\n", encoding="utf-8")
    # an answer no stall of a busy machine lets arrive before the 0.5 s read timeout
    with simulator(stall_after_queue_rate=1.0, stall_seconds=300.0) as sim:
        capsys.readouterr()
        assert 1 == run(job, sim, ledger, "--config", str(config))
        check_held(ledger, sim, "write", with_second=True)
    assert {"no answer within the read timeout"} == {r[5] for r in rows(ledger) if r[1] == 0}
    assert f"{DEVICES} rows are in doubt" in capsys.readouterr().out


def test_a_rerun_settles_lost_answers_without_sending_them_again(tmp_path: Path) -> None:
    """A rerun on a healthy platform reconciles the lost answers to ok with the queued uuids; no write goes twice."""
    job = write_job(tmp_path, DEVICES, commands=WRITE + READ)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        assert 0 == run(job, sim, ledger)
        queued = Counter((c.imei, c.op) for c in sim.commands)
        uuids = {(c.imei, 0 if c.op == "write" else 1): c.uuid for c in sim.commands}
    assert {1} == set(queued.values())
    assert 2 * DEVICES == len(queued)
    assert {(r[0], r[1]): r[3] for r in rows(ledger)} == uuids
    assert {"ok"} == {r[2] for r in rows(ledger)}
