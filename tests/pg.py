"""PostgreSQL for the tests: one server per session, one fresh database per test.

The server is, in order: the one ``ONENET_TEST_PG_URL`` names (``.ci/run`` starts one
and exports it; a developer may point it at their own); else a throwaway cluster
started here when ``initdb`` is on PATH, stopped at the end of the session; else the
tests that need it are skipped, with the message below. Under CI (``CI`` set) a missing
server fails instead, so CI can never pass by skipping the PostgreSQL half.

Each test gets its own database (``CREATE DATABASE``), dropped afterwards, so tests
share no tables, locks or sequences and may run in any order.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from dispatcher.ledger import LedgerStore, open_ledger
from dispatcher.pgurl import parse_target
from tests import pg_server

ENV = "ONENET_TEST_PG_URL"


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server, everything else kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(url: str, statement: str) -> None:
    # Imported here: without the driver, only the tests that use PostgreSQL fail.
    import psycopg

    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(url, autocommit=True, connect_timeout=30) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database for this session."""
    given = os.environ.get(ENV)
    if given:
        yield given
        return
    if not pg_server.available():
        if os.environ.get("CI"):
            pytest.fail(pg_server.MISSING)
        pytest.skip(pg_server.MISSING)
    base = Path(tempfile.mkdtemp(prefix="onenet-pg-"))
    # When we are root the server runs as `postgres`, which must reach its directory.
    base.chmod(0o755)
    try:
        cluster = pg_server.start(base / "cluster")
        yield cluster.url
    finally:
        pg_server.stop(base / "cluster")
        base.rmdir()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped when the test ends."""
    name = f"onenet_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_server_url, name)
    finally:
        # FORCE: a test that failed may have left connections open.
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- a ledger test on both backends ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's ledger lives, as a user writes it: a SQLite path, then a PostgreSQL URL
    (a fresh database; skipped, or failed under CI, as ``pg_url`` says)."""
    if request.param == "sqlite":
        return str(tmp_path / "l.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


def open_target(text: str) -> LedgerStore:
    """The ledger at ``text`` (a path or URL), created when missing, as `run` opens it."""
    return open_ledger(parse_target(text, where="test"))
