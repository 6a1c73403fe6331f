"""The results ledger: where every row of work stands, durably.

- ``records``: the values read and written (``Status``, ``RunRecord``, ``Answer``, ...);
- ``ops``: the typed writes a run batches (``Register``, ``MarkSending``, ...);
- ``store``: the ``LedgerStore`` protocol the rest of the program relies on;
- ``sqlite``: the SQLite backend (``Ledger``), built from ``connection`` (file, pragmas,
  lock), ``runs``, ``items`` and ``queries`` (the report's aggregates), with its DDL in
  ``schema``;
- ``postgres``: the PostgreSQL backend (``PostgresLedger``), its DDL in ``postgres_schema``;
- ``dispatcher.pgurl`` (outside, so `validate` loads no ledger code): where a
  ledger lives, a path or a ``postgresql://`` URL (its password refused and masked);
- ``open``: ``open_ledger`` / ``open_existing`` / ``read_run`` by target, choosing the backend;
- ``writer``: the run's one writer task (group commit).

Nothing here knows HTTP or the platform.
"""

from __future__ import annotations

from dispatcher.ledger.open import open_existing, open_ledger, read_run
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
    DONE,
    Answer,
    Delivered,
    InDoubt,
    Queued,
    RunRecord,
    Status,
)
from dispatcher.ledger.schema import APPLICATION_ID, SCHEMA_VERSION
from dispatcher.ledger.sqlite import Ledger
from dispatcher.ledger.store import LedgerStore
from dispatcher.pgurl import LedgerTarget, PgUrl, parse_target

__all__ = [
    "APPLICATION_ID",
    "DONE",
    "SCHEMA_VERSION",
    "Answer",
    "Delivered",
    "InDoubt",
    "Ledger",
    "LedgerStore",
    "LedgerTarget",
    "MarkSending",
    "PgUrl",
    "Queued",
    "RecordAnswer",
    "Register",
    "Reopen",
    "RunRecord",
    "SetWave",
    "SkipRest",
    "Status",
    "WriteOp",
    "open_existing",
    "open_ledger",
    "parse_target",
    "read_run",
]
