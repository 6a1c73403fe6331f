"""End-to-end runs of the real CLI against the simulator over loopback HTTP.

The tests taking ``ledger_target`` run twice: on a SQLite ledger and on a PostgreSQL one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_job


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def run(job: Path, sim: Simulator, ledger: Path | str, *extra: str) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger), *extra])


def export(
    ledger: Path | str, capsys: pytest.CaptureFixture[str], *extra: str
) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["export", str(ledger), *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_device_gets_each_command_once_in_order(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each device gets its write then its read, exactly once, with the exact parameters."""
    job = write_job(tmp_path, 40)
    ledger = ledger_target
    with simulator() as sim:
        assert run(job, sim, ledger) == 0
        commands = list(sim.commands)
    assert len(commands) == 80
    per_device: dict[str, list[str]] = {}
    for c in commands:
        per_device.setdefault(c.imei, []).append(c.op)
    assert {imei(i): ["write", "read"] for i in range(40)} == per_device
    first = next(c for c in commands if c.imei == imei(3) and c.op == "write")
    assert first.raw_query.startswith(
        f"imei={imei(3)}&obj_id=3300&obj_inst_id=0&mode=1&expired_time="
    )
    assert first.raw_query.endswith("&retry=2")
    assert {
        "data": [{"res_id": 5700, "val": 60}, {"res_id": 5750, "val": "10.0.0.3"}]
    } == first.body
    read = next(c for c in commands if c.imei == imei(3) and c.op == "read")
    assert read.raw_body in (None, b"")
    assert read.raw_query.startswith(
        f"imei={imei(3)}&obj_id=3300&obj_inst_id=0&res_id=5700&expired_time="
    )

    rows = export(ledger, capsys, "--run-id", "test-job")
    assert len(rows) == 80
    by_key = {(r["imei"], r["command"]): r for r in rows}
    for c in commands:
        row = by_key[(c.imei, 0 if c.op == "write" else 1)]
        assert (c.uuid, "ok", c.op) == (row["uuid"], row["status"], row["op"])
    assert set(rows[0]) == {
        "run_id", "fleet", "imei", "command", "op", "status", "uuid", "errno", "error",
        "http_status", "attempts", "sent_at", "answered_at",
        "send_status", "confirm_status", "cmd_result", "send_time", "confirm_time",
    }  # fmt: skip
    assert isinstance(rows[0]["imei"], str)
    assert str(rows[0]["sent_at"]).endswith("Z")


def test_rerun_sends_nothing_and_exits_zero(tmp_path: Path, ledger_target: str) -> None:
    """A finished run run again with the same run id sends nothing."""
    job = write_job(tmp_path, 10)
    ledger = ledger_target
    with simulator() as sim:
        assert run(job, sim, ledger) == 0
        assert run(job, sim, ledger) == 0
        assert len(sim.commands) == 20


def test_new_devices_in_the_fleet_are_added_on_resume(tmp_path: Path, ledger_target: str) -> None:
    """Devices added to the fleet after a run are sent on the next run, the old ones are not."""
    job = write_job(tmp_path, 5)
    ledger = ledger_target
    with simulator() as sim:
        assert run(job, sim, ledger) == 0
        write_job(tmp_path, 8)
        assert run(job, sim, ledger) == 0
        assert Counter(c.imei for c in sim.commands) == {imei(i): 2 for i in range(8)}


def test_changed_commands_under_the_same_run_id_are_refused(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job whose commands changed under an existing run id exits 2 and sends nothing."""
    job = write_job(tmp_path, 3)
    ledger = ledger_target
    with simulator() as sim:
        assert run(job, sim, ledger) == 0
        job.write_text(job.read_text().replace("val: 60", "val: 61"))
        capsys.readouterr()
        assert run(job, sim, ledger) == 2
        assert len(sim.commands) == 6
    assert "pick a new run id" in capsys.readouterr().err


def test_failed_first_command_skips_the_rest(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A permanent error on a device's first command skips its second; exit code 1."""
    job = write_job(tmp_path, 4)
    ledger = ledger_target
    with simulator(fail_imeis={imei(2)}) as sim:
        assert run(job, sim, ledger) == 1
        assert imei(2) not in {c.imei for c in sim.commands}
    rows = {(r["imei"], r["command"]): r for r in export(ledger, capsys)}
    assert ("failed", 8, 200) == (
        rows[(imei(2), 0)]["status"],
        rows[(imei(2), 0)]["errno"],
        rows[(imei(2), 0)]["http_status"],
    )
    assert "skipped" == rows[(imei(2), 1)]["status"]
    assert "ok" == rows[(imei(1), 1)]["status"]


def test_transient_errors_are_retried_until_ok(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """HTTP 503 answers are retried with backoff; every row ends ok, each command queued once."""
    job = write_job(tmp_path, 10)
    ledger = ledger_target
    config = tmp_path / "config.yaml"
    config.write_text("retries: {attempts: 20, backoff_base: 0.01, backoff_max: 0.05}\n")
    with simulator(http_503_rate=0.3, seed=4) as sim:
        assert run(job, sim, ledger, "--config", str(config)) == 0
        assert Counter(c.imei for c in sim.commands) == {imei(i): 2 for i in range(10)}
    rows = export(ledger, capsys)
    assert any(int(str(r["attempts"])) > 1 for r in rows)


def test_a_dropped_read_is_sent_once_and_ends_in_doubt(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiohttp would resend a GET whose pooled connection dropped; ours arrives once, in doubt."""
    commands = "  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n"
    job = write_job(tmp_path, 1, commands=commands)
    ledger = ledger_target
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert run(job, sim, ledger) == 1
        assert 1 == len(sim.commands)
        assert 1 == len(sim.requests)
    [row] = export(ledger, capsys)
    assert "in_doubt" == row["status"]


def test_in_doubt_row_found_on_the_platform_is_settled_ok(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun asks the platform's history: the queued write is found (ok, its uuid), then the read is sent."""
    job = write_job(tmp_path, 1)
    ledger = ledger_target
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert run(job, sim, ledger) == 1
        sim.config.drop_after_queue_rate = 0.0
        assert run(job, sim, ledger) == 0
        commands = list(sim.commands)
    assert ["write", "read"] == [c.op for c in commands]
    rows = export(ledger, capsys)
    assert [("ok", commands[0].uuid), ("ok", commands[1].uuid)] == [
        (r["status"], r["uuid"]) for r in rows
    ]


def test_in_doubt_row_not_on_the_platform_is_sent_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row left sending by a run that died before the request left is found missing and sent once."""
    job = write_job(tmp_path, 3)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(fail_imeis={imei(1)}) as sim:
        assert run(job, sim, ledger) == 1
        # as if the run had died between writing "sending" and sending the request, a minute ago
        db = sqlite3.connect(ledger)
        db.execute(
            "UPDATE items SET status = 'sending', errno = NULL, error = NULL, sent_at = ? WHERE imei = ? AND command = 0",
            (time.time() - 60, imei(1)),
        )
        db.execute(
            "UPDATE items SET status = 'pending', error = NULL WHERE imei = ? AND command = 1",
            (imei(1),),
        )
        db.commit()
        db.close()
        sim.config.fail_imeis = set()
        assert run(job, sim, ledger) == 0
        assert Counter(c.imei for c in sim.commands) == {imei(0): 2, imei(1): 2, imei(2): 2}


def test_a_just_sent_in_doubt_row_is_not_judged_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row sent a moment ago and not (yet) on the platform stays in doubt: it may still be on its way."""
    job = write_job(tmp_path, 2)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(fail_imeis={imei(1)}) as sim:
        assert run(job, sim, ledger) == 1
        db = sqlite3.connect(ledger)
        db.execute(
            "UPDATE items SET status = 'sending', errno = NULL, error = NULL, sent_at = ? WHERE imei = ? AND command = 0",
            (time.time(), imei(1)),
        )
        db.execute(
            "UPDATE items SET status = 'pending', error = NULL WHERE imei = ? AND command = 1",
            (imei(1),),
        )
        db.commit()
        db.close()
        sim.config.fail_imeis = set()
        assert run(job, sim, ledger) == 1
        assert imei(1) not in {c.imei for c in sim.commands}
    assert (
        "in_doubt"
        == {(r["imei"], r["command"]): r for r in export(ledger, capsys)}[(imei(1), 0)]["status"]
    )


def test_resend_in_doubt_sends_again(tmp_path: Path, ledger_target: str) -> None:
    """The escape hatch: --resend-in-doubt sends the in-doubt command again, even if it was queued."""
    job = write_job(tmp_path, 1)
    ledger = ledger_target
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert run(job, sim, ledger) == 1
        sim.config.drop_after_queue_rate = 0.0
        assert run(job, sim, ledger, "--resend-in-doubt") == 0
        assert ["write", "write", "read"] == [c.op for c in sim.commands]


def test_reconcile_command_settles_in_doubt_rows(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconcile` settles an in-doubt row to ok with the uuid the platform queued; exit 0."""
    job = write_job(
        tmp_path, 2, commands="  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n"
    )
    ledger = ledger_target
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert run(job, sim, ledger) == 1
        capsys.readouterr()
        assert main(["reconcile", str(ledger), "--base-url", sim.base_url]) == 0
        assert "2 queued (now ok)" in capsys.readouterr().out
        uuids = {c.imei: c.uuid for c in sim.commands}
    rows = export(ledger, capsys)
    assert uuids == {r["imei"]: r["uuid"] for r in rows}
    assert {"ok"} == {r["status"] for r in rows}


def test_rate_and_concurrency_hold(tmp_path: Path) -> None:
    """The k-th request never arrives before k intervals of the rate from the start, and no
    more than `concurrency` are in flight."""
    job = write_job(tmp_path, 150, rate=100, concurrency=4)
    ledger = tmp_path / "ledger.sqlite"
    # The simulator stamps arrivals on a steady clock (wall time as of now, then monotonic
    # like the limiter's), so a clock step cannot move them.
    offset = time.time() - time.monotonic()

    def steady() -> float:
        return time.monotonic() + offset

    with simulator(latency=0.02, now=steady) as sim:
        started = steady()
        assert run(job, sim, ledger) == 0
        arrivals = sorted(r.received_at for r in sim.requests)
        assert sim.max_in_flight <= 4
    assert 300 == len(arrivals)
    # The limiter's slots are an interval apart from the first, which is not before the
    # start, and a request leaves at its slot or later: so however a busy machine delays
    # and bunches requests, the k-th arrival is at least k intervals after the start. (That
    # no 1-s window holds more than the rate, stalls or not, test_limiter proves on a
    # virtual clock: on the wire it would be a timed assertion, lost to any stall.)
    early = [(k, t - started) for k, t in enumerate(arrivals) if t < started + k / 100]
    assert [] == early, "requests ahead of the rate (index, seconds after the start)"


def test_interrupted_run_resumes_without_duplicates(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT midway exits 130; the rerun finishes; no device is commanded twice."""
    job = write_job(tmp_path, 200, rate=400, concurrency=8)
    ledger = ledger_target
    with simulator() as sim:
        finished = threading.Event()

        def interrupt() -> None:
            deadline = time.monotonic() + 120  # generous: a busy machine starts slowly
            while len(sim.commands) < 100 and time.monotonic() < deadline and not finished.is_set():
                time.sleep(0.005)
            if not finished.is_set():
                os.kill(os.getpid(), signal.SIGINT)

        killer = threading.Thread(target=interrupt)
        killer.start()
        code = run(job, sim, ledger)
        finished.set()
        killer.join()
        assert code == 130
        first = len(sim.commands)
        assert 100 <= first < 400
        assert run(job, sim, ledger) == 0
        commands = list(sim.commands)
    assert Counter(c.imei for c in commands) == {imei(i): 2 for i in range(200)}
    assert len({(c.imei, c.op) for c in commands}) == 400
    rows = export(ledger, capsys)
    assert 400 == len(rows)
    assert {"ok"} == {r["status"] for r in rows}
    assert {c.uuid for c in commands} == {r["uuid"] for r in rows}


def test_second_process_on_the_ledger_is_refused(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another process holds the run, this one exits 2 with a clear message."""
    from tests.pg import open_target

    job = write_job(tmp_path, 2)
    ledger_path = ledger_target
    with open_target(ledger_path) as held, simulator() as sim:
        held.lock("test-job")
        capsys.readouterr()
        assert run(job, sim, ledger_path) == 2
        assert 0 == len(sim.commands)
    err = capsys.readouterr().err
    assert "in use by pid" in err
    assert f"onenet-dispatch status {ledger_path}" in err


def test_foreign_sqlite_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger path holding another program's SQLite file is a clear error, nothing sent."""
    job = write_job(tmp_path, 2)
    ledger = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(ledger)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    with simulator() as sim:
        capsys.readouterr()
        assert run(job, sim, ledger) == 2
        assert 0 == len(sim.commands)
    assert "another program" in capsys.readouterr().err


def test_missing_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ONENET_API_KEY, run exits 2 naming the variable, and creates no ledger."""
    monkeypatch.delenv("ONENET_API_KEY")
    job = write_job(tmp_path, 2)
    with simulator() as sim:
        assert run(job, sim, tmp_path / "l.sqlite") == 2
        assert 0 == len(sim.requests)
    assert "ONENET_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "l.sqlite").exists()


def test_simulate_runs_the_example_job(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`run --simulate` sends the example job to a built-in simulator, every row ok."""
    example = Path(__file__).parent.parent / "jobs" / "example.yaml"
    assert main(["run", str(example), "--simulate", "--ledger", str(tmp_path / "sim.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "408" in out


def test_rerun_of_a_complete_run_on_unchanged_files_skips_the_pass(
    tmp_path: Path, ledger_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unchanged job and fleet: the rerun knows at once there is nothing to send; a changed fleet is read again."""
    job = write_job(tmp_path, 4)
    ledger = ledger_target
    with simulator() as sim:
        assert run(job, sim, ledger) == 0
        capsys.readouterr()
        assert run(job, sim, ledger) == 0
        assert "nothing_to_send" in capsys.readouterr().err
        write_job(tmp_path, 5)  # one device more
        assert run(job, sim, ledger) == 0
        assert "nothing_to_send" not in capsys.readouterr().err
        assert Counter(c.imei for c in sim.commands) == {imei(i): 2 for i in range(5)}
