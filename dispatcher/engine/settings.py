"""What the engine is given (its settings, the run's rollout controls) and what it counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from dispatcher.dispatch_window import DispatchWindow
from dispatcher.engine.abort import AbortRule
from dispatcher.ledger.records import Status
from dispatcher.rolloutspec import RampSpec
from dispatcher.shards import Shard
from dispatcher.waves import WaveMap


@dataclass(frozen=True, slots=True)
class EngineSettings:
    concurrency: int
    attempts: int
    backoff_base: float
    backoff_max: float
    resend_in_doubt: bool = False
    breaker_window: int = 20
    breaker_threshold: float = 0.8
    # where the key came from, for the message when the platform refuses it (never the key)
    credentials: str = "the API key"


@dataclass
class Rollout:
    """How the fleet is rolled out: waves, pauses, abort rule, dispatch window, targeting."""

    waves: WaveMap
    start_wave: int = 0
    pause: timedelta = timedelta(0)
    # awaited before each wave after the first: True to go on, False to stop (resumable)
    confirm: Callable[[int], Awaitable[bool]] | None = None
    abort: AbortRule = field(default_factory=lambda: AbortRule(None))
    dispatch: DispatchWindow | None = None
    no_wait: bool = False  # outside the dispatch window: stop (resumable) instead of sleeping
    ramp: RampSpec | None = None
    fleets: frozenset[str] | None = None
    imeis: frozenset[str] | None = None
    shard: Shard | None = None  # run --shard K/N: only the devices of shard K
    limit: int | None = None  # devices to start in this invocation at most
    on_wave: Callable[[int], Awaitable[None]] | None = None


@dataclass
class Totals:
    """What this invocation did, for progress and the summary."""

    wave: int = 0
    waves: int = 1
    paused: str | None = None  # why sending is paused right now
    stopped_outside_window: bool = False
    stopped_for_confirmation: bool = False
    started_devices: int = 0
    planned_devices: int = 0
    already_done: int = 0  # devices whose every command was settled by an earlier run
    held_in_doubt: int = 0  # devices waiting on an in-doubt command
    sent: int = 0  # requests put on the wire (attempts)
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: Status) -> None:
        self.by_status[status.value] = self.by_status.get(status.value, 0) + 1
