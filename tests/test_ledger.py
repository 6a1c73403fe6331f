"""The ledger on its own: schema, write-ahead recovery, locks, foreign and broken files.

The tests taking ``ledger_target`` run on both backends: a SQLite file and a PostgreSQL
database on a real server (tests/pg.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dispatcher.errors import LedgerError, RunRefused
from dispatcher.ledger import Answer, Ledger, RunRecord, Status
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register
from dispatcher.ledger.store import LedgerStore
from tests.pg import open_target


def record(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        run_id,
        "job",
        "job.yaml",
        "hash",
        "http://x",
        None,
        "2026-11-24T10:00:00+08:00",
        1.0,
        1.0,
        None,
        "running",
        None,
    )


def test_sending_rows_become_in_doubt_on_recovery(ledger_target: str) -> None:
    """A row left `sending` by a dead run is in doubt at the next start; others are untouched."""
    with open_target(ledger_target) as ledger:
        ledger.start_run(record())
        ledger.apply([Register("r1", [("865820031234565", "f", ["write", "read"])])])
        ledger.apply([MarkSending("r1", "865820031234565", 0, 5.0)])
        assert 1 == ledger.recover_sending("r1")
        assert {"in_doubt": 1, "pending": 1} == ledger.counts("r1")


def test_register_keeps_existing_rows(ledger_target: str) -> None:
    """Registering a device again returns its recorded statuses instead of resetting them."""
    with open_target(ledger_target) as ledger:
        ledger.start_run(record())
        devices = [("865820031234565", "f", ["write", "read"])]
        ledger.apply([Register("r1", devices)])
        answer = Answer("865820031234565", 0, Status.OK, "u", 0, None, 200, 1, 6.0)
        ledger.apply([RecordAnswer("r1", answer)])
        [statuses] = ledger.apply([Register("r1", devices)])
        assert {"865820031234565": [Status.OK, Status.PENDING]} == statuses


def test_data_survives_reopening(ledger_target: str) -> None:
    """What a batch committed is there after the ledger is closed and opened again."""
    with open_target(ledger_target) as ledger:
        ledger.start_run(record())
        ledger.apply([Register("r1", [("865820031234565", "f", ["write"])])])
    with open_target(ledger_target) as ledger:
        assert {"pending": 1} == ledger.counts("r1")
        assert "r1" == ledger.runs()[0].run_id


def test_second_lock_is_refused(ledger_target: str) -> None:
    """Two holders of one run: the second is refused, naming the first; free once it closes."""
    with open_target(ledger_target) as first, open_target(ledger_target) as second:
        first.lock("a")
        with pytest.raises(RunRefused, match=f"is in use by pid {os.getpid()}"):
            second.lock("a")
        first.close()
        second.lock("a")


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not SQLite at all is refused with a message, not a traceback."""
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not a usable SQLite ledger"):
        Ledger(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
def test_read_only_ledger_refuses_writes(tmp_path: Path) -> None:
    """A read-only ledger raises LedgerError on the first write."""
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    path.chmod(0o444)
    with Ledger(path) as ledger, pytest.raises(LedgerError):
        ledger.start_run(record())


@pytest.mark.parametrize("record_sends", [True, False])
def test_the_writer_records_sends_unless_told_not_to(
    ledger_target: str, record_sends: bool
) -> None:
    """The benchmarks' ledger ablation is a constructor argument: without it, every write lands."""
    import anyio

    from dispatcher.ledger.writer import LedgerWriter

    imei = "865820031234565"

    async def write(ledger: LedgerStore) -> None:
        writer = LedgerWriter(ledger, "r1", capacity=4, record_sends=record_sends)
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            await writer.register([(imei, "f", ["write"])])
            await writer.sending(imei, 0, 5.0)
            await writer.answer(Answer(imei, 0, Status.OK, "u", 0, None, 200, 1, 6.0))
            await writer.close()

    with open_target(ledger_target) as ledger:
        ledger.start_run(record())
        anyio.run(write, ledger)
        expected = {"ok": 1} if record_sends else {"pending": 1}
        assert expected == ledger.counts("r1")


def test_run_rows_round_trip(ledger_target: str) -> None:
    """A run's record as written, restarted, confirmed and ended, read back alike on both backends."""
    from dispatcher.ledger import read_run
    from dispatcher.pgurl import parse_target

    with open_target(ledger_target) as ledger:
        ledger.start_run(record())
        ledger.confirm_wave("r1", 2)
        ledger.confirm_wave("r1", 1)  # never lowers what was confirmed
        ledger.end_run("r1", 9.5, "partial", "stopped", "digest")
        ledger.start_run(record())  # a resume clears the end, keeps the first start
        ledger.set_state("r1", "running", None)
    found = read_run(parse_target(ledger_target, where="test"), "r1")
    assert found is not None
    assert (2, None, "running", None, 1.0) == (
        found.confirmed_wave,
        found.ended_at,
        found.state,
        found.inputs_hash,
        found.first_started_at,
    )
    assert read_run(parse_target(ledger_target, where="test"), "nope") is None
