"""The PostgreSQL backend: a ledger shared by the processes (shards, timers) of many runs.

The same ``LedgerStore`` as ``sqlite.Ledger``, with the same guarantees:

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

Built like the SQLite backend: ``postgres_connection`` (session, schema, locks),
``postgres_queries`` (the report's aggregates), and here the runs and rows of work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from dispatcher.errors import InputError
from dispatcher.ledger.ops import (
    MarkSending,
    RecordAnswer,
    Register,
    Reopen,
    SetWave,
    SkipRest,
    WriteOp,
)
from dispatcher.ledger.postgres_connection import translate
from dispatcher.ledger.postgres_queries import PgReportQueries
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
    RunRecord,
    Status,
)
from dispatcher.ledger.store import LedgerStore

# The text of the run's columns in table order, for INSERT and RunRecord(*row).
_RUN_COLUMNS = RunRecord.__slots__


# sent_at is the latest send, first_sent_at the first (as the SQLite backend's items).
MARK_SENDING = (
    f"UPDATE items SET status = {SQL_SENDING}, sent_at = %s,"
    " first_sent_at = coalesce(first_sent_at, %s) WHERE run_id = %s AND imei = %s AND command = %s"
)
RECORD_ANSWER = (
    "UPDATE items SET status = %s, uuid = %s, errno = %s, error = %s, http_status = %s,"
    " attempts = attempts + %s, answered_at = %s WHERE run_id = %s AND imei = %s AND command = %s"
)


def _sending_args(op: MarkSending) -> tuple[Any, ...]:
    return (op.at, op.at, op.run_id, op.imei, op.command)


def _answer_args(op: RecordAnswer) -> tuple[Any, ...]:
    a: Answer = op.answer
    return (
        a.status.value, a.uuid, a.errno, a.error, a.http_status, a.attempts, a.answered_at,
        op.run_id, a.imei, a.command,
    )  # fmt: skip


class PostgresLedger(PgReportQueries):
    """A ledger in a PostgreSQL database. Writes come from one thread at a time."""

    def run(self, run_id: str) -> RunRecord | None:
        rows = self._fetch(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE run_id = %s", (run_id,)
        )
        return RunRecord(*rows[0]) if rows else None

    def require_run(self, run_id: str) -> RunRecord:
        record = self.run(run_id)
        if record is None:
            known = ", ".join(r.run_id for r in self.runs()) or "none"
            raise InputError(f'no run "{run_id}" in {self.path} (runs: {known})')
        return record

    def runs(self) -> list[RunRecord]:
        rows = self._fetch(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY first_started_at")
        return [RunRecord(*row) for row in rows]

    def start_run(self, record: RunRecord) -> None:
        marks = ", ".join(["%s"] * len(_RUN_COLUMNS))
        self._write(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})"
            " ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at,"
            " ended_at = NULL, state = excluded.state, reason = NULL, devices = excluded.devices,"
            " waves = excluded.waves, rollout = excluded.rollout, inputs_hash = NULL",
            [tuple(getattr(record, f) for f in _RUN_COLUMNS)],
        )

    def confirm_wave(self, run_id: str, wave: int) -> None:
        self._write(
            "UPDATE runs SET confirmed_wave = greatest(confirmed_wave, %s) WHERE run_id = %s",
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
            "UPDATE runs SET ended_at = %s, state = %s, reason = %s, inputs_hash = %s"
            " WHERE run_id = %s",
            [(ended_at, state, reason, inputs_hash, run_id)],
        )

    def set_state(self, run_id: str, state: str, reason: str | None) -> None:
        self._write(
            "UPDATE runs SET state = %s, reason = %s WHERE run_id = %s", [(state, reason, run_id)]
        )

    # -- the run's writes ----------------------------------------------------------------

    def recover_sending(self, run_id: str, owns: Callable[[str], bool] | None = None) -> int:
        """As the SQLite ledger's: ``owns`` keeps another shard's requests in flight untouched."""
        update = (
            f"UPDATE items SET status = {SQL_IN_DOUBT},"
            " error = 'the run stopped while this request was in flight'"
            f" WHERE run_id = %s AND status = {SQL_SENDING}"
        )
        if owns is None:
            return self._write(update, [(run_id,)])
        rows = self._fetch(
            f"SELECT imei, command FROM items WHERE run_id = %s AND status = {SQL_SENDING}",
            (run_id,),
        )
        mine = [(run_id, imei, command) for imei, command in rows if owns(imei)]
        if mine:
            self._write(update + " AND imei = %s AND command = %s", mine)
        return len(mine)

    def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        """A batch of writes in one transaction (one WAL flush); a result per op.

        In pipeline mode: the batch's statements go to the server without waiting for
        each answer (a round trip per batch, not per row), and the block returns only
        once the COMMIT's answer is in, so the batch is durable when it returns.
        """
        results: list[Any] = []
        with self._mutex:
            try:
                with self._db.pipeline(), self._db.transaction(), self._db.cursor() as cur:
                    # Runs of one kind (a group commit is mostly marks, or mostly answers)
                    # go as one executemany: psycopg's per-statement cost, not the
                    # server's, is what limits a batch sent one execute at a time.
                    for kind, run in itertools.groupby(ops, key=type):
                        same = list(run)
                        if kind is MarkSending and len(same) > 1:
                            cur.executemany(
                                MARK_SENDING,
                                [_sending_args(op) for op in same if isinstance(op, MarkSending)],
                            )
                            results += [None] * len(same)
                        elif kind is RecordAnswer and len(same) > 1:
                            cur.executemany(
                                RECORD_ANSWER,
                                [_answer_args(op) for op in same if isinstance(op, RecordAnswer)],
                            )
                            results += [None] * len(same)
                        else:
                            results += [self._apply_one(cur, op) for op in same]
            except psycopg.Error as exc:
                raise translate(exc, self.path) from None
        return results

    def _apply_one(self, cur: psycopg.Cursor[Any], op: WriteOp) -> dict[str, list[Status]] | None:
        match op:
            case Register(run_id, devices):
                return self._register(cur, run_id, devices)
            case MarkSending():
                cur.execute(MARK_SENDING, _sending_args(op))
            case RecordAnswer():
                cur.execute(RECORD_ANSWER, _answer_args(op))
            case SkipRest(run_id, imei, after, reason):
                # Only while the command that failed is still failed: it may have been reopened.
                cur.execute(
                    f"UPDATE items SET status = {SQL_SKIPPED}, error = %s WHERE run_id = %s"
                    f" AND imei = %s AND command > %s AND status = {SQL_PENDING} AND EXISTS"
                    " (SELECT 1 FROM items WHERE run_id = %s AND imei = %s AND command = %s"
                    f" AND status = {SQL_FAILED})",
                    (reason, run_id, imei, after, run_id, imei, after),
                )
            case Reopen(run_id, rows):
                if rows:
                    cur.executemany(
                        f"UPDATE items SET status = {SQL_PENDING},"
                        " error = 'reopened: the platform was unavailable' WHERE run_id = %s"
                        f" AND imei = %s AND command >= %s AND status IN ({SQL_FAILED}, {SQL_SKIPPED})",
                        [(run_id, imei, command) for imei, command in rows],
                    )
            case SetWave(run_id, wave):
                cur.execute("UPDATE runs SET wave = %s WHERE run_id = %s", (wave, run_id))
        return None

    def _register(
        self,
        cur: psycopg.Cursor[Any],
        run_id: str,
        devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]],
    ) -> dict[str, list[Status]]:
        rows = [
            (run_id, imei, i, fleet, *((op, None) if isinstance(op, str) else op))
            for imei, fleet, ops in devices
            for i, op in enumerate(ops)
        ]
        if rows:
            cur.executemany(
                "INSERT INTO items (run_id, imei, command, fleet, op, status, request_hash)"
                f" VALUES (%s, %s, %s, %s, %s, {SQL_PENDING}, %s) ON CONFLICT DO NOTHING",
                rows,
            )
        out: dict[str, list[Status]] = {
            imei: [Status.PENDING] * len(ops) for imei, _, ops in devices
        }
        # A cursor of its own: in pipeline mode the batch cursor's results may still be
        # those of the statements queued before.
        with cur.connection.cursor() as query:
            query.execute(
                "SELECT imei, command, status FROM items WHERE run_id = %s AND imei = ANY(%s)",
                (run_id, list(out)),
            )
            found = query.fetchall()
        for imei, command, status in found:
            statuses = out[imei]
            if command < len(statuses):
                statuses[command] = Status(status)
        return out

    # -- resume: fingerprints of what each row sends -------------------------------------

    def stored_requests(
        self, run_id: str, imeis: Sequence[str]
    ) -> list[tuple[str, int, str | None, str, int]]:
        rows: list[tuple[str, int, str | None, str, int]] = self._fetch(
            "SELECT imei, command, request_hash, status, (sent_at IS NOT NULL)::int FROM items"
            " WHERE run_id = %s AND imei = ANY(%s)",
            (run_id, list(imeis)),
        )
        return rows

    def store_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        self._write(
            "UPDATE items SET request_hash = %s WHERE run_id = %s AND imei = %s AND command = %s"
            f" AND sent_at IS NULL AND status = {SQL_PENDING}",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def fill_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        self._write(
            "UPDATE items SET request_hash = %s WHERE run_id = %s AND imei = %s AND command = %s"
            " AND request_hash IS NULL",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def accept_hashes(self, run_id: str, rows: Sequence[tuple[str, int, str]]) -> None:
        self._write(
            "UPDATE items SET request_hash = %s WHERE run_id = %s AND imei = %s AND command = %s"
            f" AND status IN ({SQL_DONE})",
            [(digest, run_id, imei, command) for imei, command, digest in rows],
        )

    def keep_as_sent(self, run_id: str, rows: Sequence[tuple[str, int]], reason: str) -> int:
        return self._write(
            f"UPDATE items SET status = {SQL_SKIPPED}, error = %s WHERE run_id = %s AND imei = %s"
            f" AND command >= %s AND status = {SQL_PENDING}",
            [(reason, run_id, imei, command) for imei, command in rows],
        )

    # -- settling in-doubt rows ------------------------------------------------------

    def in_doubt(self, run_id: str) -> list[InDoubt]:
        rows = self._fetch(
            "SELECT imei, command, op, fleet, sent_at FROM items"
            f" WHERE run_id = %s AND status = {SQL_IN_DOUBT} ORDER BY id",
            (run_id,),
        )
        return [InDoubt(*row) for row in rows]

    def uuid_known(self, uuid: str) -> bool:
        return bool(self._fetch("SELECT 1 FROM items WHERE uuid = %s LIMIT 1", (uuid,)))

    def known_uuids(self) -> set[str]:
        rows = self._fetch("SELECT uuid FROM items WHERE uuid IS NOT NULL")
        return {uuid.strip() for (uuid,) in rows}

    def note_foreign(
        self, run_id: str, seen: Sequence[tuple[str, str, str, str | None]], at: float
    ) -> None:
        self._write(
            "INSERT INTO foreign_commands (run_id, imei, uuid, type, create_time, seen_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(run_id, imei, uuid, kind, created, at) for imei, uuid, kind, created in seen],
        )

    def foreign_seen(self, run_id: str) -> int:
        return int(
            self._value("SELECT count(*) FROM foreign_commands WHERE run_id = %s", (run_id,))
        )

    def settle(
        self, run_id: str, row: InDoubt, status: Status, uuid: str | None, note: str
    ) -> None:
        self._write(
            "UPDATE items SET status = %s, uuid = %s, error = %s WHERE run_id = %s AND imei = %s"
            f" AND command = %s AND status = {SQL_IN_DOUBT}",
            [(status.value, uuid, note, run_id, row.imei, row.command)],
        )

    # -- delivery (track, cancel) ------------------------------------------------------

    def queued(self, run_id: str, *, final: frozenset[str]) -> list[Queued]:
        rows = self._fetch(
            "SELECT imei, command, op, fleet, uuid, send_status FROM items"
            f" WHERE run_id = %s AND status = {SQL_OK} AND uuid IS NOT NULL"
            " AND (send_status IS NULL OR NOT send_status = ANY(%s)) ORDER BY id",
            (run_id, sorted(final)),
        )
        return [Queued(*row) for row in rows]

    def record_delivery(self, run_id: str, rows: Sequence[Delivered]) -> None:
        self._write(
            "UPDATE items SET send_status = %s, confirm_status = %s, cmd_result = %s,"
            " send_time = %s, confirm_time = %s, tracked_at = %s"
            " WHERE run_id = %s AND imei = %s AND command = %s",
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


def _conforms(ledger: PostgresLedger) -> LedgerStore:
    return ledger  # mypy checks here that this backend implements the whole protocol
