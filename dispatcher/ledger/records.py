"""What the ledger holds, as Python values: row statuses and the records read or written."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    OK = "ok"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    SKIPPED = "skipped"


DONE = frozenset({Status.OK, Status.FAILED, Status.SKIPPED})


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    job_name: str
    job_path: str
    job_hash: str
    target: str
    valid_time: str | None  # ISO 8601 with zone
    expired_time: str
    first_started_at: float
    started_at: float
    ended_at: float | None
    state: str
    reason: str | None
    devices: int = 0  # devices in the job's fleets at the last start
    waves: int = 1
    wave: int = 0  # the wave in progress (0-based)
    confirmed_wave: int = 0  # waves up to this one may start without asking
    rollout: str | None = None  # the job's rollout controls (JSON), for `status`
    inputs_hash: str | None = None  # job and fleet files of the last run that left nothing to send
    shards: int = 1  # run --shard K/N: N, as the run's first invocation split it


@dataclass(frozen=True, slots=True)
class InDoubt:
    """An in-doubt row: the request may or may not have been queued."""

    imei: str
    command: int
    op: str
    fleet: str
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class Queued:
    """A command the platform queued: what `track` asks about and `cancel` takes back."""

    imei: str
    command: int
    op: str
    fleet: str
    uuid: str
    send_status: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where a queued command stands on the platform."""

    imei: str
    command: int
    send_status: str
    confirm_status: str | None
    cmd_result: str | None
    send_time: str | None
    confirm_time: str | None
    tracked_at: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What to record for one answered work item."""

    imei: str
    command: int
    status: Status
    uuid: str | None
    errno: int | None
    error: str | None
    http_status: int | None
    attempts: int
    answered_at: float


def sql_list(*statuses: Status) -> str:
    """Statuses as SQL literals (``'ok', 'failed'``): the names in the SQL come from the enum."""
    return ", ".join(f"'{status.value}'" for status in statuses)


# Each status as it is spelled in SQL.
SQL_PENDING = sql_list(Status.PENDING)
SQL_SENDING = sql_list(Status.SENDING)
SQL_OK = sql_list(Status.OK)
SQL_FAILED = sql_list(Status.FAILED)
SQL_IN_DOUBT = sql_list(Status.IN_DOUBT)
SQL_SKIPPED = sql_list(Status.SKIPPED)
SQL_DONE = sql_list(Status.OK, Status.FAILED, Status.SKIPPED)
