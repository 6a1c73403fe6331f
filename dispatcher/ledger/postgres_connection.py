"""The PostgreSQL backend's session: connecting, the schema check, run locks, snapshots.

The base of the backend's classes (``postgres``, ``postgres_queries``), as ``connection``
is of the SQLite backend's. The backend is a ledger shared by the processes (shards,
timers) of many runs; it is the same ``LedgerStore`` as ``sqlite.Ledger``, with the same
guarantees:

- durable writes: ``synchronous_commit`` is set ``on`` for the session, whatever the
  server's default, so a commit returns only once its WAL record is flushed (a
  ``sending`` mark lost to a crash would mean a duplicate command);
- ``apply`` is one transaction;
- ``lock`` is a session advisory lock per run (and per shard): two processes can never
  own one run's rows, and the server frees the lock when the process dies and its
  connection drops (kill -9 included), as the kernel frees SQLite's file lock;
- ``snapshot`` is a REPEATABLE READ transaction: a report's queries see one state.

The driver is psycopg 3, used through its synchronous API: the ``LedgerStore`` protocol
is synchronous, and the run's writer commits in a worker thread (as with SQLite), where
libpq waits on the network with the GIL released (docs/scale-out.md says why and what
it measured). One connection per ledger; a mutex keeps the writer thread's transaction
and another thread's read from interleaving on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Self

import psycopg
from psycopg.pq import TransactionStatus

from dispatcher.errors import InputError, LedgerError, RunRefused
from dispatcher.ledger.postgres_schema import MIGRATIONS, SCHEMA, SCHEMA_LOCK
from dispatcher.ledger.schema import APPLICATION_ID, SCHEMA_VERSION
from dispatcher.pgurl import PgUrl

DEAD_HOLDER_WAIT = 10.0  # seconds the server may take to end a killed process's session
CONNECT_TIMEOUT = 10  # seconds, unless the URL or PGCONNECT_TIMEOUT says otherwise


def translate(exc: psycopg.Error, target: PgUrl) -> LedgerError:
    """A driver error as a LedgerError naming the ledger (its URL masked)."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    if isinstance(
        exc, psycopg.errors.ReadOnlySqlTransaction | psycopg.errors.InsufficientPrivilege
    ):
        return LedgerError(f"ledger {target} cannot be written ({text}): nothing is sent")
    if isinstance(exc, psycopg.errors.DiskFull):
        return LedgerError(
            f"ledger {target}: {text}; stopping before sending what cannot be recorded"
        )
    return LedgerError(f"ledger {target}: {text}")


NO_HOLDER = "another process"  # the lock's holder could not be found


def lock_key(run_id: str, shard: int | None = None) -> int:
    """The advisory lock key of a run (``shard`` None) or of one shard of it: a signed 64-bit
    hash, the same on every machine and Python version (hash() is salted per process)."""
    text = f"onenet-dispatch\0{run_id}" + ("" if shard is None else f"\0shard {shard}")
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True
    )


def _who() -> str:
    """This process as a lock holder is named: what a refused process prints."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _dead_here(holder: str) -> bool:
    """Whether ``holder`` (``pid N on HOST ...``) is a process of this machine that is gone."""
    match = re.match(r"pid (\d+) on (\S+)", holder)
    if match is None or match.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class PgConnection:
    """A PostgreSQL ledger opened: its session, schema check, run locks and snapshots.

    Writes come from one thread at a time; the mutex serialises every use of the session.
    """

    def __init__(self, target: PgUrl, *, create: bool = True) -> None:
        self.path = target
        self._mutex = threading.RLock()
        self._locks: list[tuple[int, bool]] = []  # (key, shared) held by this session
        extra: dict[str, Any] = {}
        if "connect_timeout" not in target.url and not os.environ.get("PGCONNECT_TIMEOUT"):
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in target.url and not os.environ.get("PGAPPNAME"):
            extra["application_name"] = _who()
        try:
            self._db = psycopg.connect(target.url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise translate(exc, target) from None
        try:
            # A write returns only once durable, whatever the server's default.
            self._db.execute("SET synchronous_commit = on")
            # A run's lock lives as long as its session. A process killed on a live machine
            # closes its socket and the server ends the session at once; a machine that
            # vanishes sends nothing, and without keepalives the server would hold the
            # lock (and refuse the rerun) for the kernel's default two hours: with these
            # it gives up on the peer after about two minutes.
            self._db.execute(
                "SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10;"
                " SET tcp_keepalives_count = 6"
            )
            self._setup(create)
        except psycopg.Error as exc:
            self._db.close()
            raise translate(exc, target) from None
        except (LedgerError, InputError):
            self._db.close()
            raise

    def _setup(self, create: bool) -> None:
        db = self._db
        with db.transaction():
            # Shards starting together: one creates the tables, the others wait and see them.
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            row = db.execute("SELECT to_regclass('ledger_schema') IS NOT NULL").fetchone()
            if row is None or not row[0]:
                if not create:
                    raise InputError(f"{self.path}: no ledger in this database")
                theirs = db.execute(
                    "SELECT to_regclass('runs') IS NOT NULL OR to_regclass('items') IS NOT NULL"
                ).fetchone()
                if theirs is not None and theirs[0]:
                    raise LedgerError(
                        f"{self.path} holds tables (runs, items) of another program, not a ledger"
                    )
                for statement in SCHEMA:
                    db.execute(statement)
                return
            marks = db.execute("SELECT application_id, version FROM ledger_schema").fetchone()
            if marks is not None and marks[0] == APPLICATION_ID and marks[1] in MIGRATIONS:
                # under the schema lock: shards starting together migrate once
                version = marks[1]
                while version in MIGRATIONS:
                    for statement in MIGRATIONS[version]:
                        db.execute(statement)
                    version += 1
                db.execute("UPDATE ledger_schema SET version = %s", (version,))
                marks = (marks[0], version)
        if marks is None or marks[0] != APPLICATION_ID:
            raise LedgerError(f"{self.path} holds a ledger_schema table of another program")
        if marks[1] != SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} has ledger schema {marks[1]}; this version reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        # Closing the session would free its advisory locks too, but the server ends a
        # session after the client has gone: a process that opens the run right after
        # this close could still find it held. Unlocking first is answered only once the
        # locks are free.
        if not self._db.closed:
            self.unlock()
        self._locks.clear()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one run at a time ---------------------------------------------------------

    def lock(self, run_id: str, shard: int | None = None) -> None:
        """Own the run (``shard`` None) or one shard of it, until close or process death.

        A whole-run owner takes the run's key exclusively; a shard takes it shared and
        its own key exclusively: shards of one run go side by side, but never beside a
        process that owns the whole run (a run without --shard, cancel, reconcile).
        """
        wanted = [(lock_key(run_id), shard is not None)]
        if shard is not None:
            wanted.append((lock_key(run_id, shard), False))
        with self._mutex:
            for key, shared in wanted:
                if (key, shared) in self._locks:
                    continue
                function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
                got = self._try_lock(function, key)
                if not got:
                    holder = self._holder(key)
                    self.unlock()
                    raise RunRefused(
                        f"ledger {self.path} is in use by {holder}; wait for it to finish"
                        f" (`onenet-dispatch status {self.path}` shows where it stands)"
                    )
                self._locks.append((key, shared))
            who = f"{_who()} (run {run_id}" + (")" if shard is None else f", shard {shard})")
            # application_name is what a refused process reads to name the holder.
            self._execute("SELECT set_config('application_name', %s, false)", (who[:63],))

    def _try_lock(self, function: str, key: int) -> bool:
        """Take the lock; wait for it only while its holder is a dead process of this machine.

        A process killed a moment ago has closed its connection, but the server may not
        have ended its session yet: the rerun (the supervisor's retry, the kill -9 tests)
        waits for that, a few milliseconds, instead of being refused. A live holder, or
        one on another machine, is refused at once, as with SQLite.
        """
        deadline = time.monotonic() + DEAD_HOLDER_WAIT
        while True:
            if self._value(f"SELECT {function}(%s)", (key,)):
                return True
            holder = self._holder(key)
            # No holder left: it let go between the two queries; try again.
            gone = holder == NO_HOLDER
            if not (gone or _dead_here(holder)) or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _holder(self, key: int) -> str:
        row = self._fetch(
            "SELECT a.application_name, l.pid FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.pid <> pg_backend_pid()"
            " LIMIT 1",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        )
        if not row:
            return NO_HOLDER
        name, pid = row[0]
        if name and str(name).startswith("pid "):
            return str(name)
        return f"another process (server backend {pid})"

    def unlock(self) -> None:
        with self._mutex:
            for key, shared in reversed(self._locks):
                function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
                with contextlib.suppress(LedgerError):
                    self._execute(f"SELECT {function}(%s)", (key,))
            self._locks.clear()

    # -- helpers -------------------------------------------------------------------

    def _fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except psycopg.Error as exc:
                raise translate(exc, self.path) from None

    def _value(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self._fetch(sql, args)
        return rows[0][0] if rows else None

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        """A statement whose result is not read (BEGIN, SET, a lock function's void)."""
        with self._mutex:
            try:
                self._db.execute(sql, tuple(args))
            except psycopg.Error as exc:
                raise translate(exc, self.path) from None

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """Rows of one statement in one transaction; how many rows it changed."""
        with self._mutex:
            try:
                with self._db.transaction(), self._db.cursor() as cur:
                    cur.executemany(sql, rows)
                    return max(cur.rowcount, 0)
            except psycopg.Error as exc:
                raise translate(exc, self.path) from None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the ledger, even while runs write to it."""
        with self._mutex:
            if self._db.info.transaction_status != TransactionStatus.IDLE:
                yield
                return
            self._execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):
                    self._db.execute("COMMIT")
