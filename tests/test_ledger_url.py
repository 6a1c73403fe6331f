"""A ledger named by URL: the backend chosen, the password refused and masked, the run lock
shared by processes on one PostgreSQL database, the driver loaded only when needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.errors import LedgerError, RunRefused
from dispatcher.ledger import SCHEMA_VERSION, open_existing
from dispatcher.pgurl import PgUrl, has_password, mask, parse_target
from tests.helpers import API_KEY, simulator, write_job
from tests.pg import open_target

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-canary-91c4"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ops:{SECRET}@db.example:5432/ledger",
        f"postgres://ops:{SECRET}@db.example/ledger?sslmode=require",
        f"postgresql://ops@db.example/ledger?sslmode=require&password={SECRET}",
        f"postgresql://ops:{SECRET}@db.example:notaport/ledger",
        f"postgresql://:{SECRET}@/ledger?host=/run/postgresql",
    ],
)
def test_a_password_is_found_and_masked(url: str) -> None:
    assert has_password(url)
    assert SECRET not in mask(url)
    assert "***" in mask(url)
    assert SECRET not in str(PgUrl(url))


def test_urls_without_password_and_paths_are_kept() -> None:
    url = "postgresql://ops@db.example:5432/ledger?sslmode=verify-full"
    assert not has_password(url)
    assert url == mask(url) == str(parse_target(url, where="x"))
    assert Path("postgresql.sqlite") == parse_target("postgresql.sqlite", where="x")
    assert Path("jobs/l.sqlite") == parse_target("jobs/l.sqlite", where="x")


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "LEDGER"],
        ["report", "LEDGER"],
        ["export", "LEDGER"],
        ["track", "LEDGER"],
        ["cancel", "LEDGER", "--run-id", "r"],
        ["reconcile", "LEDGER"],
        ["confirm-wave", "LEDGER", "--run-id", "r"],
        ["run", "job.yaml", "--ledger", "LEDGER"],
    ],
)
def test_a_password_on_the_command_line_is_refused_unechoed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 before anything is opened, saying where the password goes, never echoing it."""
    url = f"postgresql://ops:{SECRET}@127.0.0.1:9/ledger"
    with pytest.raises(SystemExit) as exc:
        main([url if a == "LEDGER" else a for a in argv])
    assert 2 == exc.value.code
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "PGPASSWORD" in err


def test_a_password_in_the_config_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 1)
    config = tmp_path / "config.yaml"
    config.write_text(f"ledger: postgresql://ops:{SECRET}@127.0.0.1:9/ledger\n")
    assert 2 == main(["run", str(job), "--config", str(config)])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert f"{config}:1: ledger:" in err
    assert "PGPASSWORD" in err


def test_without_the_driver_a_url_is_a_clear_error_and_sqlite_needs_none(tmp_path: Path) -> None:
    """psycopg hidden: a URL says which extra to install (exit 2); SQLite never imports it."""
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if the postgres extra were not installed\n"
        "from dispatcher.cli import main\n"
        "print('CODE', main(sys.argv[1:]))\n"
    )
    ledger = tmp_path / "l.sqlite"
    open_target(str(ledger)).close()
    for target, code in (("postgresql://ops@127.0.0.1:9/ledger", 2), (str(ledger), 0)):
        done = subprocess.run(
            [sys.executable, "-c", script, "status", target],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=tmp_path,
        )
        assert f"CODE {code}" in done.stdout, done.stderr
        assert "Traceback" not in done.stderr
    assert (
        "install onenet-dispatcher[postgres]"
        in subprocess.run(
            [sys.executable, "-c", script, "status", "postgres://ops@127.0.0.1:9/ledger"],
            capture_output=True,
            text=True,
            env=ENV,
        ).stderr
    )


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == main(["status", "postgresql://ops@127.0.0.1:9/ledger?connect_timeout=2"])
    err = capsys.readouterr().err
    assert "ledger postgresql://ops@127.0.0.1:9/ledger" in err
    assert "Traceback" not in err


# --- on a real server -----------------------------------------------------------------------


def test_a_database_without_a_ledger_is_not_created_by_readers(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["status", pg_url])
    assert "no ledger in this database" in capsys.readouterr().err
    with pytest.raises(Exception, match="no ledger in this database"):
        open_existing(PgUrl(pg_url))


def test_another_programs_tables_are_refused(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id integer)")
    with pytest.raises(LedgerError, match="another program"):
        open_target(pg_url)


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    open_target(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE ledger_schema SET version = 99")
    with pytest.raises(LedgerError, match=f"schema 99; this version reads {SCHEMA_VERSION}"):
        open_target(pg_url)


def test_shards_share_a_run_that_a_whole_run_owner_excludes(pg_url: str) -> None:
    """Shards of one run lock side by side; a shard twice, or the whole run beside a shard
    (a run without --shard, cancel, reconcile), is refused; and the other way round."""
    with open_target(pg_url) as a, open_target(pg_url) as b, open_target(pg_url) as c:
        a.lock("r", shard=0)
        b.lock("r", shard=1)
        with pytest.raises(RunRefused, match=f"in use by pid {os.getpid()}"):
            c.lock("r", shard=0)
        with pytest.raises(RunRefused, match="in use by"):
            c.lock("r")
        c.lock("other-run")  # other runs are not held up
        a.close()
        b.unlock()
        c.lock("r")
        with pytest.raises(RunRefused, match=r"\(run other-run\)|\(run r\)"):
            b.lock("r", shard=1)


HOLDER = """
import sys
from dispatcher.ledger import open_ledger, parse_target
ledger = open_ledger(parse_target(sys.argv[1], where="test"))
ledger.lock("test-job")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_process_on_one_postgresql_run_is_refused(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process owns the run: `run` exits 2 naming it, sends nothing; once that process
    is killed (-9), the server frees its lock and the same command runs."""
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 3)
    with (
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, pg_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        ) as holder,
        simulator() as sim,
    ):
        try:
            assert holder.stdout is not None
            assert "locked" == holder.stdout.readline().strip()
            argv = ["run", str(job), "--base-url", sim.base_url, "--ledger", pg_url]
            assert 2 == main(argv)
            assert 0 == len(sim.commands)
            err = capsys.readouterr().err
            assert f"is in use by pid {holder.pid} on " in err
            assert f"onenet-dispatch status {pg_url}" in err
        finally:
            holder.kill()
            holder.wait()
        assert 0 == main(argv)
        assert 6 == len(sim.commands)
