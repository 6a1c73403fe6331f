"""The PostgreSQL the tests get: a real server, a database of its own per test."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests import pg_server
from tests.pg import with_database


def test_a_test_database_stores_and_returns_rows(pg_url: str) -> None:
    """A table created, written and read back in the test's own database."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE items (imei text PRIMARY KEY, status text NOT NULL)")
        conn.execute("INSERT INTO items VALUES (%s, %s), (%s, %s)", ("1", "ok", "2", "sending"))
        conn.commit()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT imei, status FROM items ORDER BY imei").fetchall()
    assert [("1", "ok"), ("2", "sending")] == rows


def test_an_advisory_lock_is_refused_to_a_second_connection(pg_url: str) -> None:
    """What owns a run across processes: a session advisory lock, one holder at a time."""
    with (
        psycopg.connect(pg_url, autocommit=True) as first,
        psycopg.connect(pg_url, autocommit=True) as second,
    ):
        take = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
        assert (True,) == first.execute(take, ("run-1",)).fetchone()
        assert (False,) == second.execute(take, ("run-1",)).fetchone()
        assert (True,) == second.execute(take, ("run-2",)).fetchone()
        first.close()  # a holder that goes away (a killed process) releases its lock
        # ... once the server has ended its session, which happens after close() returns:
        # wait for that (bounded) rather than race it.
        deadline = time.monotonic() + 30
        while (False,) == second.execute(take, ("run-1",)).fetchone():
            assert time.monotonic() < deadline, "the closed session's lock was never released"
            time.sleep(0.01)


def test_each_test_gets_an_empty_database(pg_url: str) -> None:
    """The table the first test created is not here: tests share nothing."""
    with psycopg.connect(pg_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'items'").fetchone()
    assert (0,) == found


def test_with_database_keeps_everything_but_the_name() -> None:
    """Credentials, host, port and options survive the switch to another database."""
    url = "postgresql://u:p@db.example:6543/main?sslmode=require"
    assert "postgresql://u:p@db.example:6543/other?sslmode=require" == with_database(url, "other")


@pytest.mark.skipif(not pg_server.available(), reason=pg_server.MISSING)
def test_a_throwaway_cluster_starts_and_is_removed() -> None:
    """The script .ci/run uses: a cluster in a directory, reachable by its URL, then gone."""
    # Not tmp_path: pytest's directories are private to this user, and when the tests run
    # as root the server runs as `postgres`, which must reach its directory.
    base = Path(tempfile.mkdtemp(prefix="onenet-pg-test-"))
    base.chmod(0o755)
    try:
        cluster = pg_server.start(base / "cluster")
        try:
            with psycopg.connect(cluster.url) as conn:
                found = conn.execute("SELECT current_database()").fetchone()
            assert (pg_server.DATABASE,) == found
        finally:
            pg_server.stop(base / "cluster")
        assert not (base / "cluster").exists()
    finally:
        base.rmdir()
