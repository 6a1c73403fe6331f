"""The ``key_leases`` table: which processes spend one API key's budget right now.

Every ``run`` (each shard), ``track`` and ``reconcile`` on a ledger holds a lease on its
key while it talks to the platform: the key's hash (never the key), a holder id, the rate
it wants and a heartbeat. Each process sends at its share of the key's budget
(``dispatcher.keybudget``). A lease whose heartbeat is older than ``TTL`` belongs to a
process that died: it is dropped by the next heartbeat of anyone.

The table lives in the ledger the processes share (SQLite file or PostgreSQL database),
created the first time a lease is taken, on a connection of its own: the run's writer
keeps its connection and transactions to itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dispatcher.errors import LedgerError
from dispatcher.ledger.postgres_schema import SCHEMA_LOCK
from dispatcher.pgurl import LedgerTarget, PgUrl

TTL = 15.0  # seconds without a heartbeat after which a lease is a dead process's

_TABLE = """CREATE TABLE IF NOT EXISTS key_leases (
    key_hash TEXT NOT NULL,
    holder TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rate DOUBLE PRECISION NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_hash, holder)
)"""


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str  # host:pid
    run_id: str
    kind: str  # run, track, reconcile
    rate: float  # requests per second it wants
    heartbeat: float  # Unix time of its last renewal


class LeaseTable(Protocol):
    def beat(
        self, key_hash: str, holder: str, run_id: str, kind: str, rate: float, now: float
    ) -> list[Lease]: ...
    def release(self, key_hash: str, holder: str) -> None: ...
    def close(self) -> None: ...


class _Leases:
    """The SQL of both backends; ``mark`` is the driver's placeholder."""

    mark = "?"

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def beat(
        self, key_hash: str, holder: str, run_id: str, kind: str, rate: float, now: float
    ) -> list[Lease]:
        """Renew this lease, drop dead ones; every live lease of the key."""
        m = self.mark
        self._run(
            f"INSERT INTO key_leases VALUES ({m},{m},{m},{m},{m},{m})"
            " ON CONFLICT (key_hash, holder) DO UPDATE SET rate = excluded.rate,"
            " heartbeat = excluded.heartbeat",
            (key_hash, holder, run_id, kind, rate, now),
        )
        self._run(f"DELETE FROM key_leases WHERE heartbeat < {m}", (now - TTL,))
        rows = self._run(
            "SELECT holder, run_id, kind, rate, heartbeat FROM key_leases"
            f" WHERE key_hash = {m} ORDER BY holder",
            (key_hash,),
        )
        return [Lease(str(h), str(r), str(k), float(w), float(b)) for h, r, k, w, b in rows]

    def release(self, key_hash: str, holder: str) -> None:
        m = self.mark
        self._run(
            f"DELETE FROM key_leases WHERE key_hash = {m} AND holder = {m}", (key_hash, holder)
        )


class _SqliteLeases(_Leases):
    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            # used from worker threads, one call at a time (each awaited before the next)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, timeout=5.0, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_TABLE.replace("DOUBLE PRECISION", "REAL"))
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {path}: key leases: {exc}") from None

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self._path}: key leases: {exc}") from None

    def close(self) -> None:
        self._db.close()


class _PgLeases(_Leases):
    mark = "%s"

    def __init__(self, target: PgUrl) -> None:
        import psycopg

        self._target = target
        self._error = psycopg.Error
        try:
            self._db = psycopg.connect(target.url, autocommit=True, connect_timeout=30)
            # the shards of a run start together: one creates the table, the others wait
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                self._db.execute(_TABLE)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {target}: key leases: {type(exc).__name__}") from None

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            cur = self._db.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []
        except self._error as exc:
            raise LedgerError(f"ledger {self._target}: key leases: {type(exc).__name__}") from None

    def close(self) -> None:
        self._db.close()


def open_leases(target: LedgerTarget) -> LeaseTable:
    """The lease table of the ledger at ``target``, on a connection of its own."""
    if isinstance(target, PgUrl):
        return _PgLeases(target)
    return _SqliteLeases(target)
