"""The writes a run makes while it sends, as typed values the writer thread batches.

Each is one statement; ``Ledger.apply`` runs a batch of them in one transaction (one
fsync). Typed rather than named so a second backend implements the same closed set, and a
typo is a type error, not an AttributeError in the writer thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.ledger.records import Answer

# (imei, fleet, ops): an op is its name, or (name, request hash)
Devices = Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]


@dataclass(frozen=True, slots=True)
class Register:
    """Insert pending rows for new devices; the result is every device's statuses by command."""

    run_id: str
    devices: Devices


@dataclass(frozen=True, slots=True)
class MarkSending:
    """The row is about to be sent: durable before the request leaves."""

    run_id: str
    imei: str
    command: int
    at: float


@dataclass(frozen=True, slots=True)
class RecordAnswer:
    run_id: str
    answer: Answer


@dataclass(frozen=True, slots=True)
class SkipRest:
    """A device's command failed: its later pending commands are skipped with ``reason``."""

    run_id: str
    imei: str
    after: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reopen:
    """Failed rows whose failure was the platform's, not the device's: send them again."""

    run_id: str
    rows: Sequence[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SetWave:
    run_id: str
    wave: int


WriteOp = Register | MarkSending | RecordAnswer | SkipRest | Reopen | SetWave
