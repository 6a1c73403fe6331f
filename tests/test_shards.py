"""`run --shard K/N` on SQLite: a stable split, each device once, the run's rate shared,
one split per run, and `status`/`report`/`export` reading the shards' files as one run."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.errors import InputError, RunRefused
from dispatcher.ledger import Ledger, MarkSending, Register, RunRecord
from dispatcher.shards import Shard, parse_shard, shard_of
from dispatcher.show import shard_counts
from tests.helpers import API_KEY, imei, simulator, write_job
from tests.pg import open_target

DEVICES = 40
RUN = RunRecord(
    *("r", "j", "j.yaml", "h", "http://x", None, "2026-11-24T10:00:00+08:00"),
    *(1.0, 1.0, None, "running", None),
)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def test_the_split_is_pinned() -> None:
    """The same IMEI falls in the same shard on every machine and Python version, for good."""
    assert [2, 3, 1, 1, 0, 0] == [
        shard_of(i, 4)
        for i in (
            "860000000000000",
            "865820050000017",
            "490154203237518",
            "352099001761481",
            "356938035643809",
            "868716040000008",
        )
    ]
    assert [0, 0, 2, 1, 1, 2] == [
        shard_of(i, 3)
        for i in (
            "860000000000000",
            "865820050000017",
            "490154203237518",
            "352099001761481",
            "356938035643809",
            "868716040000008",
        )
    ]
    assert 369 == shard_of("490154203237518", 1000)


def test_every_shard_gets_a_share() -> None:
    """A thousand IMEIs split into four: no shard empty or holding most of them."""
    sizes = Counter(shard_of(imei(i), 4) for i in range(1000))
    assert set(sizes) == {0, 1, 2, 3}
    assert all(200 <= n <= 300 for n in sizes.values()), sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/4", Shard(0, 4)), ("3/4", Shard(3, 4)), ("0/1", Shard(0, 1)), (" 2 / 5 ", Shard(2, 5))],
)
def test_shard_parses(text: str, expected: Shard) -> None:
    assert expected == parse_shard(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/4", "K must be 0..3"),
        ("0/0", "N must be 1..1000"),
        ("-1/4", "write K/N"),
        ("1", "write K/N"),
        ("a/b", "write K/N"),
        ("/4", "write K/N"),
    ],
)
def test_a_bad_shard_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """Exit 2 with what to write instead; no request leaves, no ledger is made."""
    job = write_job(tmp_path, 4)
    with simulator() as sim:
        code = main(["run", str(job), "--base-url", sim.base_url, f"--shard={text}"])
        assert [] == sim.commands
    assert 2 == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.sqlite"))
    with pytest.raises(InputError):
        parse_shard(text)


def _run_shards(job: Path, base_url: str, count: int) -> list[int]:
    return [
        main(["run", str(job), "--base-url", base_url, "--shard", f"{k}/{count}"])
        for k in range(count)
    ]


def test_four_shards_send_each_device_once_each_in_its_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shard K sends exactly the devices that hash to K, into ledger.shard-K.sqlite; each
    exits 0 with its own devices ok, and its run stays partial until all four are merged."""
    job = write_job(tmp_path, DEVICES)
    with simulator() as sim:
        assert [0, 0, 0, 0] == _run_shards(job, sim.base_url, 4)
        sent = [(c.imei, c.op) for c in sim.commands]
    assert 2 * DEVICES == len(sent) == len(set(sent))
    files = [tmp_path / f"ledger.shard-{k}.sqlite" for k in range(4)]
    assert not (tmp_path / "ledger.sqlite").exists()
    for k, path in enumerate(files):
        with Ledger(path) as ledger:
            rows = list(ledger.items("test-job"))
            record = ledger.run("test-job")
        assert {shard_of(r["imei"], 4) for r in rows} == {k}
        assert {"ok"} == {r["status"] for r in rows}
        assert record is not None
        assert (4, "partial", DEVICES) == (record.shards, record.state, record.devices)

    capsys.readouterr()
    assert 0 == main(["status", *map(str, files), "--run-id", "test-job", "--format", "json"])
    status = json.loads(capsys.readouterr().out)
    assert ("finished", 0, {"ok": 2 * DEVICES}) == (
        status["state"],
        status["remaining_devices"],
        status["counts"],
    )
    per_shard = Counter(shard_of(imei(i), 4) for i in range(DEVICES))
    assert [
        {"shard": f"{k}/4", "devices": per_shard[k], "counts": {"ok": 2 * per_shard[k]}}
        for k in range(4)
    ] == status["shards"]

    assert 0 == main(["report", *map(str, files), "--run-id", "test-job", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert 2 * DEVICES == report["counts"]["ok"] == report["counts"]["total"]
    assert "finished" == report["run"]["state"]

    assert 0 == main(["export", *map(str, files), "--run-id", "test-job", "--format", "csv"])
    exported = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(sent) == sorted((r["imei"], r["op"]) for r in exported)


def test_three_of_four_shards_show_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Merged without one shard's file, the run is partial and counts that shard's devices."""
    job = write_job(tmp_path, DEVICES)
    with simulator() as sim:
        assert [0, 0, 0, 0] == _run_shards(job, sim.base_url, 4)
    files = [str(tmp_path / f"ledger.shard-{k}.sqlite") for k in (0, 1, 3)]
    capsys.readouterr()
    assert 0 == main(["status", *files, "--format", "json"])
    status = json.loads(capsys.readouterr().out)
    missing = sum(1 for i in range(DEVICES) if shard_of(imei(i), 4) == 2)
    assert ("partial", missing) == (status["state"], status["remaining_devices"])
    assert 0 == main(["status", *files])
    assert "shard 2/4: 0 devices; no rows yet" in capsys.readouterr().out


def test_a_shard_rerun_resumes_its_own_devices_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard run again sends nothing its first pass settled, and nothing of the others."""
    job = write_job(tmp_path, DEVICES)
    with simulator() as sim:
        run = ["run", str(job), "--base-url", sim.base_url, "--shard", "1/4"]
        assert 0 == main([*run, "--limit", "3"])
        assert 0 == main(run)
        assert 0 == main(run)
        sent = [(c.imei, c.op) for c in sim.commands]
    mine = {imei(i) for i in range(DEVICES) if shard_of(imei(i), 4) == 1}
    assert len(sent) == len(set(sent)) == 2 * len(mine)
    assert {i for i, _ in sent} == mine


def test_another_shard_count_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run split into 4 is not resumed split into 2, nor whole: exit 2, nothing sent again."""
    job = write_job(tmp_path, DEVICES)
    with simulator() as sim:
        assert [0, 0, 0, 0] == _run_shards(job, sim.base_url, 4)
        before = len(sim.commands)
        capsys.readouterr()
        for other in (["--shard", "0/2"], ["--shard", "1/2"], []):
            assert 2 == main(["run", str(job), "--base-url", sim.base_url, *other])
            err = capsys.readouterr().err
            assert "split into 4 shards" in err
            assert "--shard K/4" in err
        # an explicit ledger holding the run split otherwise is refused too
        ledger = str(tmp_path / "ledger.shard-3.sqlite")
        assert 2 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", ledger])
        assert before == len(sim.commands)


def test_an_unsharded_run_is_not_split_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run begun whole, resumed as shards, would send the whole fleet again: refused."""
    job = write_job(tmp_path, 8)
    with simulator() as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--limit", "2"])
        capsys.readouterr()
        assert 2 == main(["run", str(job), "--base-url", sim.base_url, "--shard", "2/4"])
        assert "was started unsharded" in capsys.readouterr().err
        assert 4 == len(sim.commands)


@pytest.mark.parametrize(("mode", "expected"), [("divided", 250.0), ("whole", 1000.0)])
def test_each_shard_sends_at_its_share_of_the_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, expected: float
) -> None:
    """rate.per_second 1000 in four shards: 250/s each, unless rate.shard_rate is whole."""
    job = write_job(tmp_path, 4)
    text = job.read_text("utf-8")
    assert "  per_second: 1000\n" in text
    job.write_text(
        text.replace("  per_second: 1000\n", f"  per_second: 1000\n  shard_rate: {mode}\n"),
        encoding="utf-8",
    )
    with simulator() as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url, "--shard", "0/4"])
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [expected] == [e["per_second"] for e in events if e["event"] == "shard"]


def test_two_ledgers_holding_the_same_rows_are_not_summed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same run's rows in two files are not shards of one run: refused, exit 2."""
    job = write_job(tmp_path, 4)
    with simulator() as sim:
        assert 0 == main(["run", str(job), "--base-url", sim.base_url])
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes((tmp_path / "ledger.sqlite").read_bytes())
    capsys.readouterr()
    assert 2 == main(["report", str(tmp_path / "ledger.sqlite"), str(copy)])
    assert "not the shards of one run" in capsys.readouterr().err


def test_status_counts_each_device_once_when_the_shards_rows_interleave() -> None:
    """Shards registering side by side in one PostgreSQL ledger draw row ids from one
    sequence, so another shard's row may come between a device's two: still one device."""
    a = imei(0)
    b = next(imei(i) for i in range(1, 100) if shard_of(imei(i), 2) != shard_of(a, 2))
    rows = [
        {"imei": a, "status": "ok"},
        {"imei": b, "status": "ok"},
        {"imei": a, "status": "ok"},
        {"imei": b, "status": "failed"},
    ]
    by_shard = {s["shard"]: s for s in shard_counts(rows, 2)}
    assert {"shard": f"{shard_of(a, 2)}/2", "devices": 1, "counts": {"ok": 2}} == by_shard[
        f"{shard_of(a, 2)}/2"
    ]
    assert {"shard": f"{shard_of(b, 2)}/2", "devices": 1, "counts": {"failed": 1, "ok": 1}} == (
        by_shard[f"{shard_of(b, 2)}/2"]
    )


def test_a_shard_recovers_only_its_own_rows_in_flight(ledger_target: str) -> None:
    """In a ledger the shards share, another shard's `sending` rows are in flight: untouched."""
    a = imei(0)
    b = next(imei(i) for i in range(1, 100) if shard_of(imei(i), 2) != shard_of(a, 2))
    mine = Shard(shard_of(a, 2), 2)
    with open_target(ledger_target) as ledger:
        ledger.start_run(RUN)
        ledger.apply([Register("r", [(a, "f", ["write"]), (b, "f", ["write"])])])
        ledger.apply([MarkSending("r", a, 0, 5.0), MarkSending("r", b, 0, 5.0)])
        assert 1 == ledger.recover_sending("r", mine.owns)
        statuses = {row["imei"]: row["status"] for row in ledger.items("r")}
    assert {a: "in_doubt", b: "sending"} == statuses


def test_shards_of_a_run_lock_side_by_side_but_never_twice(pg_url: str) -> None:
    """PostgreSQL: shards 0 and 1 of a run hold it at once; a second shard 1 is refused, and
    so is a whole-run owner (a run without --shard, cancel, reconcile) while shards run."""
    with open_target(pg_url) as one, open_target(pg_url) as two, open_target(pg_url) as three:
        one.lock("r", 0)
        two.lock("r", 1)
        with pytest.raises(RunRefused, match="in use by"):
            three.lock("r", 1)
        with pytest.raises(RunRefused, match="in use by"):
            three.lock("r")
        two.close()
        three.lock("r", 1)


def test_a_schema_2_postgresql_ledger_gains_the_shard_count(pg_url: str) -> None:
    """A PostgreSQL ledger made before shards opens with `shards` 1 on its runs."""
    import psycopg

    with open_target(pg_url) as ledger:
        ledger.start_run(RUN)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("ALTER TABLE runs DROP COLUMN shards")
        db.execute("UPDATE ledger_schema SET version = 2")
    with open_target(pg_url) as ledger:
        record = ledger.run("r")
    assert record is not None
    assert 1 == record.shards
    with psycopg.connect(pg_url, autocommit=True) as db:
        assert (3,) == db.execute("SELECT version FROM ledger_schema").fetchone()


def test_shards_sharing_one_sqlite_file_take_turns_and_finish_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ledger names one file for both shards: each sends its own devices, once; the second
    to end finds the whole job settled and the run finished."""
    job = write_job(tmp_path, DEVICES)
    ledger = tmp_path / "shared.sqlite"
    with simulator() as sim:
        for k in (1, 0, 1):
            run = ["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)]
            assert 0 == main([*run, "--shard", f"{k}/2"])
        sent = [(c.imei, c.op) for c in sim.commands]
    assert 2 * DEVICES == len(sent) == len(set(sent))
    capsys.readouterr()
    assert 0 == main(["status", str(ledger), "--format", "json"])
    status = json.loads(capsys.readouterr().out)
    assert ("finished", 0) == (status["state"], status["remaining_devices"])
    assert DEVICES == sum(s["devices"] for s in status["shards"])
    assert [{"ok": 2 * s["devices"]} for s in status["shards"]] == [
        s["counts"] for s in status["shards"]
    ]
