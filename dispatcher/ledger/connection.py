"""One SQLite ledger file: the connection, its pragmas, the schema check, the file lock.

The base of the SQLite backend's classes (runs, items, report queries); nothing here
knows what a run or a row is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from dispatcher.errors import LedgerError, RunRefused
from dispatcher.ledger.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
)


def translate(exc: sqlite3.Error, path: Path) -> LedgerError:
    text = str(exc)
    if "readonly" in text:
        return LedgerError(
            f"ledger {path} is read-only: nothing can be recorded, so nothing is sent"
        )
    if "disk is full" in text or "disk I/O" in text:
        return LedgerError(
            f"ledger {path}: {text}; stopping before sending what cannot be recorded"
        )
    if "not a database" in text or "malformed" in text:
        return LedgerError(f"{path} is not a usable SQLite ledger ({text})")
    return LedgerError(f"ledger {path}: {text}")


class Connection:
    """A ledger file opened (created and migrated when needed). One writing thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise translate(exc, path) from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise translate(exc, path) from None
        except LedgerError:
            self._db.close()
            raise

    def _setup(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and tables:
            raise LedgerError(f"{self.path} is an SQLite file of another program, not a ledger")
        # WAL: readers (report, export) never block the run's writer.
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: with WAL, NORMAL may lose the last commits on power loss, and a lost
        # "sending" mark would mean a duplicate command on the next run.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        if not tables:
            db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version in MIGRATIONS:
            db.execute("BEGIN IMMEDIATE")
            # read again under the write lock: another process may have migrated meanwhile
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in MIGRATIONS:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} has ledger schema {version}; this version reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self._db.close()
        self.unlock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one run at a time ---------------------------------------------------------

    def lock(self, run_id: str, shard: int | None = None) -> None:
        """Refuse a second process on this ledger; the kernel frees the lock if we die.

        A file has one owner whatever the run or shard: each shard keeps its own file.
        Locking again (another run of the same command) keeps the lock already held.
        """
        if self._lock_fd is not None:
            return
        lock_path = Path(f"{self.path}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunRefused(
                f"ledger {self.path} is in use by {holder}; wait for it to finish"
                f" (`onenet-dispatch status {self.path}` shows where it stands)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} (run {run_id})".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- helpers -------------------------------------------------------------------

    def _read(self, sql: str, args: Iterable[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise translate(exc, self.path) from None
        return cur.rowcount

    # -- reports: aggregates computed by SQLite --------------------------------------
    # A report over a million rows must take seconds and flat memory, so every query
    # here groups or limits in SQL: none returns one Python object per ledger row.

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the ledger, even while a run writes to it.

        A report makes several queries; without one read transaction around them, a
        running writer could commit between two, and the totals would not add up.
        Not for the connection a run's writer thread is using meanwhile.
        """
        if self._db.in_transaction:
            yield
            return
        self._read("BEGIN", ())
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("COMMIT")
