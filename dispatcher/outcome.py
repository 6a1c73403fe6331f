"""What became of one request: the four outcome classes the engine acts on.

- ``ok``: errno 0 and a uuid: the platform queued the command.
- ``failed``: the platform answered with a permanent error; nothing was queued.
- ``retry``: provably not queued (not sent, refused before processing, or a transient
  errno); safe to send again after a backoff.
- ``in_doubt``: it may have been queued (no answer, or an answer we cannot read);
  never sent again automatically.

An answer refusing our credentials (``auth_refused``) is ``failed`` for that request,
but it says nothing about the device: the engine stops the run on it (exit 2) and
keeps the row pending, and the client sends nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    OK = "ok"
    FAILED = "failed"
    RETRY = "retry"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    uuid: str | None = None
    errno: int | None = None
    error: str | None = None
    http_status: int | None = None
    retry_after: float | None = None  # seconds the platform asked us to wait
    slow_down: bool = False  # the platform's rate-limit errno: slow the whole run
    max_attempts: int | None = None  # a lower cap on tries for this answer (errno 5108)
    auth_refused: bool = False  # the platform refused the key or token itself
