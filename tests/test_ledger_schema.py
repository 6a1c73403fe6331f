"""Ledger schema upgrades and what the item rows remember about their sends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.errors import LedgerError
from dispatcher.ledger import APPLICATION_ID, SCHEMA_VERSION, Answer, Ledger, Status
from dispatcher.ledger import schema as ledger_schema
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register
from tests.helpers import API_KEY, simulator, write_job
from tests.test_ledger import record

IMEI = "865820031234565"

# The runs table as schema 2 wrote it: no shard count.
SCHEMA_2 = ledger_schema.SCHEMA.replace(
    "    inputs_hash TEXT,\n    shards INTEGER NOT NULL DEFAULT 1\n", "    inputs_hash TEXT\n"
)
# The items table as schema 1 (the first release) wrote it: no first_sent_at, no request_hash.
SCHEMA_1 = SCHEMA_2.replace("    first_sent_at REAL,\n", "").replace("    request_hash TEXT,\n", "")


def schema_1_ledger(path: Path, schema: str = SCHEMA_1, version: int = 1) -> None:
    db = sqlite3.connect(path)
    db.executescript(schema)
    db.execute(
        "INSERT INTO runs (run_id, job_name, job_path, job_hash, target, expired_time,"
        " first_started_at, started_at, state) VALUES"
        " ('old', 'job', 'job.yaml', 'h', 'http://x', '2026-11-24T10:00:00+08:00', 1, 1, 'finished')"
    )
    db.execute(
        "INSERT INTO items (run_id, imei, command, fleet, op, status, uuid, attempts, sent_at,"
        " answered_at) VALUES ('old', ?, 0, 'f', 'write', 'ok', 'u-1', 1, 10.0, 12.0)",
        (IMEI,),
    )
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()


def test_schema_2_ledger_gains_the_shard_count_of_an_unsharded_run(tmp_path: Path) -> None:
    """A schema-2 ledger opens as schema 3: its runs were not sharded (a shard count of 1)."""
    path = tmp_path / "two.sqlite"
    schema_1_ledger(path, SCHEMA_2, 2)
    assert "shards" not in SCHEMA_2
    with Ledger(path) as ledger:
        record = ledger.run("old")
        assert record is not None
        assert 1 == record.shards
        assert {"ok": 1} == ledger.counts("old")
    db = sqlite3.connect(path)
    assert 3 == db.execute("PRAGMA user_version").fetchone()[0]
    db.close()


def test_schema_1_ledger_is_upgraded_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    """A ledger written by the first release opens: columns added, rows and times kept."""
    path = tmp_path / "old.sqlite"
    schema_1_ledger(path)
    assert "first_sent_at" not in SCHEMA_1
    with Ledger(path) as ledger:
        assert {"ok": 1} == ledger.counts("old")
        [row] = list(ledger.items("old"))
        assert (10.0, 10.0, None, "u-1") == (
            row["sent_at"],
            row["first_sent_at"],
            row["request_hash"],
            row["uuid"],
        )
        assert [(IMEI, "f", 0, "write", "ok", 2.0, 1)] == ledger.slowest_answers("old", 5)
    db = sqlite3.connect(path)
    assert SCHEMA_VERSION == db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
    with Ledger(path) as ledger:  # opening again migrates nothing twice
        assert {"ok": 1} == ledger.counts("old")


def test_schema_1_ledger_reports_and_resumes_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report` on a schema-1 ledger works, and the file is a current ledger afterwards."""
    path = tmp_path / "old.sqlite"
    schema_1_ledger(path)
    assert 0 == main(["report", str(path), "--format", "json"])
    assert '"run_id": "old"' in capsys.readouterr().out


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A ledger from a later version is not guessed at."""
    path = tmp_path / "new.sqlite"
    with Ledger(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="schema"):
        Ledger(path)


def test_sent_at_is_the_latest_send_and_first_sent_at_the_first(tmp_path: Path) -> None:
    """A row sent again (--resend-in-doubt) measures "too recent to tell" from its latest send."""
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.start_run(record())
        ledger.apply([Register("r1", [(IMEI, "f", [("write", "abc")])])])
        ledger.apply([MarkSending("r1", IMEI, 0, 5.0)])
        ledger.apply(
            [RecordAnswer("r1", Answer(IMEI, 0, Status.IN_DOUBT, None, None, "x", None, 1, 6.0))]
        )
        ledger.apply([MarkSending("r1", IMEI, 0, 50.0)])
        ledger.apply([RecordAnswer("r1", Answer(IMEI, 0, Status.OK, "u", 0, None, 200, 1, 51.0))])
        [row] = list(ledger.items("r1"))
        assert (50.0, 5.0, "abc") == (row["sent_at"], row["first_sent_at"], row["request_hash"])
        [in_doubt_view] = ledger.slowest_answers("r1", 1)
        assert 46.0 == in_doubt_view[5]  # the whole wait, from the first send


def test_a_run_stores_the_hash_of_each_request_it_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of a run holds the hash of the request rendered for it (and only that)."""
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 3)
    path = tmp_path / "ledger.sqlite"
    with simulator() as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(path)])
    with Ledger(path) as ledger:
        hashes = [(r["imei"], r["command"], r["request_hash"]) for r in ledger.items("test-job")]
    assert len(hashes) == 6
    assert len({h for _, _, h in hashes}) == 6  # other devices' values, other commands
    assert all(h is not None and len(h) == 32 for _, _, h in hashes)


def test_a_run_begun_under_schema_1_resumes_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run half sent by the first release: the upgraded ledger resumes it, each device once."""
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 12)
    path = tmp_path / "ledger.sqlite"
    with simulator() as sim:
        run = ["run", str(job), "--base-url", sim.base_url, "--ledger", str(path)]
        assert 0 == main([*run, "--limit", "5"])
        # what the first release would have left: no new columns, schema 1
        db = sqlite3.connect(path)
        db.execute("ALTER TABLE items DROP COLUMN first_sent_at")
        db.execute("ALTER TABLE items DROP COLUMN request_hash")
        db.execute("ALTER TABLE runs DROP COLUMN shards")
        db.execute("PRAGMA user_version=1")
        db.commit()
        db.close()
        assert 0 == main(run)
        sent = [(c.imei, c.op) for c in sim.commands]
    assert 24 == len(sent) == len(set(sent))
    with Ledger(path) as ledger:
        rows = list(ledger.items("test-job"))
    assert all(r["request_hash"] is not None for r in rows)  # filled in on the resume
    assert {"ok"} == {r["status"] for r in rows}
