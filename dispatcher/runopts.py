"""What one invocation of ``run`` is asked to do, and what it did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from dispatcher.clock import Clock
from dispatcher.engine import Totals
from dispatcher.errors import DispatcherError
from dispatcher.pgurl import LedgerTarget
from dispatcher.problems import Problems
from dispatcher.reconcile import ReconcileReport
from dispatcher.shards import WHOLE, Shard

UNLIMITED_RATE = 1e9  # requests per second: a limiter that never has to wait


@dataclass(frozen=True, slots=True)
class Ablations:
    """Parts of a run switched off to measure what each costs (``python -m bench``).

    Never set by the CLI's options: a run with any of them off is not a safe run.
    """

    rate_limit: bool = True  # False: the limiter runs with UNLIMITED_RATE (the throughput ceiling)
    ledger_sends: bool = True  # False: "sending" marks and answers are not written
    second_send_guard: bool = True  # False: aiohttp's resend of a dropped request is not refused


@dataclass(frozen=True)
class RunOptions:
    job: Path
    config: Path | None = None
    ledger: LedgerTarget | None = None
    run_id: str | None = None
    base_url: str | None = None
    simulate: bool = False
    resend_in_doubt: bool = False
    strict: bool = False
    limit: int | None = None
    fleets: tuple[str, ...] = ()
    imei_file: Path | None = None
    shard: Shard = WHOLE  # run --shard K/N: the devices of shard K only, at its share of the rate
    accept_changed_fleet: bool = False  # resume although fleet files render other requests
    override_abort: bool = False
    no_wait: bool = False
    interactive: bool = False  # a person at a terminal may answer "confirm" pauses
    clock: Clock | None = None  # tests move time instead of waiting
    imeis: frozenset[str] | None = None  # read from imei_file
    console: Console | None = None  # where progress goes (a live display on a terminal)
    progress_interval: float = 30.0  # seconds between progress events when not on a terminal
    ablations: Ablations = Ablations()  # all on: only the benchmarks switch parts off


@dataclass
class RunResult:
    run_id: str
    ledger: LedgerTarget
    target: str
    totals: Totals
    counts: dict[str, int]  # the whole run's rows by status, this and earlier invocations
    warnings: Problems
    signal: int | None = None
    fatal: DispatcherError | None = None
    resumed: bool = False
    first_started_at: float = 0.0
    reconciled: ReconcileReport | None = None
    state: str = "finished"  # a RunState value  # the run's state as this invocation left it
    remaining: int = 0  # devices of the whole job not settled yet
    next_command: str | None = None  # what sends the remainder of a partial run

    @property
    def partial(self) -> bool:
        return self.state == "partial"

    @property
    def all_ok(self) -> bool:
        # A subset leaves the job's other devices pending on purpose: that is not a failure.
        allowed = {"ok", "pending"} if self.partial else {"ok"}
        return set(self.counts) <= allowed

    @property
    def paused(self) -> str | None:
        """Why the run stopped early on purpose and resumes later (exit 0), if it did."""
        if self.totals.stopped_outside_window:
            return "outside the dispatch window"
        if self.totals.stopped_for_confirmation:
            return f"waiting for confirmation to start wave {self.totals.wave + 2}"
        return None
