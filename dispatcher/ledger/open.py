"""Opening a ledger by where it lives: the one place that chooses the backend.

A path is a SQLite file; a ``postgresql://`` (or ``postgres://``) URL a PostgreSQL
database. The PostgreSQL backend, and with it the driver, is imported only when a URL
is opened: SQLite users need not install the ``postgres`` extra.
"""

from __future__ import annotations

from pathlib import Path

from dispatcher.errors import InputError, LedgerError
from dispatcher.ledger.records import RunRecord
from dispatcher.ledger.runs import read_run as read_sqlite_run
from dispatcher.ledger.sqlite import Ledger
from dispatcher.ledger.sqlite import open_existing as open_existing_file
from dispatcher.ledger.store import LedgerStore
from dispatcher.pgurl import LedgerTarget, PgUrl

MISSING_DRIVER = (
    "a PostgreSQL ledger needs the driver: install onenet-dispatcher[postgres]"
    " (pip install 'onenet-dispatcher[postgres]')"
)


def _postgres(target: PgUrl, *, create: bool) -> LedgerStore:
    try:
        from dispatcher.ledger.postgres import PostgresLedger
    except ImportError:
        raise LedgerError(f"ledger {target}: {MISSING_DRIVER}") from None
    return PostgresLedger(target, create=create)


def open_ledger(target: LedgerTarget) -> LedgerStore:
    """The ledger at ``target``, created (tables included) when it does not exist yet."""
    if isinstance(target, PgUrl):
        return _postgres(target, create=True)
    return Ledger(target)


def open_existing(target: LedgerTarget) -> LedgerStore:
    """A ledger that must already exist (report, export, track, ...): never creates one."""
    if isinstance(target, PgUrl):
        return _postgres(target, create=False)
    return open_existing_file(target)


def exists(target: LedgerTarget) -> bool:
    """Whether a ledger may be there: a file that exists, or any URL (the server will say)."""
    return isinstance(target, PgUrl) or Path(target).is_file()


def read_run(target: LedgerTarget, run_id: str) -> RunRecord | None:
    """A run's record read on a connection of its own (safe beside a running writer)."""
    if isinstance(target, PgUrl):
        try:
            ledger = _postgres(target, create=False)
        except InputError:
            return None  # a database without a ledger yet holds no run
        with ledger:
            return ledger.run(run_id)
    return read_sqlite_run(target, run_id)
