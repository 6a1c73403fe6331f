"""The ``items`` table: one row per (run, device, command), and the typed writes of a run."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dispatcher.ledger.connection import Connection, translate
from dispatcher.ledger.ops import (
    MarkSending,
    RecordAnswer,
    Register,
    Reopen,
    SetWave,
    SkipRest,
    WriteOp,
)
from dispatcher.ledger.records import (
    SQL_DONE,
    SQL_FAILED,
    SQL_IN_DOUBT,
    SQL_OK,
    SQL_PENDING,
    SQL_SENDING,
    SQL_SKIPPED,
    Answer,
    Delivered,
    InDoubt,
    Queued,
    Status,
)
from dispatcher.ledger.schema import FOREIGN_TABLE


class ItemRows(Connection):
    """Rows of work: written ahead by the run, settled by reconcile, tracked by `track`."""

    def recover_sending(self, run_id: str, owns: Callable[[str], bool] | None = None) -> int:
        """Rows left ``sending`` by a run that died may have been queued: they become in doubt.

        ``owns``: only the rows of these IMEIs (a shard's own). In a ledger the shards of a
        run share, another shard's ``sending`` rows are its requests in flight right now.
        """
        update = (
            f"UPDATE items SET status = {SQL_IN_DOUBT}, error = 'the run stopped while this request was in flight'"
            f" WHERE run_id = ? AND status = {SQL_SENDING}"
        )
        if owns is None:
            return self._write(update, [(run_id,)])
        rows = self._read(
            f"SELECT imei, command FROM items WHERE run_id = ? AND status = {SQL_SENDING}",
            (run_id,),
        ).fetchall()
        mine = [(run_id, imei, command) for imei, command in rows if owns(imei)]
        if not mine:
            return 0
        self._write(update + " AND imei = ? AND command = ?", mine)
        return len(mine)

    def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """Apply a batch of writes in one transaction (one fsync); a result per op.

        The result is the statuses for a ``Register``, None for the others.
        """
        results: list[Any] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for op in ops:
                results.append(self._apply_one(op))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise translate(exc, self.path) from None
        return results

    def _apply_one(self, op: WriteOp) -> dict[str, list[Status]] | None:
        match op:
            case Register(run_id, devices):
                return self._register(run_id, devices)
            case MarkSending(run_id, imei, command, at):
                self._sending(run_id, imei, command, at)
            case RecordAnswer(run_id, answer):
                self._answer(run_id, answer)
            case SkipRest(run_id, imei, after, reason):
                self._skip_rest(run_id, imei, after, reason)
            case Reopen(run_id, rows):
                self._reopen(run_id, rows)
            case SetWave(run_id, wave):
                self._db.execute("UPDATE runs SET wave = ? WHERE run_id = ?", (wave, run_id))
        return None

    def _register(
        self, run_id: str, devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]
    ) -> dict[str, list[Status]]:
        """Insert pending rows for new devices; return every device's statuses by command.

        ``devices`` holds ``(imei, fleet, ops)``, an op being its name or ``(name, request
        hash)``: the hash of what a row sends is stored with it, so a resume can tell when
        a fleet file changed.
        """
        self._db.executemany(
            "INSERT OR IGNORE INTO items (run_id, imei, command, fleet, op, status, request_hash)"
            f" VALUES (?,?,?,?,?,{SQL_PENDING},?)",
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

    def _sending(self, run_id: str, imei: str, command: int, at: float) -> None:
        self._db.execute(
            # sent_at is the latest send (reconcile's "too recent to tell" counts from it);
            # first_sent_at the first (a report's answer times count the whole wait).
            f"UPDATE items SET status = {SQL_SENDING}, sent_at = ?, first_sent_at = coalesce(first_sent_at, ?)"
            " WHERE run_id = ? AND imei = ? AND command = ?",
            (at, at, run_id, imei, command),
        )

    def _answer(self, run_id: str, answer: Answer) -> None:
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

    def _skip_rest(self, run_id: str, imei: str, after: int, reason: str) -> None:
        # Only while the command that failed is still failed: it may have been reopened meanwhile.
        self._db.execute(
            f"UPDATE items SET status = {SQL_SKIPPED}, error = ? WHERE run_id = ? AND imei = ? AND command > ?"
            f" AND status = {SQL_PENDING} AND EXISTS (SELECT 1 FROM items WHERE run_id = ? AND imei = ?"
            f" AND command = ? AND status = {SQL_FAILED})",
            (reason, run_id, imei, after, run_id, imei, after),
        )

    # -- settling in-doubt rows ------------------------------------------------------

    def in_doubt(self, run_id: str) -> list[InDoubt]:
        rows = self._read(
            f"SELECT imei, command, op, fleet, sent_at FROM items WHERE run_id = ? AND status = {SQL_IN_DOUBT}"
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
        self._read(FOREIGN_TABLE, ())
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
            f" AND status = {SQL_IN_DOUBT}",
            [(status.value, uuid, note, run_id, row.imei, row.command)],
        )

    def _reopen(self, run_id: str, rows: Sequence[tuple[str, int]]) -> None:
        """Failed rows whose failure was the platform's, not the device's: send them again."""
        self._db.executemany(
            f"UPDATE items SET status = {SQL_PENDING}, error = 'reopened: the platform was unavailable'"
            f" WHERE run_id = ? AND imei = ? AND command >= ? AND status IN ({SQL_FAILED}, {SQL_SKIPPED})",
            [(run_id, imei, command) for imei, command in rows],
        )

    # -- delivery (track, cancel) ------------------------------------------------------

    def queued(self, run_id: str, *, final: frozenset[str]) -> list[Queued]:
        """Rows the platform queued (``ok`` with a uuid) whose delivery is not final yet."""
        marks = ",".join("?" * len(final))
        rows = self._read(
            f"SELECT imei, command, op, fleet, uuid, send_status FROM items WHERE run_id = ? AND status = {SQL_OK}"
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

    # -- reading -------------------------------------------------------------------

    def settled_devices(self, run_id: str) -> int:
        """Devices of the run whose every row is settled (ok, failed or skipped)."""
        row = self._read(
            "SELECT count(*) FROM (SELECT imei FROM items WHERE run_id = ? GROUP BY imei"
            f" HAVING sum(status NOT IN ({SQL_DONE})) = 0)",
            (run_id,),
        ).fetchone()
        return int(row[0])

    def stored_requests(
        self, run_id: str, imeis: Sequence[str]
    ) -> list[tuple[str, int, str | None, str, int]]:
        """``(imei, command, request hash, status, ever sent: 1 or 0)`` of these devices' rows."""
        marks = ",".join("?" * len(imeis))
        # rows as SQLite gives them: a resume reads a million, no tuple rebuilt per row
        rows: list[tuple[str, int, str | None, str, int]] = self._read(
            "SELECT imei, command, request_hash, status, sent_at IS NOT NULL FROM items"
            f" WHERE run_id = ? AND imei IN ({marks})",
            (run_id, *imeis),
        ).fetchall()
        return rows

    def store_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """Record the request hash of rows that have none yet (or were never sent)."""
        self._write(
            "UPDATE items SET request_hash = ? WHERE run_id = ? AND imei = ? AND command = ?"
            f" AND sent_at IS NULL AND status = {SQL_PENDING}",
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
            f" AND status IN ({SQL_DONE})",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def keep_as_sent(self, run_id: str, rows: Sequence[tuple[str, int]], reason: str) -> int:
        """Devices whose fleet row changed after they were sent: from ``(imei, command)``
        on, their unsent rows are not sent (skipped, with ``reason``)."""
        return self._write(
            f"UPDATE items SET status = {SQL_SKIPPED}, error = ? WHERE run_id = ? AND imei = ?"
            f" AND command >= ? AND status = {SQL_PENDING}",
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
