"""Acting on a run after it was sent: settle in-doubt rows (`reconcile`), see where queued
commands stand (`track`), and take back those still waiting (`cancel`).

Each opens the run's ledger, talks to the platform the run was sent to through the
same client, and writes what it learns back to the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import structlog

from dispatcher.clock import RealClock
from dispatcher.config import Config, load_config
from dispatcher.errors import CredentialsRefused, InputError
from dispatcher.jobfile import Job, load_job
from dispatcher.keybudget import key_lease
from dispatcher.ledger import LedgerStore, LedgerTarget, RunRecord, open_existing
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.access import authenticator_for, base_url_from
from dispatcher.onenet.auth import Authenticator
from dispatcher.onenet.client import OneNetClient
from dispatcher.onenet.connect import connect
from dispatcher.plan import Plan, Request
from dispatcher.reconcile import ReconcileReport, reconcile_run
from dispatcher.resume import RECONCILE_MARGIN, RunState
from dispatcher.sent import sent_requests
from dispatcher.tracking import (
    FINAL,
    PassReport,
    already_delivered,
    cancel_candidates,
    cancel_pass,
    track_pass,
)

log = structlog.get_logger("dispatcher.lifecycle")

FALLBACK_RATE = 20.0  # platform queries per second when the run's job file is not at hand
FALLBACK_CONCURRENCY = 4


def _job_of(record: RunRecord) -> Job | None:
    """The run's job, when its file is still there and unchanged."""
    try:
        loaded = load_job(Path(record.job_path))
    except InputError:
        return None
    return loaded.job if loaded.job.fingerprint() == record.job_hash else None


def _target(record: RunRecord, base_url: str | None) -> str:
    target = base_url or record.target
    if target == "simulator":
        raise InputError(
            f'run "{record.run_id}" was sent to a simulator that is gone; pass --base-url to ask another'
        )
    return base_url_from(target)


def stop_if_refused(client: OneNetClient) -> None:
    """After a pass: the platform refused our credentials, so the command ends with exit 2."""
    refusal = client.auth_refusal
    if refusal is not None:
        raise CredentialsRefused.answered(refusal.errno, refusal.error, "")


@dataclass(frozen=True)
class ReconcileOptions:
    ledger: LedgerTarget
    run_id: str | None = None
    config: Path | None = None
    base_url: str | None = None


@dataclass
class ReconcileOutcome:
    reports: dict[str, ReconcileReport]
    skipped: dict[str, str]  # run id -> why it was not reconciled


def reconcile_ledger(options: ReconcileOptions) -> ReconcileOutcome:
    """``reconcile``: settle the in-doubt rows of one run, or of every run, of a ledger."""
    config = load_config(options.config)
    outcome = ReconcileOutcome({}, {})
    with open_existing(options.ledger) as ledger:
        if options.run_id is not None:
            runs = [ledger.require_run(options.run_id)]
        else:
            runs = [r for r in ledger.runs() if ledger.in_doubt(r.run_id)]
        targets: list[tuple[RunRecord, str]] = []
        for record in runs:
            if not ledger.in_doubt(record.run_id):
                continue
            target = options.base_url or record.target
            if target == "simulator":
                outcome.skipped[record.run_id] = "sent to a simulator that is gone; nothing to ask"
                continue
            targets.append((record, base_url_from(target)))
        if not targets:
            return outcome
        auth = authenticator_for(config)
        # Every run it settles: a shared ledger (PostgreSQL) locks per run, not per file.
        for record, _ in targets:
            ledger.lock(record.run_id)
        anyio.run(_reconcile_all, ledger, targets, config, auth, outcome)
    return outcome


async def _reconcile_all(
    ledger: LedgerStore,
    targets: list[tuple[RunRecord, str]],
    config: Config,
    auth: Authenticator,
    outcome: ReconcileOutcome,
) -> None:
    clock = RealClock()
    for record, base_url in targets:
        requests, rate = _job_requests(ledger, record)
        limiter = RateLimiter(rate, clock)
        async with (
            key_lease(
                ledger.path,
                auth,
                run_id=record.run_id,
                kind="reconcile",
                wanted=rate,
                budget=config.key_budget,
                limiter=limiter,
            ),
            connect(config, base_url, auth, concurrency=4) as client,
        ):
            outcome.reports[record.run_id] = await reconcile_run(
                ledger,
                record.run_id,
                client,
                limiter,
                fallback_sent_at=record.first_started_at,
                requests=requests,
                min_age=config.http.read_timeout + RECONCILE_MARGIN,
            )
            stop_if_refused(client)


def _job_requests(
    ledger: LedgerStore, record: RunRecord
) -> tuple[dict[tuple[str, int], Request] | None, float]:
    """The run's rendered requests for its in-doubt devices, when its job file is unchanged."""
    from dispatcher.jobfile import load_job

    try:
        loaded = load_job(Path(record.job_path))
    except InputError:
        log.warning("job_unavailable", run_id=record.run_id, job=record.job_path)
        return None, FALLBACK_RATE
    if loaded.job.fingerprint() != record.job_hash:
        log.warning("job_changed", run_id=record.run_id, job=record.job_path)
        return None, FALLBACK_RATE
    imeis = {row.imei for row in ledger.in_doubt(record.run_id)}
    # only renderings that hash to what was sent: a changed fleet row is no evidence
    return sent_requests(ledger, record.run_id, Plan(loaded), imeis), loaded.job.rate.per_second


@dataclass(frozen=True)
class TrackOptions:
    ledger: LedgerTarget
    run_id: str
    config: Path | None = None
    base_url: str | None = None
    watch: bool = False
    interval: timedelta = timedelta(minutes=10)
    rate: float | None = None  # default: the job's rate
    concurrency: int | None = None


@dataclass
class TrackOutcome:
    passes: list[PassReport] = field(default_factory=list)
    delivery: dict[str, int] = field(default_factory=dict)  # queued rows by delivery state
    window_closed: bool = False

    @property
    def all_succeeded(self) -> bool:
        return bool(self.delivery) and set(self.delivery) == {"success"}

    @property
    def all_final(self) -> bool:
        return bool(self.delivery) and set(self.delivery) <= FINAL


def _pace(record: RunRecord, rate: float | None, concurrency: int | None) -> tuple[float, int]:
    job = _job_of(record)
    return (
        rate or (job.rate.per_second if job else FALLBACK_RATE),
        concurrency or (job.rate.concurrency if job else FALLBACK_CONCURRENCY),
    )


def track_run(options: TrackOptions) -> TrackOutcome:
    """``track``: ask where each unfinished queued command stands, once or until all are final."""
    config = load_config(options.config)
    with open_existing(options.ledger) as ledger:
        record = ledger.require_run(options.run_id)
        target = _target(record, options.base_url)
        auth = authenticator_for(config)
        rate, concurrency = _pace(record, options.rate, options.concurrency)
        expires = datetime.fromisoformat(record.expired_time)
        outcome = TrackOutcome()
        anyio.run(
            _track,
            ledger,
            record,
            target,
            auth,
            config,
            rate,
            concurrency,
            options,
            expires,
            outcome,
        )
        outcome.delivery = ledger.delivery_counts(record.run_id)
    return outcome


async def _track(
    ledger: LedgerStore,
    record: RunRecord,
    target: str,
    auth: Authenticator,
    config: Config,
    rate: float,
    concurrency: int,
    options: TrackOptions,
    expires: datetime,
    outcome: TrackOutcome,
) -> None:
    limiter = RateLimiter(rate, RealClock())
    async with (
        # `track` spends from the key's budget like the rollouts on it (keybudget)
        key_lease(
            ledger.path,
            auth,
            run_id=record.run_id,
            kind="track",
            wanted=rate,
            budget=config.key_budget,
            limiter=limiter,
        ),
        connect(config, target, auth, concurrency=concurrency) as client,
    ):
        while True:
            closed = datetime.now(UTC) >= expires  # a last pass after the close sees "expired"
            report = await track_pass(
                ledger, record.run_id, client, limiter, concurrency=concurrency
            )
            outcome.passes.append(report)
            stop_if_refused(client)
            left = len(ledger.queued(record.run_id, final=FINAL))
            if not options.watch or left == 0 or closed:
                outcome.window_closed = closed
                return
            log.info("tracking_wait", unfinished=left, seconds=options.interval.total_seconds())
            await anyio.sleep(
                min(
                    options.interval.total_seconds(),
                    max(1.0, (expires - datetime.now(UTC)).total_seconds()),
                )
            )


@dataclass(frozen=True)
class CancelOptions:
    ledger: LedgerTarget
    run_id: str
    config: Path | None = None
    base_url: str | None = None
    fleets: frozenset[str] | None = None
    imeis: frozenset[str] | None = None
    dry_run: bool = False


@dataclass
class CancelOutcome:
    candidates: int = 0
    delivered_before: int = 0  # known (from `track`) to have reached their device already
    report: PassReport | None = None
    delivery: dict[str, int] = field(default_factory=dict)


def cancel_run(options: CancelOptions) -> CancelOutcome:
    """``cancel``: take back the run's commands still waiting on the platform."""
    config = load_config(options.config)
    with open_existing(options.ledger) as ledger:
        record = ledger.require_run(options.run_id)
        rows = cancel_candidates(ledger, record.run_id, options.fleets, options.imeis)
        outcome = CancelOutcome(
            candidates=len(rows),
            delivered_before=already_delivered(
                ledger, record.run_id, options.fleets, options.imeis
            ),
        )
        if options.dry_run:
            outcome.delivery = ledger.delivery_counts(record.run_id)
            return outcome
        target = _target(record, options.base_url)
        auth = authenticator_for(config)
        ledger.lock(record.run_id)
        # Before any request: a run being taken back must never be resumed by mistake.
        ledger.set_state(
            record.run_id,
            RunState.CANCELLED,
            f"cancelled by the operator at {datetime.now(UTC).isoformat(timespec='seconds')}",
        )
        rate, concurrency = _pace(record, None, None)

        async def go() -> None:
            limiter = RateLimiter(rate, RealClock())
            async with connect(config, target, auth, concurrency=concurrency) as client:
                outcome.report = await cancel_pass(
                    ledger, record.run_id, rows, client, limiter, concurrency=concurrency
                )
                stop_if_refused(client)

        anyio.run(go)
        outcome.delivery = ledger.delivery_counts(record.run_id)
    return outcome
