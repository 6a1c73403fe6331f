"""``run``: check the job, open the ledger, send what is left to send, and say how it went.

This wires the parts together for one invocation; the sending itself is the
engine's. Everything that can be wrong with the input is found before anything is
written to the ledger or a request leaves. A first run checks before it opens (or
creates) its ledger; a rerun of a run the ledger holds opens it and owns the run first,
so that the check pass also compares each device's requests with what the run stored
(``resume.open_early``): the comparison only reads, and its refusal comes after the
check's.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio
import structlog

from dispatcher.check import CheckedJob, check_job, inputs_hash
from dispatcher.clock import Clock, RealClock, unix_now
from dispatcher.config import Config, Secret, load_config
from dispatcher.dispatch_window import DispatchWindow
from dispatcher.engine import Engine, EngineSettings, Rollout, Totals
from dispatcher.engine.abort import AbortRule
from dispatcher.errors import InputError
from dispatcher.imei import read_imei_file
from dispatcher.keybudget import key_lease
from dispatcher.ledger import DONE, LedgerStore, LedgerTarget, RunRecord, open_ledger, read_run
from dispatcher.ledger.writer import LedgerWriter
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.access import (
    authenticator_for,
    base_url_from,
    credentials_source,
    secret_values,
)
from dispatcher.onenet.auth import ApiKeyAuth, Authenticator, TokenAuth, user_res
from dispatcher.onenet.connect import connect
from dispatcher.problems import Problems
from dispatcher.progress import Meter, show_progress
from dispatcher.resume import (
    RECONCILE_MARGIN,
    RunState,
    counts_of,
    end_state,
    ledger_file,
    nothing_left,
    open_early,
    recover_in_doubt,
    refuse_ended,
    refuse_other_split,
    window_for,
)
from dispatcher.rolloutspec import RampSpec
from dispatcher.runopts import UNLIMITED_RATE, RunOptions, RunResult
from dispatcher.runsignals import watch_signals
from dispatcher.sent import (
    FleetChanges,
    accept_settled,
    find_changes,
    refuse_or_accept,
)
from dispatcher.timewindow import Window

__all__ = ["RunOptions", "RunResult", "run_job"]

log = structlog.get_logger("dispatcher.run")


def run_job(options: RunOptions) -> RunResult:
    """One invocation of ``run``; raises InputError/RunRefused before anything is sent."""
    config = load_config(options.config)
    now = datetime.now(UTC)
    done = nothing_left(options, config)
    if done is not None:
        return done
    ledger_path = ledger_file(options, config)
    with contextlib.ExitStack() as stack:
        # A rerun opens its ledger first: the check pass then compares request hashes too.
        early = open_early(options, ledger_path, stack)
        checked = check_job(
            options.job,
            now=now,
            strict=options.strict,
            loaded=early.loaded,
            consume=early.comparison.consume if early.comparison is not None else None,
        )
        job = checked.plan.job
        if options.simulate:
            target = "simulator"
            auth_factory = None
        else:
            target = base_url_from(options.base_url or config.base_url)
            auth_factory = authenticator_for(config)
        run_id = options.run_id or (
            f"{job.name}-simulated-{now.strftime('%Y%m%dT%H%M%S')}"
            if options.simulate
            else job.name
        )
        fingerprint = job.fingerprint()
        if options.imei_file is not None:
            options = dataclasses.replace(options, imeis=read_imei_file(options.imei_file))
        unknown = sorted(set(options.fleets) - {f.name for f in job.fleets})
        if unknown:
            raise InputError(
                f"--fleet {', '.join(unknown)}: no such fleet in the job ({', '.join(f.name for f in job.fleets)})"
            )
        ledger = early.ledger
        if ledger is None:
            ledger = stack.enter_context(open_ledger(ledger_path))
            # a shard owns its own rows: the shards of a run send side by side on a shared ledger
            ledger.lock(run_id, options.shard.index if options.shard.count > 1 else None)
        # every log event of this run carries its run id (JSON lines under systemd and in CI)
        stack.enter_context(structlog.contextvars.bound_contextvars(run_id=run_id))
        previous = ledger.run(run_id)
        refuse_other_split(previous, options, config, run_id)
        window = window_for(previous, checked, fingerprint, target, run_id, now)
        refuse_ended(previous, run_id, override_abort=options.override_abort)
        changes = FleetChanges()
        if previous is not None:
            # Before anything is sent: does each device still render what the run stored?
            # (compared on the check pass when the ledger was opened before it)
            changes = (
                early.comparison.changes
                if early.comparison is not None
                else find_changes(ledger, run_id, checked.plan)
            )
        kept_as_sent = refuse_or_accept(
            ledger, run_id, changes, accept=options.accept_changed_fleet
        )
        recovered = ledger.recover_sending(
            run_id, options.shard.owns if options.shard.count > 1 else None
        )
        started = unix_now()
        ledger.start_run(
            RunRecord(
                run_id=run_id,
                job_name=job.name,
                job_path=str(options.job.resolve()),
                job_hash=fingerprint,
                target=target,
                valid_time=window.valid.isoformat() if window.valid else None,
                expired_time=window.expired.isoformat(),
                first_started_at=previous.first_started_at if previous else started,
                started_at=started,
                ended_at=None,
                state=RunState.RUNNING,
                reason=None,
                devices=checked.stats.devices,
                waves=len(job.rollout.waves),
                wave=previous.wave if previous else 0,
                confirmed_wave=previous.confirmed_wave if previous else 0,
                rollout=job.rollout.model_dump_json(),
                inputs_hash=None,
                shards=options.shard.count,
            )
        )
        log.info(
            "run_started", resumed=previous is not None, in_doubt_recovered=recovered, job=job.name
        )
        result = RunResult(
            run_id=run_id,
            ledger=ledger_path,
            target=target,
            totals=Totals(),
            counts={},
            warnings=checked.problems,
            resumed=previous is not None,
            first_started_at=previous.first_started_at if previous else started,
        )
        try:
            anyio.run(
                _send_all,
                options,
                kept_as_sent,
                changes.is_settled if len(changes.settled) else None,
                config,
                checked,
                window,
                ledger,
                run_id,
                target,
                auth_factory,
                result,
            )
        finally:
            if kept_as_sent:
                # in-doubt rows of accepted devices that reconcile settled: accepted too
                accept_settled(ledger, run_id, changes)
            result.counts = counts_of(ledger, run_id, options.shard)
            # The run's state derives from the whole job, never from this invocation's subset.
            result.remaining = max(0, checked.stats.devices - ledger.settled_devices(run_id))
            state, reason = end_state(options, result, run_id, checked.stats.devices)
            result.state = state
            # Remember the inputs of a pass that left nothing to send: a rerun can then say so at once.
            complete = (
                state == RunState.FINISHED
                and not result.remaining
                and not set(result.counts) - DONE
                and not options.simulate
            )
            digest = inputs_hash(checked.plan.loaded, strict=options.strict) if complete else None
            ledger.end_run(run_id, unix_now(), state, reason, digest)
            log.info("run_ended", state=state, reason=reason, **result.counts)
    return result


async def _send_all(
    options: RunOptions,
    kept_as_sent: frozenset[str],
    settled: Callable[[int, str], bool] | None,
    config: Config,
    checked: CheckedJob,
    window: Window,
    ledger: LedgerStore,
    run_id: str,
    target: str,
    auth: Authenticator | None,
    result: RunResult,
) -> None:
    job = checked.plan.job
    clock = options.clock or RealClock()
    stop = anyio.Event()
    ablations = options.ablations
    # the shards of a run share the key's budget: each sends at its share (rate.shard_rate)
    per_second = options.shard.rate(job.rate.per_second, job.rate.shard_rate)
    limiter = RateLimiter(per_second if ablations.rate_limit else UNLIMITED_RATE, clock)
    if options.shard.count > 1:
        log.info("shard", shard=str(options.shard), per_second=per_second)
    async with (
        _platform(options, config, target, auth) as (base_url, authenticator, secret_values),
        # every process on the key, this one included, sends at its share of the key's budget
        key_lease(
            ledger.path,
            authenticator,
            run_id=run_id,
            kind="run",
            wanted=per_second,
            budget=config.key_budget,
            limiter=limiter,
        )
        if not options.simulate and ablations.rate_limit
        else contextlib.nullcontext(),
        connect(
            config,
            base_url,
            authenticator,
            concurrency=job.rate.concurrency,
            secrets=secret_values,
            guard_second_send=options.ablations.second_send_guard,
        ) as client,
    ):
        result.reconciled = await recover_in_doubt(
            ledger,
            run_id,
            client,
            limiter,
            checked,
            kept_as_sent,
            resend=options.resend_in_doubt,
            fallback_sent_at=result.first_started_at,
            min_age=config.http.read_timeout + RECONCILE_MARGIN,
            shard=options.shard,
        )
        writer = LedgerWriter(
            ledger,
            run_id,
            capacity=job.rate.concurrency + 8,
            record_sends=ablations.ledger_sends,
        )
        rollout = _rollout(options, checked, ledger, writer, run_id, stop, clock)
        engine = Engine(
            # devices the resume found settled are streamed unrendered and not registered
            lambda: checked.plan.devices(Problems(), settled=settled),
            rollout=rollout,
            window=window,
            transport=client,
            limiter=limiter,
            writer=writer,
            clock=clock,
            settings=EngineSettings(
                concurrency=job.rate.concurrency,
                attempts=config.retries.attempts,
                backoff_base=config.retries.backoff_base,
                backoff_max=config.retries.backoff_max,
                resend_in_doubt=options.resend_in_doubt,
                breaker_window=config.breaker.window,
                breaker_threshold=config.breaker.threshold,
                credentials="the simulator's key"
                if options.simulate
                else credentials_source(config),
            ),
            stop=stop,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, engine, stop, result, config.shutdown.grace)
            if options.console is not None:
                tg.start_soon(
                    functools.partial(
                        show_progress,
                        _meter(engine, limiter, checked, ledger, run_id, options),
                        options.console,
                        interval=options.progress_interval,
                    )
                )
            result.totals = await engine.run()
            tg.cancel_scope.cancel()
        result.fatal = engine.fatal


def _meter(
    engine: Engine,
    limiter: RateLimiter,
    checked: CheckedJob,
    ledger: LedgerStore,
    run_id: str,
    options: RunOptions,
) -> Meter:
    """Progress counts this run's rows: those settled before this invocation, and its answers."""
    counts = ledger.counts(run_id)
    initial = sum(n for status, n in counts.items() if status not in ("pending", "sending"))
    total = checked.total_requests
    if options.limit is not None:
        total = min(total, initial + options.limit * checked.plan.commands_per_device)
    return Meter(engine.totals, limiter, total=total, initial=counts)


@asynccontextmanager
async def _platform(
    options: RunOptions, config: Config, target: str, auth: Authenticator | None
) -> AsyncIterator[tuple[str, Authenticator, tuple[str, ...]]]:
    """The platform to send to: the configured one, or a simulator of its profile started here."""
    if not options.simulate:
        assert auth is not None
        yield target, auth, secret_values(auth)
        return
    from dispatcher.simulator import SimulatorConfig, running_simulator

    key = secrets.token_urlsafe(24)
    sim_config = SimulatorConfig(api_key=key)
    simulated: Authenticator = ApiKeyAuth(Secret(key))
    if not config.profile.api_key:
        # A console that takes tokens only: a user token signed with a throwaway access key.
        access = base64.b64encode(secrets.token_bytes(32)).decode()
        sim_config = SimulatorConfig(
            api_key=key, platform=config.platform, user_id="simulated", access_key=access
        )
        simulated = TokenAuth(
            "", Secret(access), res=user_res("simulated"), version=config.profile.token_version
        )
        key = access
    async with running_simulator(sim_config, host="127.0.0.1", port=0) as sim:
        log.info("simulator_started", base_url=sim.base_url)
        yield sim.base_url, simulated, (key,)


def _rollout(
    options: RunOptions,
    checked: CheckedJob,
    ledger: LedgerStore,
    writer: LedgerWriter,
    run_id: str,
    stop: anyio.Event,
    clock: Clock,
) -> Rollout:
    """The run's rollout controls, resolved against its fleet and its ledger."""
    job = checked.plan.job
    spec = job.rollout
    waves = checked.wave_map(run_id)
    record = ledger.run(run_id)
    assert record is not None
    counts = ledger.counts(run_id)
    abort = (
        AbortRule(spec.abort)
        if options.override_abort
        else AbortRule(
            spec.abort, counts.get("ok", 0) + counts.get("failed", 0), counts.get("failed", 0)
        )
    )

    async def confirm(wave: int) -> bool:
        return await _confirmation(options, ledger.path, run_id, wave, stop, clock)

    return Rollout(
        waves=waves,
        start_wave=min(record.wave, waves.waves - 1),
        pause=spec.pause,
        confirm=confirm if spec.confirm else None,
        abort=abort,
        dispatch=DispatchWindow(job.dispatch_window) if job.dispatch_window is not None else None,
        no_wait=options.no_wait,
        ramp=_shard_ramp(options, checked),
        fleets=frozenset(options.fleets) if options.fleets else None,
        imeis=options.imeis,
        shard=options.shard if options.shard.count > 1 else None,
        limit=options.limit,
        on_wave=writer.set_wave,
    )


def _shard_ramp(options: RunOptions, checked: CheckedJob) -> RampSpec | None:
    """The ramp's start is a rate too: divided among the shards like ``per_second``."""
    rate = checked.plan.job.rate
    if rate.ramp is None:
        return None
    start = options.shard.rate(rate.ramp.start, rate.shard_rate)
    return rate.ramp.model_copy(update={"start": start})


CONFIRM_POLL_SECONDS = 2.0


async def _confirmation(
    options: RunOptions,
    ledger_path: LedgerTarget,
    run_id: str,
    wave: int,
    stop: anyio.Event,
    clock: Clock,
) -> bool:
    """Wait until wave ``wave`` is confirmed: by `onenet-dispatch confirm-wave`, or a yes on the terminal."""
    if options.interactive:
        answer = await anyio.to_thread.run_sync(input, f"Start wave {wave + 1}? [y/N] ")
        return answer.strip().lower() in ("y", "yes")
    while not stop.is_set():
        record = read_run(ledger_path, run_id)
        if record is not None and record.confirmed_wave >= wave:
            log.info("wave_confirmed", wave=wave + 1)
            return True
        if options.no_wait:
            return False
        with anyio.move_on_after(CONFIRM_POLL_SECONDS):
            await stop.wait()
    return False
