"""Several SQLite ledgers read as one: the shards of a run that each kept their own file.

``status``, ``report`` and ``export`` take one ledger or several. Several are copied, by
SQLite itself (``ATTACH`` and ``INSERT … SELECT``, no Python object per row), into a
throwaway ledger file that the usual queries then read: the merged report is the same
code as a single ledger's, and a million rows take seconds in flat memory.

A row found in two of the files means they are not shards of one run (or a device was
sent twice): that is refused, never summed.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from dispatcher.errors import InputError
from dispatcher.ledger.open import open_existing
from dispatcher.ledger.records import RunRecord
from dispatcher.ledger.schema import FOREIGN_TABLE
from dispatcher.ledger.sqlite import Ledger
from dispatcher.ledger.sqlite import open_existing as open_existing_file
from dispatcher.ledger.store import LedgerStore
from dispatcher.pgurl import LedgerTarget

# A merged run's state: the one most in need of attention among its shards.
_PRECEDENCE = ("cancelled", "aborted", "stopped", "running", "paused", "partial", "finished")


@contextmanager
def open_ledgers(
    targets: Sequence[LedgerTarget], run_id: str | None = None
) -> Iterator[LedgerStore]:
    """One ledger, or several SQLite files merged into one view (of ``run_id``, or every run)."""
    if len(targets) == 1:
        with open_existing(targets[0]) as ledger:
            yield ledger
        return
    paths = [t for t in targets if isinstance(t, Path)]
    if len(paths) != len(targets):
        raise InputError(
            "several ledgers are read as one only when they are SQLite files: the shards of a"
            " run on PostgreSQL share its one ledger, name it alone"
        )
    if len(set(paths)) != len(paths):
        raise InputError("the same ledger is named twice")
    records: list[tuple[Path, RunRecord]] = []
    for path in paths:
        with open_existing_file(path) as ledger:  # checks the file is ours, migrates an older one
            records += [(path, r) for r in ledger.runs() if run_id in (None, r.run_id)]
    if run_id is not None and not records:
        raise InputError(f'no run "{run_id}" in {", ".join(str(p) for p in paths)}')
    with (
        tempfile.TemporaryDirectory(prefix="onenet-dispatch-merge-") as tmp,
        Ledger(Path(tmp) / "merged.sqlite") as merged,
    ):
        _copy(merged, paths, run_id)
        for rid in dict.fromkeys(r.run_id for _, r in records):
            _merge_run(merged, [r for _, r in records if r.run_id == rid])
        yield merged


def _copy(merged: Ledger, paths: Sequence[Path], run_id: str | None) -> None:
    db = merged._db
    columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(items)"))
    db.execute(FOREIGN_TABLE)
    where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    for path in paths:
        db.execute("ATTACH DATABASE ? AS shard", (str(path),))
        try:
            db.execute("BEGIN")
            db.execute(
                f"INSERT INTO items ({columns}) SELECT {columns} FROM shard.items {where}", args
            )
            has_foreign = db.execute(
                "SELECT 1 FROM shard.sqlite_master WHERE type = 'table'"
                " AND name = 'foreign_commands'"
            ).fetchone()
            if has_foreign:
                db.execute(
                    "INSERT OR IGNORE INTO foreign_commands SELECT * FROM shard.foreign_commands"
                    f" {where}",
                    args,
                )
            db.execute("COMMIT")
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            raise InputError(
                f"{path} holds rows (run, IMEI, command) that another of the ledgers also"
                " holds: these are not the shards of one run"
            ) from None
        finally:
            db.execute("DETACH DATABASE shard")


def _merge_run(merged: Ledger, parts: list[RunRecord]) -> None:
    """One run row from its shards' rows: its whole span, and the state that needs most care."""
    first = min(parts, key=lambda r: r.first_started_at)
    ends = [r.ended_at for r in parts]
    state = min((r.state for r in parts), key=_rank)
    reasons = [r.reason for r in parts if r.state == state and r.reason]
    devices = max(r.devices for r in parts)
    record = replace(
        first,
        started_at=max(r.started_at for r in parts),
        ended_at=None if None in ends else max(e for e in ends if e is not None),
        state=state,
        reason=reasons[0] if reasons else None,
        devices=devices,
        wave=min(r.wave for r in parts),
        confirmed_wave=min(r.confirmed_wave for r in parts),
        inputs_hash=None,
    )
    merged.start_run(record)
    if state == "partial" and devices and not devices - merged.settled_devices(first.run_id):
        # every shard settled its devices: together they finished the run
        merged.end_run(first.run_id, record.ended_at or record.started_at, "finished", None)
    elif state == "partial":
        remaining = devices - merged.settled_devices(first.run_id)
        merged.set_state(
            first.run_id,
            "partial",
            f"{remaining} of {devices} devices not settled yet in these {len(parts)} ledgers"
            f" (the run has {first.shards} shards)",
        )


def _rank(state: str) -> int:
    return _PRECEDENCE.index(state) if state in _PRECEDENCE else 0
