"""The PostgreSQL ledger's reads for `status`, `report` and `export`: aggregates computed
by the server, grouped or limited in SQL as ``queries`` does for SQLite.

Where SQLite and PostgreSQL would order differently, the SQL says so: text sorts
``COLLATE "C"`` (bytes, as SQLite), NULLs first (as SQLite sorts them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dispatcher.ledger.postgres_connection import PgConnection, translate
from dispatcher.ledger.records import (
    SQL_DONE,
    SQL_FAILED,
    SQL_IN_DOUBT,
    SQL_OK,
    SQL_SKIPPED,
)

STREAM_ROWS = 2000  # rows fetched at a time by `export`


class PgReportQueries(PgConnection):
    """Aggregates for `report`, `status` and the run summary; `export`'s rows."""

    def counts(self, run_id: str) -> dict[str, int]:
        rows = self._fetch(
            "SELECT status, count(*) FROM items WHERE run_id = %s GROUP BY status", (run_id,)
        )
        return {status: int(n) for status, n in rows}

    def settled_devices(self, run_id: str) -> int:
        return int(
            self._value(
                "SELECT count(*) FROM (SELECT imei FROM items WHERE run_id = %s GROUP BY imei"
                f" HAVING bool_and(status IN ({SQL_DONE}))) AS settled",
                (run_id,),
            )
        )

    def items(self, run_id: str | None = None) -> Iterator[Any]:
        """Every row of a run (or of all runs) by column name, in planned order, streamed."""
        where, args = ("", ()) if run_id is None else ("WHERE run_id = %s", (run_id,))
        with self._mutex, self._db.cursor(row_factory=dict_row) as cur:
            try:
                yield from cur.stream(
                    f"SELECT * FROM items {where} ORDER BY id",
                    args,
                    size=STREAM_ROWS,
                )
            except psycopg.Error as exc:
                raise translate(exc, self.path) from None

    def delivery_counts(self, run_id: str) -> dict[str, int]:
        rows = self._fetch(
            "SELECT coalesce(send_status, 'untracked'), count(*) FROM items"
            f" WHERE run_id = %s AND status = {SQL_OK} GROUP BY 1",
            (run_id,),
        )
        return {state: int(n) for state, n in rows}

    def delivery_by_fleet(self, run_id: str) -> list[tuple[str, str, int]]:
        # COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        rows = self._fetch(
            "SELECT fleet, coalesce(send_status, 'untracked') AS state, count(*) FROM items"
            f" WHERE run_id = %s AND status = {SQL_OK} GROUP BY 1, 2"
            ' ORDER BY fleet COLLATE "C", coalesce(send_status, \'untracked\') COLLATE "C"',
            (run_id,),
        )
        return [(fleet, state, int(n)) for fleet, state, n in rows]

    def rollup_counts(
        self, run_id: str
    ) -> list[tuple[str | None, int | None, str | None, str, int]]:
        """``(fleet, command, op, status, rows)`` per cell and rolled up (``sqlite`` explains)."""
        rows = self._fetch(
            "SELECT fleet, command, op, status, count(*) FROM items WHERE run_id = %s"
            " GROUP BY GROUPING SETS ((fleet, command, op, status), (fleet, status),"
            " (command, op, status), (status))",
            (run_id,),
        )
        return [(fleet, command, op, status, int(n)) for fleet, command, op, status, n in rows]

    def error_groups(
        self, run_id: str, limit: int
    ) -> list[tuple[int | None, str | None, int, int]]:
        rows = self._fetch(
            f"SELECT errno, error, count(*) FILTER (WHERE status = {SQL_FAILED}),"
            f" count(*) FILTER (WHERE status = {SQL_IN_DOUBT}) FROM items"
            f" WHERE run_id = %s AND status IN ({SQL_FAILED}, {SQL_IN_DOUBT})"
            " GROUP BY errno, error ORDER BY count(*) DESC, errno NULLS FIRST,"
            ' error COLLATE "C" NULLS FIRST LIMIT %s',
            (run_id, limit),
        )
        return [(errno, error, int(failed), int(doubt)) for errno, error, failed, doubt in rows]

    def slowest_answers(
        self, run_id: str, limit: int
    ) -> list[tuple[str, str, int, str, str, float, int]]:
        rows = self._fetch(
            "SELECT imei, fleet, command, op, status,"
            " answered_at - coalesce(first_sent_at, sent_at) AS seconds, attempts FROM items"
            " WHERE run_id = %s AND sent_at IS NOT NULL AND answered_at IS NOT NULL"
            " ORDER BY seconds DESC, id LIMIT %s",
            (run_id, limit),
        )
        return [
            (imei, fleet, command, op, status, seconds, attempts)
            for imei, fleet, command, op, status, seconds, attempts in rows
        ]

    def not_ok_rows(
        self, run_id: str, per_cell: int
    ) -> Iterator[tuple[str, int, str, str, int | None, str | None]]:
        rows = self._fetch(
            "SELECT fleet, command, imei, status, errno, error FROM ("
            " SELECT fleet, command, imei, status, errno, error, row_number() OVER ("
            "  PARTITION BY fleet, command ORDER BY"
            f"  CASE status WHEN {SQL_FAILED} THEN 0 WHEN {SQL_IN_DOUBT} THEN 1 ELSE 2 END, id) AS k"
            f" FROM items WHERE run_id = %s AND status IN ({SQL_FAILED}, {SQL_IN_DOUBT}, {SQL_SKIPPED})"
            ') AS listed WHERE k <= %s ORDER BY fleet COLLATE "C", command, k',
            (run_id, per_cell),
        )
        yield from rows
