"""The results ledger: one SQLite file, the single place that knows SQL.

A row per (run id, IMEI, command index) says where that work item stands; a
``runs`` row per run holds the job's hash, the window it resolved at its first
start, and its start and end. Rows are written ahead: a row is durably ``sending``
before its request leaves, so a run that dies leaves no request unaccounted for.
A ``foreign_commands`` table, created the first time reconciliation sees one, keeps
the other applications' commands found on a run's devices (never ours; counted by
``report``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dispatcher.errors import InputError, LedgerError, RunRefused

APPLICATION_ID = 0x4F4E4454  # "ONDT": marks the file as ours, so a foreign SQLite file is refused
SCHEMA_VERSION = 2
# What each older schema needs to become the current one: columns added, never removed,
# so a ledger written by an older version keeps every row it holds.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE items ADD COLUMN first_sent_at REAL",
        "ALTER TABLE items ADD COLUMN request_hash TEXT",
        "UPDATE items SET first_sent_at = sent_at",
    ),
}


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    OK = "ok"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    SKIPPED = "skipped"


DONE = frozenset({Status.OK, Status.FAILED, Status.SKIPPED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    job_path TEXT NOT NULL,
    job_hash TEXT NOT NULL,
    target TEXT NOT NULL,
    valid_time TEXT,
    expired_time TEXT NOT NULL,
    first_started_at REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    reason TEXT,
    devices INTEGER NOT NULL DEFAULT 0,
    waves INTEGER NOT NULL DEFAULT 1,
    wave INTEGER NOT NULL DEFAULT 0,
    confirmed_wave INTEGER NOT NULL DEFAULT 0,
    rollout TEXT,
    inputs_hash TEXT
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL,
    imei TEXT NOT NULL,
    command INTEGER NOT NULL,
    fleet TEXT NOT NULL,
    op TEXT NOT NULL,
    status TEXT NOT NULL,
    uuid TEXT,
    errno INTEGER,
    error TEXT,
    http_status INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at REAL,
    answered_at REAL,
    send_status TEXT,
    confirm_status TEXT,
    cmd_result TEXT,
    send_time TEXT,
    confirm_time TEXT,
    tracked_at REAL,
    first_sent_at REAL,
    request_hash TEXT,
    UNIQUE (run_id, imei, command)
);
CREATE INDEX IF NOT EXISTS items_by_status ON items (run_id, status);
CREATE INDEX IF NOT EXISTS items_by_uuid ON items (uuid) WHERE uuid IS NOT NULL;
"""


_FOREIGN_TABLE = """
CREATE TABLE IF NOT EXISTS foreign_commands (
    run_id TEXT NOT NULL,
    imei TEXT NOT NULL,
    uuid TEXT NOT NULL,
    type TEXT,
    create_time TEXT,
    seen_at REAL NOT NULL,
    PRIMARY KEY (run_id, uuid)
)
"""


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    job_name: str
    job_path: str
    job_hash: str
    target: str
    valid_time: str | None  # ISO 8601 with zone
    expired_time: str
    first_started_at: float
    started_at: float
    ended_at: float | None
    state: str
    reason: str | None
    devices: int = 0  # devices in the job's fleets at the last start
    waves: int = 1
    wave: int = 0  # the wave in progress (0-based)
    confirmed_wave: int = 0  # waves up to this one may start without asking
    rollout: str | None = None  # the job's rollout controls (JSON), for `status`
    inputs_hash: str | None = None  # job and fleet files of the last run that left nothing to send


@dataclass(frozen=True, slots=True)
class InDoubt:
    """An in-doubt row: the request may or may not have been queued."""

    imei: str
    command: int
    op: str
    fleet: str
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class Queued:
    """A command the platform queued: what `track` asks about and `cancel` takes back."""

    imei: str
    command: int
    op: str
    fleet: str
    uuid: str
    send_status: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where a queued command stands on the platform."""

    imei: str
    command: int
    send_status: str
    confirm_status: str | None
    cmd_result: str | None
    send_time: str | None
    confirm_time: str | None
    tracked_at: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What to record for one answered work item."""

    imei: str
    command: int
    status: Status
    uuid: str | None
    errno: int | None
    error: str | None
    http_status: int | None
    attempts: int
    answered_at: float


def _translate(exc: sqlite3.Error, path: Path) -> LedgerError:
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


class Ledger:
    """A ledger file. Writes come from one thread at a time (the run's writer task)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise _translate(exc, path) from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise _translate(exc, path) from None
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
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version in _MIGRATIONS:
            db.execute("BEGIN IMMEDIATE")
            # read again under the write lock: another process may have migrated meanwhile
            version = db.execute("PRAGMA user_version").fetchone()[0]
            while version in _MIGRATIONS:
                for statement in _MIGRATIONS[version]:
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

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one run at a time ---------------------------------------------------------

    def lock(self, run_id: str) -> None:
        """Refuse a second process on this ledger; the kernel frees the lock if we die."""
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

    # -- runs ----------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord | None:
        row = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunRecord(*row) if row is not None else None

    def require_run(self, run_id: str) -> RunRecord:
        """The run's record; InputError naming the runs there are when it is not in this ledger."""
        record = self.run(run_id)
        if record is None:
            known = ", ".join(r.run_id for r in self.runs()) or "none"
            raise InputError(f'no run "{run_id}" in {self.path} (runs: {known})')
        return record

    def runs(self) -> list[RunRecord]:
        return [
            RunRecord(*row)
            for row in self._read("SELECT * FROM runs ORDER BY first_started_at", ())
        ]

    def start_run(self, record: RunRecord) -> None:
        """Insert a new run, or mark an existing one started again."""
        self._write(
            """INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at,
               ended_at = NULL, state = excluded.state, reason = NULL, devices = excluded.devices,
               waves = excluded.waves, rollout = excluded.rollout, inputs_hash = NULL""",
            [tuple(getattr(record, f) for f in RunRecord.__slots__)],
        )

    def confirm_wave(self, run_id: str, wave: int) -> None:
        """Let waves up to ``wave`` start (the answer to a "confirm" pause)."""
        self._write(
            "UPDATE runs SET confirmed_wave = max(confirmed_wave, ?) WHERE run_id = ?",
            [(wave, run_id)],
        )

    def end_run(
        self,
        run_id: str,
        ended_at: float,
        state: str,
        reason: str | None,
        inputs_hash: str | None = None,
    ) -> None:
        self._write(
            "UPDATE runs SET ended_at = ?, state = ?, reason = ?, inputs_hash = ? WHERE run_id = ?",
            [(ended_at, state, reason, inputs_hash, run_id)],
        )

    def recover_sending(self, run_id: str) -> int:
        """Rows left ``sending`` by a run that died may have been queued: they become in doubt."""
        return self._write(
            "UPDATE items SET status = 'in_doubt', error = 'the run stopped while this request was in flight'"
            " WHERE run_id = ? AND status = 'sending'",
            [(run_id,)],
        )

    # -- batched writes from the writer thread ---------------------------------------

    def apply(self, ops: Sequence[tuple[str, Any]]) -> list[Any]:
        """Apply a batch of operations in one transaction (one fsync); a result per op."""
        results: list[Any] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for name, args in ops:
                results.append(getattr(self, f"_op_{name}")(*args))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise _translate(exc, self.path) from None
        return results

    def _op_register(
        self, run_id: str, devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]
    ) -> dict[str, list[Status]]:
        """Insert pending rows for new devices; return every device's statuses by command.

        ``devices`` holds ``(imei, fleet, ops)``, an op being its name or ``(name, request
        hash)``: the hash of what a row sends is stored with it, so a resume can tell when
        a fleet file changed.
        """
        self._db.executemany(
            "INSERT OR IGNORE INTO items (run_id, imei, command, fleet, op, status, request_hash)"
            " VALUES (?,?,?,?,?,'pending',?)",
            [
                (run_id, imei, i, fleet, *((op, None) if isinstance(op, str) else op))
                for imei, fleet, ops in devices
                for i, op in enumerate(ops)
            ],
        )
        out: dict[str, list[Status]] = {
            imei: [Status.PENDING] * len(ops) for imei, _, ops in devices
        }
        marks = ",".join("?" * len(out))
        rows = self._db.execute(
            f"SELECT imei, command, status FROM items WHERE run_id = ? AND imei IN ({marks})",
            (run_id, *out),
        )
        for imei, command, status in rows:
            statuses = out[imei]
            if command < len(statuses):
                statuses[command] = Status(status)
        return out

    def _op_sending(self, run_id: str, imei: str, command: int, at: float) -> None:
        self._db.execute(
            # sent_at is the latest send (reconcile's "too recent to tell" counts from it);
            # first_sent_at the first (a report's answer times count the whole wait).
            "UPDATE items SET status = 'sending', sent_at = ?, first_sent_at = coalesce(first_sent_at, ?)"
            " WHERE run_id = ? AND imei = ? AND command = ?",
            (at, at, run_id, imei, command),
        )

    def _op_answer(self, run_id: str, answer: Answer) -> None:
        self._db.execute(
            "UPDATE items SET status = ?, uuid = ?, errno = ?, error = ?, http_status = ?,"
            " attempts = attempts + ?, answered_at = ? WHERE run_id = ? AND imei = ? AND command = ?",
            (
                answer.status.value,
                answer.uuid,
                answer.errno,
                answer.error,
                answer.http_status,
                answer.attempts,
                answer.answered_at,
                run_id,
                answer.imei,
                answer.command,
            ),
        )

    def _op_skip_rest(self, run_id: str, imei: str, after: int, reason: str) -> None:
        # Only while the command that failed is still failed: it may have been reopened meanwhile.
        self._db.execute(
            "UPDATE items SET status = 'skipped', error = ? WHERE run_id = ? AND imei = ? AND command > ?"
            " AND status = 'pending' AND EXISTS (SELECT 1 FROM items WHERE run_id = ? AND imei = ?"
            " AND command = ? AND status = 'failed')",
            (reason, run_id, imei, after, run_id, imei, after),
        )

    # -- settling in-doubt rows ------------------------------------------------------

    def in_doubt(self, run_id: str) -> list[InDoubt]:
        rows = self._read(
            "SELECT imei, command, op, fleet, sent_at FROM items WHERE run_id = ? AND status = 'in_doubt'"
            " ORDER BY rowid",
            (run_id,),
        )
        return [InDoubt(*row) for row in rows]

    def uuid_known(self, uuid: str) -> bool:
        return (
            self._read("SELECT 1 FROM items WHERE uuid = ? LIMIT 1", (uuid,)).fetchone() is not None
        )

    def known_uuids(self) -> set[str]:
        """Every uuid the ledger holds, stripped (the platform's pages pad some with spaces)."""
        rows = self._read("SELECT uuid FROM items WHERE uuid IS NOT NULL", ())
        return {uuid.strip() for (uuid,) in rows}

    def note_foreign(
        self, run_id: str, seen: Sequence[tuple[str, str, str, str | None]], at: float
    ) -> None:
        """Remember other applications' commands (imei, uuid, type, create_time) seen on our devices.

        Its own table, created on first use: an additive change that older ledgers and
        older versions of the tool simply do not have or read.
        """
        self._read(_FOREIGN_TABLE, ())
        self._write(
            "INSERT OR IGNORE INTO foreign_commands (run_id, imei, uuid, type, create_time, seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, imei, uuid, kind, created, at) for imei, uuid, kind, created in seen],
        )

    def foreign_seen(self, run_id: str) -> int:
        """How many other applications' commands reconciliation saw on this run's devices."""
        exists = self._read(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'foreign_commands'", ()
        ).fetchone()
        if exists is None:
            return 0
        row = self._read("SELECT count(*) FROM foreign_commands WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def settle(
        self, run_id: str, row: InDoubt, status: Status, uuid: str | None, note: str
    ) -> None:
        """Settle an in-doubt row: ``ok`` with the uuid found, ``pending`` (nothing was queued),
        or still ``in_doubt`` with the reason in its error."""
        self._write(
            "UPDATE items SET status = ?, uuid = ?, error = ? WHERE run_id = ? AND imei = ? AND command = ?"
            " AND status = 'in_doubt'",
            [(status.value, uuid, note, run_id, row.imei, row.command)],
        )

    def _op_wave(self, run_id: str, wave: int) -> None:
        self._db.execute("UPDATE runs SET wave = ? WHERE run_id = ?", (wave, run_id))

    def _op_reopen(self, run_id: str, rows: Sequence[tuple[str, int]]) -> None:
        """Failed rows whose failure was the platform's, not the device's: send them again."""
        self._db.executemany(
            "UPDATE items SET status = 'pending', error = 'reopened: the platform was unavailable'"
            " WHERE run_id = ? AND imei = ? AND command >= ? AND status IN ('failed', 'skipped')",
            [(run_id, imei, command) for imei, command in rows],
        )

    # -- delivery (track, cancel) ------------------------------------------------------

    def queued(self, run_id: str, *, final: frozenset[str]) -> list[Queued]:
        """Rows the platform queued (``ok`` with a uuid) whose delivery is not final yet."""
        marks = ",".join("?" * len(final))
        rows = self._read(
            "SELECT imei, command, op, fleet, uuid, send_status FROM items WHERE run_id = ? AND status = 'ok'"
            f" AND uuid IS NOT NULL AND (send_status IS NULL OR send_status NOT IN ({marks})) ORDER BY rowid",
            (run_id, *sorted(final)),
        )
        return [Queued(*row) for row in rows]

    def record_delivery(self, run_id: str, rows: Sequence[Delivered]) -> None:
        """Where queued commands stand on the platform, as `track` or `cancel` found them."""
        self._write(
            "UPDATE items SET send_status = ?, confirm_status = ?, cmd_result = ?, send_time = ?,"
            " confirm_time = ?, tracked_at = ? WHERE run_id = ? AND imei = ? AND command = ?",
            [
                (
                    d.send_status,
                    d.confirm_status,
                    d.cmd_result,
                    d.send_time,
                    d.confirm_time,
                    d.tracked_at,
                    run_id,
                    d.imei,
                    d.command,
                )
                for d in rows
            ],
        )

    def delivery_counts(self, run_id: str) -> dict[str, int]:
        """Queued rows by delivery state; "untracked" for those never asked about."""
        rows = self._read(
            "SELECT coalesce(send_status, 'untracked'), count(*) FROM items WHERE run_id = ? AND status = 'ok'"
            " GROUP BY 1",
            (run_id,),
        )
        return {state: n for state, n in rows}

    def delivery_by_fleet(self, run_id: str) -> list[tuple[str, str, int]]:
        """Queued rows per fleet and delivery state."""
        rows = self._read(
            "SELECT fleet, coalesce(send_status, 'untracked'), count(*) FROM items WHERE run_id = ?"
            " AND status = 'ok' GROUP BY 1, 2 ORDER BY 1, 2",
            (run_id,),
        )
        return [(fleet, state, n) for fleet, state, n in rows]

    def set_state(self, run_id: str, state: str, reason: str | None) -> None:
        self._write(
            "UPDATE runs SET state = ?, reason = ? WHERE run_id = ?", [(state, reason, run_id)]
        )

    # -- reading -------------------------------------------------------------------

    def settled_devices(self, run_id: str) -> int:
        """Devices of the run whose every row is settled (ok, failed or skipped)."""
        row = self._read(
            "SELECT count(*) FROM (SELECT imei FROM items WHERE run_id = ? GROUP BY imei"
            " HAVING sum(status NOT IN ('ok', 'failed', 'skipped')) = 0)",
            (run_id,),
        ).fetchone()
        return int(row[0])

    def stored_requests(
        self, run_id: str, imeis: Sequence[str]
    ) -> list[tuple[str, int, str | None, str, bool]]:
        """``(imei, command, request hash, status, ever sent)`` of these devices' rows."""
        marks = ",".join("?" * len(imeis))
        rows = self._read(
            "SELECT imei, command, request_hash, status, sent_at IS NOT NULL FROM items"
            f" WHERE run_id = ? AND imei IN ({marks})",
            (run_id, *imeis),
        )
        return [
            (imei, command, digest, status, bool(sent))
            for imei, command, digest, status, sent in rows
        ]

    def store_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """Record the request hash of rows that have none yet (or were never sent)."""
        self._write(
            "UPDATE items SET request_hash = ? WHERE run_id = ? AND imei = ? AND command = ?"
            " AND sent_at IS NULL AND status = 'pending'",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def fill_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """Rows from a ledger older than request hashes get the hash of today's rendering."""
        self._write(
            "UPDATE items SET request_hash = ? WHERE run_id = ? AND imei = ? AND command = ?"
            " AND request_hash IS NULL",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def accept_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """Settled rows take the hash of today's rendering: an accepted change is not refused again.

        Only settled rows: an in-doubt row keeps the hash of what was sent, which is what
        reconcile compares the platform's history with.
        """
        self._write(
            "UPDATE items SET request_hash = ? WHERE run_id = ? AND imei = ? AND command = ?"
            " AND status IN ('ok', 'failed', 'skipped')",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def keep_as_sent(self, run_id: str, rows: Sequence[tuple[str, int]], reason: str) -> int:
        """Devices whose fleet row changed after they were sent: from ``(imei, command)``
        on, their unsent rows are not sent (skipped, with ``reason``)."""
        return self._write(
            "UPDATE items SET status = 'skipped', error = ? WHERE run_id = ? AND imei = ?"
            " AND command >= ? AND status = 'pending'",
            [(reason, run_id, imei, command) for imei, command in rows],
        )

    def counts(self, run_id: str) -> dict[str, int]:
        rows = self._read(
            "SELECT status, count(*) FROM items WHERE run_id = ? GROUP BY status", (run_id,)
        )
        return {status: n for status, n in rows}

    def items(self, run_id: str | None = None) -> Iterator[sqlite3.Row]:
        """Every row of a run (or of all runs), in the order devices were planned."""
        self._db.row_factory = sqlite3.Row
        try:
            if run_id is None:
                cur = self._read("SELECT * FROM items ORDER BY rowid", ())
            else:
                cur = self._read("SELECT * FROM items WHERE run_id = ? ORDER BY rowid", (run_id,))
        finally:
            self._db.row_factory = None
        yield from cur

    # -- helpers -------------------------------------------------------------------

    def _read(self, sql: str, args: Iterable[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(args))
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise _translate(exc, self.path) from None
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

    def rollup_counts(
        self, run_id: str
    ) -> list[tuple[str | None, int | None, str | None, str, int]]:
        """``(fleet, command, op, status, rows)`` per fleet and command, and rolled up.

        Like SQL's GROUPING SETS: a row with ``fleet`` None totals every fleet (per
        command), one with ``command`` and ``op`` None totals every command (per
        fleet), and one with all three None is the run's total per status. The
        columns are NOT NULL in ``items``, so None means "all" and nothing else.
        """
        # One pass over the run's rows: sorting a million rows for GROUP BY is the cost
        # (about 2 s), so the totals are summed from the small per-cell result instead
        # of grouping the rows three more times. MATERIALIZED keeps SQLite from running
        # the CTE again for each UNION arm.
        rows = self._read(
            """WITH cells AS MATERIALIZED (
                 SELECT fleet, command, op, status, count(*) AS n FROM items
                 WHERE run_id = ? GROUP BY fleet, command, op, status)
               SELECT fleet, command, op, status, n FROM cells
               UNION ALL SELECT fleet, NULL, NULL, status, sum(n) FROM cells GROUP BY fleet, status
               UNION ALL SELECT NULL, command, op, status, sum(n) FROM cells
                 GROUP BY command, op, status
               UNION ALL SELECT NULL, NULL, NULL, status, sum(n) FROM cells GROUP BY status""",
            (run_id,),
        )
        return [(fleet, command, op, status, n) for fleet, command, op, status, n in rows]

    def error_groups(
        self, run_id: str, limit: int
    ) -> list[tuple[int | None, str | None, int, int]]:
        """``(errno, error, failed rows, in-doubt rows)``, the ``limit`` largest groups first.

        HTTP-level failures have no errno and group by their text alone. Skipped rows
        are left out: their text only names the command that failed before them.
        """
        rows = self._read(
            "SELECT errno, error, sum(status = 'failed'), sum(status = 'in_doubt') FROM items"
            " WHERE run_id = ? AND status IN ('failed', 'in_doubt')"
            " GROUP BY errno, error ORDER BY count(*) DESC, errno, error LIMIT ?",
            (run_id, limit),
        )
        return [(errno, error, failed, in_doubt) for errno, error, failed, in_doubt in rows]

    def slowest_answers(
        self, run_id: str, limit: int
    ) -> list[tuple[str, str, int, str, str, float, int]]:
        """``(imei, fleet, command, op, status, seconds, attempts)``, slowest first.

        Seconds run from the first send to the recorded answer, so retries and their
        backoff count: that is the wait the operator saw.
        """
        # ORDER BY ... LIMIT keeps only ``limit`` rows in SQLite's sorter, not the whole run.
        rows = self._read(
            "SELECT imei, fleet, command, op, status,"
            " answered_at - coalesce(first_sent_at, sent_at) AS seconds, attempts"
            " FROM items WHERE run_id = ? AND sent_at IS NOT NULL AND answered_at IS NOT NULL"
            " ORDER BY seconds DESC, rowid LIMIT ?",
            (run_id, limit),
        )
        return [
            (imei, fleet, command, op, status, seconds, attempts)
            for imei, fleet, command, op, status, seconds, attempts in rows
        ]

    def not_ok_rows(
        self, run_id: str, per_cell: int
    ) -> Iterator[tuple[str, int, str, str, int | None, str | None]]:
        """``(fleet, command, imei, status, errno, error)``: at most ``per_cell`` rows per
        (fleet, command) that are failed, in doubt or skipped; failed first, then in
        doubt, then skipped, each in planned order.
        """
        # One pass with a window function instead of a query per (fleet, command): the
        # status index cannot narrow by fleet, so per-cell queries would each re-read
        # every failed row of the run.
        cur = self._read(
            "SELECT fleet, command, imei, status, errno, error FROM ("
            " SELECT fleet, command, imei, status, errno, error, row_number() OVER ("
            "  PARTITION BY fleet, command ORDER BY"
            "  CASE status WHEN 'failed' THEN 0 WHEN 'in_doubt' THEN 1 ELSE 2 END, rowid) AS k"
            " FROM items WHERE run_id = ? AND status IN ('failed', 'in_doubt', 'skipped'))"
            " WHERE k <= ? ORDER BY fleet, command, k",
            (run_id, per_cell),
        )
        try:
            yield from cur
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None


def read_run(path: Path, run_id: str) -> RunRecord | None:
    """A run's record read on a connection of its own (safe beside a running writer)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    except sqlite3.Error as exc:
        raise _translate(exc, path) from None
    finally:
        db.close()
    return RunRecord(*row) if row is not None else None


def open_existing(path: Path) -> Ledger:
    """A ledger that must already exist (report, export, track, ...): never creates one."""
    if not path.is_file():
        raise InputError(f"{path}: no such ledger")
    return Ledger(path)
