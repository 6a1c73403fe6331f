"""The ``runs`` table: one row per run id (its job, window, waves, state)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dispatcher.errors import InputError
from dispatcher.ledger.connection import Connection, translate
from dispatcher.ledger.records import RunRecord


class RunRows(Connection):
    """Reading and writing run rows."""

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
            """INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
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

    def set_state(self, run_id: str, state: str, reason: str | None) -> None:
        self._write(
            "UPDATE runs SET state = ?, reason = ? WHERE run_id = ?", [(state, reason, run_id)]
        )


def read_run(path: Path, run_id: str) -> RunRecord | None:
    """A run's record read on a connection of its own (safe beside a running writer)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, path) from None
    finally:
        db.close()
    return RunRecord(*row) if row is not None else None
