"""The report's queries: aggregates computed by SQLite.

A report over a million rows must take seconds and flat memory, so every query here
groups or limits in SQL: none returns one Python object per ledger row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from dispatcher.ledger.connection import Connection, translate
from dispatcher.ledger.records import (
    SQL_FAILED,
    SQL_IN_DOUBT,
    SQL_OK,
    SQL_SKIPPED,
)


class ReportQueries(Connection):
    """Aggregates for `report`, `status` and the run summary."""

    def delivery_counts(self, run_id: str) -> dict[str, int]:
        """Queued rows by delivery state; "untracked" for those never asked about."""
        rows = self._read(
            f"SELECT coalesce(send_status, 'untracked'), count(*) FROM items WHERE run_id = ? AND status = {SQL_OK}"
            " GROUP BY 1",
            (run_id,),
        )
        return {state: n for state, n in rows}

    def delivery_by_fleet(self, run_id: str) -> list[tuple[str, str, int]]:
        """Queued rows per fleet and delivery state."""
        rows = self._read(
            "SELECT fleet, coalesce(send_status, 'untracked'), count(*) FROM items WHERE run_id = ?"
            f" AND status = {SQL_OK} GROUP BY 1, 2 ORDER BY 1, 2",
            (run_id,),
        )
        return [(fleet, state, n) for fleet, state, n in rows]

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
            f"SELECT errno, error, sum(status = {SQL_FAILED}), sum(status = {SQL_IN_DOUBT}) FROM items"
            f" WHERE run_id = ? AND status IN ({SQL_FAILED}, {SQL_IN_DOUBT})"
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
            f"  CASE status WHEN {SQL_FAILED} THEN 0 WHEN {SQL_IN_DOUBT} THEN 1 ELSE 2 END, rowid) AS k"
            f" FROM items WHERE run_id = ? AND status IN ({SQL_FAILED}, {SQL_IN_DOUBT}, {SQL_SKIPPED}))"
            " WHERE k <= ? ORDER BY fleet, command, k",
            (run_id, per_cell),
        )
        try:
            yield from cur
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
