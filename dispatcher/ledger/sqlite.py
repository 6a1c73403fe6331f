"""The SQLite backend: one ledger file, the single place that knows its SQL.

A row per (run id, IMEI, command index) says where that work item stands; a ``runs`` row
per run holds the job's hash, the window it resolved at its first start, and its start and
end. Rows are written ahead: a row is durably ``sending`` before its request leaves, so a
run that dies leaves no request unaccounted for. A ``foreign_commands`` table, created the
first time reconciliation sees one, keeps the other applications' commands found on a
run's devices (never ours; counted by ``report``).
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.errors import InputError
from dispatcher.ledger.items import ItemRows
from dispatcher.ledger.queries import ReportQueries
from dispatcher.ledger.runs import RunRows
from dispatcher.ledger.store import LedgerStore


class Ledger(RunRows, ItemRows, ReportQueries):
    """A ledger file. Writes come from one thread at a time (the run's writer task)."""


def open_existing(path: Path) -> Ledger:
    """A ledger that must already exist (report, export, track, ...): never creates one."""
    if not path.is_file():
        raise InputError(f"{path}: no such ledger")
    return Ledger(path)


def _conforms(ledger: Ledger) -> LedgerStore:
    return ledger  # mypy checks here that the SQLite backend implements the whole protocol
