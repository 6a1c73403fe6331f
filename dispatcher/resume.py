"""Resume policy: what a rerun of a run id does with what the ledger holds.

- A run's ``RunState``: ``running`` while an invocation sends; at its end ``finished``
  (nothing left of this pass), ``partial`` (a subset left devices of the job unsent),
  ``paused`` (outside the dispatch window, or waiting for a wave's confirmation),
  ``stopped`` (a signal, an outage, a refused key) or ``aborted`` (the abort rule);
  ``cancelled`` is set by `cancel`.
- A rerun of a ``finished`` run whose job and fleet files are byte for byte unchanged
  says so without a pass (``nothing_left``).
- A ``cancelled`` run is never resumed; an ``aborted`` one only with --override-abort
  (``refuse_ended``).
- A resumed run keeps the window it resolved at its first start, and refuses another job
  or another target (``window_for``).
- Rows left ``sending`` by a run that died become ``in_doubt``; before anything else is
  sent, the platform's history settles them (``recover_in_doubt``), compared with what
  was sent (the rows' request fingerprints, see ``sent``).
- Settled rows (ok, failed, skipped) are never sent again; pending ones are.
- A rerun of a run the ledger holds opens the ledger (and owns the run) before the check
  pass, so that the one pass over the fleet also compares every device's requests with
  what the run stored (``open_early``); the comparison only reads, and every refusal
  still comes after the check and before anything is sent.
"""

from __future__ import annotations

import shlex
import signal
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import structlog

from dispatcher.check import CheckedJob, inputs_hash
from dispatcher.config import Config
from dispatcher.engine import Totals
from dispatcher.errors import Aborted, InputError, LedgerError, RunRefused
from dispatcher.jobfile import LoadedJob, load_job
from dispatcher.ledger import (
    DONE,
    InDoubt,
    LedgerStore,
    LedgerTarget,
    RunRecord,
    open_ledger,
    parse_target,
    read_run,
)
from dispatcher.ledger.open import exists, open_existing
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.access import base_url_from
from dispatcher.onenet.transport import PlatformQueries
from dispatcher.problems import Problems
from dispatcher.reconcile import ReconcileReport, reconcile_run
from dispatcher.runopts import RunOptions, RunResult
from dispatcher.sent import Comparison, sent_requests
from dispatcher.shards import WHOLE, Shard, shard_siblings
from dispatcher.timewindow import Window

log = structlog.get_logger("dispatcher.run")

# A request sent this long ago (beyond the read timeout) has arrived, or never will.
RECONCILE_MARGIN = 5.0


class RunState(StrEnum):
    # in the order the metrics file lists them
    RUNNING = "running"
    PAUSED = "paused"
    PARTIAL = "partial"
    FINISHED = "finished"
    STOPPED = "stopped"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


def ledger_file(options: RunOptions, config: Config) -> LedgerTarget:
    """The run's ledger: --ledger as given; else the config's or the default. A SQLite file
    there is kept per shard (``ledger.shard-K.sqlite``), so the shards of a run on one
    machine (or sharing a volume) never wait on each other's file lock; a PostgreSQL
    ledger is one for every shard."""
    if options.ledger is not None:
        return options.ledger
    base = _default_ledger(options, config)
    return options.shard.ledger_path(base) if isinstance(base, Path) else base


def _default_ledger(options: RunOptions, config: Config) -> LedgerTarget:
    if config.ledger and not options.simulate:
        return parse_target(config.ledger, where="config: ledger")
    return options.job.parent / ("ledger.simulated.sqlite" if options.simulate else "ledger.sqlite")


def refuse_other_split(
    previous: RunRecord | None, options: RunOptions, config: Config, run_id: str
) -> None:
    """A run is split once: a rerun with another shard count would send devices again.

    Checked on the run's own ledger and, in the default layout, on the files its other
    shards (or an unsharded start) kept beside it: a split into 2 after a split into 4
    finds shard 2's file and is refused, rather than starting fresh files.
    """
    shards = options.shard.count
    found: list[tuple[LedgerTarget, int]] = []
    if previous is not None:
        found.append((ledger_file(options, config), previous.shards))
    base = _default_ledger(options, config)
    if options.ledger is None and isinstance(base, Path):
        for path in [base, *shard_siblings(base)]:
            if path == ledger_file(options, config) or not path.is_file():
                continue
            try:
                record = read_run(path, run_id)
            except LedgerError:
                continue  # not a ledger of ours: opening it names the problem
            if record is not None:
                found.append((path, record.shards))
    for where, first in found:
        if first != shards:
            started = (
                "unsharded" if first == 1 else f"split into {first} shards (--shard K/{first})"
            )
            asked = "without --shard" if shards == 1 else f"with --shard {options.shard}"
            raise RunRefused(
                f'run "{run_id}" was started {started} ({where}); it cannot be resumed {asked}:'
                f" run it with --shard K/{first} as first, or pick a new run id"
            )


def nothing_left(options: RunOptions, config: Config) -> RunResult | None:
    """A rerun of a run that left nothing to send, on unchanged files: say so without a pass.

    Checking and streaming a million-device fleet takes a minute; when the job and fleet
    files are byte for byte those of the run's last complete pass, which left no row to
    send, the answer is known. Anything else (a changed file, pending or in-doubt rows,
    another target) takes the full path.
    """
    if options.simulate or options.resend_in_doubt:
        return None
    try:
        loaded = load_job(options.job)
    except InputError:
        return None
    run_id = options.run_id or loaded.job.name
    ledger_path = ledger_file(options, config)
    if not exists(ledger_path):
        return None
    try:
        previous = read_run(ledger_path, run_id)
    except (LedgerError, InputError):
        # the full path says what is wrong with the file, or creates the database's ledger
        return None
    if previous is None or previous.inputs_hash is None or previous.state != RunState.FINISHED:
        return None
    if previous.target != base_url_from(options.base_url or config.base_url):
        return None
    if previous.inputs_hash != inputs_hash(loaded, strict=options.strict):
        return None
    with open_ledger(ledger_path) as ledger:
        ledger.lock(run_id, options.shard.index if options.shard.count > 1 else None)
        counts = ledger.counts(run_id)
        if set(counts) - DONE:
            return None
    log.info(
        "nothing_to_send",
        run_id=run_id,
        reason="job and fleet files unchanged since the run completed",
    )
    return RunResult(
        run_id=run_id,
        ledger=ledger_path,
        target=previous.target,
        totals=Totals(planned_devices=previous.devices, already_done=previous.devices),
        counts=counts,
        warnings=Problems(),
        resumed=True,
        first_started_at=previous.first_started_at,
    )


@dataclass(frozen=True, slots=True)
class Early:
    """What a rerun learned before its check pass (all None for a first run)."""

    loaded: LoadedJob | None = None  # the job, loaded once for the run id and the check
    ledger: LedgerStore | None = None  # the run's ledger, open and the run owned
    comparison: Comparison | None = None  # to ride on the check pass (``check_job(consume=)``)


def open_early(options: RunOptions, ledger_path: LedgerTarget, stack: ExitStack) -> Early:
    """A rerun's ledger opened and its run owned before the check pass, so that the pass
    compares request hashes too (one rendering of a million devices, not two).

    Only an existing ledger that holds the run with the same job fingerprint: a first
    run, a job that does not load, a ledger that cannot be opened, or a changed job
    (refused after the check) take the usual order: check first, then the ledger
    (created when missing). A run owned by another process is refused here, still
    before anything is sent.
    """
    if options.simulate:
        return Early()  # a simulated run's id is new each time: nothing to compare with
    try:
        loaded = load_job(options.job)
    except InputError:
        return Early()  # the check reports it
    if not exists(ledger_path):
        return Early(loaded)
    try:
        ledger = stack.enter_context(open_existing(ledger_path))
    except (LedgerError, InputError):
        return Early(loaded)  # opened after the check again, which says what is wrong
    run_id = options.run_id or loaded.job.name
    ledger.lock(run_id, options.shard.index if options.shard.count > 1 else None)
    previous = ledger.run(run_id)
    if previous is None or previous.job_hash != loaded.job.fingerprint():
        return Early(loaded, ledger)
    return Early(loaded, ledger, Comparison(ledger, run_id))


def refuse_ended(previous: RunRecord | None, run_id: str, *, override_abort: bool) -> None:
    """A cancelled run is never resumed; an aborted one only when the operator says so."""
    if previous is not None and previous.state == RunState.CANCELLED:
        raise RunRefused(
            f'run "{run_id}" was cancelled ({previous.reason}); it is never resumed: pick a new run id'
        )
    if previous is not None and previous.state == RunState.ABORTED:
        if not override_abort:
            raise Aborted(
                f'run "{run_id}" was aborted ({previous.reason}); fix the cause, then rerun with'
                " --override-abort to continue it, or start a new run id"
            )
        log.warning("abort_overridden", run_id=run_id, reason=previous.reason)


def window_for(
    previous: RunRecord | None,
    checked: CheckedJob,
    fingerprint: str,
    target: str,
    run_id: str,
    now: datetime,
) -> Window:
    """The run's window: resolved at its first start, so a resumed device gets the same expiry."""
    if previous is None:
        return checked.window
    if previous.job_hash != fingerprint:
        raise RunRefused(
            f'run "{run_id}" was started with other commands or another window; '
            "pick a new run id (--run-id) for the changed job"
        )
    if previous.target != target:
        raise RunRefused(
            f'run "{run_id}" was sent to {previous.target}, not {target}; pick a new run id'
        )
    window = Window(
        valid=datetime.fromisoformat(previous.valid_time) if previous.valid_time else None,
        expired=datetime.fromisoformat(previous.expired_time),
    )
    if window.expired <= now:
        raise RunRefused(
            f'run "{run_id}"\'s window closed at {window.expired.isoformat()}; start a new run id to send again'
        )
    return window


async def recover_in_doubt(
    ledger: LedgerStore,
    run_id: str,
    platform: PlatformQueries,
    limiter: RateLimiter,
    checked: CheckedJob,
    kept_as_sent: frozenset[str],
    *,
    resend: bool,
    fallback_sent_at: float,
    min_age: float,
    shard: Shard = WHOLE,
) -> ReconcileReport | None:
    """Settle the run's in-doubt rows from the platform's history before anything is sent.

    With --resend-in-doubt they are left as they are: the engine sends them again.
    """
    if resend:
        log.warning("resending_in_doubt", run_id=run_id, rows=len(ledger.in_doubt(run_id)))
        return None
    in_doubt: list[InDoubt] = [r for r in ledger.in_doubt(run_id) if shard.owns(r.imei)]
    if not in_doubt:
        return None
    return await reconcile_run(
        ledger,
        run_id,
        platform,
        limiter,
        fallback_sent_at=fallback_sent_at,
        # compared with what was sent: a rendering whose hash the row stored
        requests=sent_requests(
            ledger, run_id, checked.plan, {row.imei for row in in_doubt} - kept_as_sent
        ),
        min_age=min_age,
        owns=shard.owns if shard.count > 1 else None,
    )


def end_state(
    options: RunOptions, result: RunResult, run_id: str, devices: int
) -> tuple[RunState, str | None]:
    """The state an invocation leaves its run in, and why (for `status`)."""
    state, reason = RunState.FINISHED, None
    subset = (
        bool(options.fleets)
        or options.imeis is not None
        or options.limit is not None
        or options.shard.count > 1
    )
    if subset and result.remaining:
        result.next_command = next_command(options, run_id)
        state = RunState.PARTIAL
        reason = (
            f"{result.remaining} of {devices} devices not settled yet;"
            f" `{result.next_command}` sends them"
        )
        if options.shard.count > 1:
            reason = (
                f"shard {options.shard}: {result.remaining} of the run's {devices} devices not"
                " settled yet; each shard sends its own (`status` over every shard's ledger"
                f" shows the whole run; `{result.next_command}` resumes this shard)"
            )
    if isinstance(result.fatal, Aborted):
        state, reason = RunState.ABORTED, str(result.fatal)
    elif result.fatal is not None:
        state, reason = RunState.STOPPED, str(result.fatal)
    elif result.paused is not None:
        state, reason = RunState.PAUSED, result.paused
    elif result.signal is not None:
        state, reason = RunState.STOPPED, f"stopped by {signal.Signals(result.signal).name}"
    return state, reason


def counts_of(ledger: LedgerStore, run_id: str, shard: Shard) -> dict[str, int]:
    """Rows per status of the run, or of a shard's own devices: a shard's exit code and
    summary speak of what it sends, not of the other shards' rows in a shared ledger."""
    if shard.count == 1:
        return ledger.counts(run_id)
    counts: dict[str, int] = {}
    for row in ledger.items(run_id):
        if shard.owns(row["imei"]):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def next_command(options: RunOptions, run_id: str) -> str:
    """The command line that sends what a subset left: the same run, without the subset."""
    parts = ["onenet-dispatch", "run", shlex.quote(str(options.job))]
    if options.simulate:
        parts.append("--simulate")
    if options.run_id is not None or options.simulate:
        parts += ["--run-id", shlex.quote(run_id)]
    if options.shard.count > 1:
        # a shard's remainder is sent by the same shard: the others send their own
        parts += ["--shard", str(options.shard)]
    if options.ledger is not None:
        parts += ["--ledger", shlex.quote(str(options.ledger))]
    if options.config is not None:
        parts += ["--config", shlex.quote(str(options.config))]
    if options.base_url is not None:
        parts += ["--base-url", shlex.quote(options.base_url)]
    return " ".join(parts)
