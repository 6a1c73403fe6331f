"""The engine: one task group per run, producer -> bounded stream -> workers -> ledger writer.

It owns concurrency, the rate, the order of a device's commands, retries and
shutdown. It reaches the network only through ``Transport`` and the disk only
through ``LedgerWriter``.

Per device, commands go in the job's order: the next is sent only after the one
before was answered ``ok``. A ``failed`` command skips the rest of the device; after
an ``in_doubt`` one the rest stay ``pending`` until it is settled.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import anyio
import structlog

from dispatcher.clock import Clock, unix_now
from dispatcher.engine.abort import ramp_rate
from dispatcher.engine.ahead import take_slot
from dispatcher.engine.breaker import CircuitBreaker
from dispatcher.engine.handout import Handoff, Work, hand_out, ignore
from dispatcher.engine.settings import EngineSettings, Rollout, Totals
from dispatcher.engine.waits import sleep_or_stop
from dispatcher.errors import (
    Aborted,
    CredentialsRefused,
    DispatcherError,
    LedgerError,
    PlatformUnavailable,
)
from dispatcher.ledger import Answer, Status
from dispatcher.ledger.writer import LedgerWriter
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.errnos import platform_level
from dispatcher.onenet.transport import Transport
from dispatcher.outcome import Kind, Outcome
from dispatcher.plan import DeviceWork, Request
from dispatcher.rolloutspec import RampSpec
from dispatcher.timewindow import Window

log = structlog.get_logger("dispatcher.engine")

_STATUS = {Kind.OK: Status.OK, Kind.FAILED: Status.FAILED, Kind.IN_DOUBT: Status.IN_DOUBT}
REGISTER_BATCH = (
    900  # devices registered per transaction by the producer (901 SQL parameters: under 999)
)
SLOW_DOWN_FACTOR = 0.5  # the platform's rate-limit errno halves the run's rate ...
SLOW_DOWN_SECONDS = 10.0  # ... for this long


class Engine:
    def __init__(
        self,
        devices: Callable[[], Iterator[DeviceWork]],
        *,
        window: Window,
        transport: Transport,
        limiter: RateLimiter,
        writer: LedgerWriter,
        clock: Clock,
        settings: EngineSettings,
        stop: anyio.Event,
        rollout: Rollout,
        rng: random.Random | None = None,
    ) -> None:
        self._devices = devices
        self._window = window
        self._transport = transport
        self._limiter = limiter
        self._writer = writer
        self._clock = clock
        self._settings = settings
        self._stop = stop
        self._rng = rng or random.Random()
        self._rollout = rollout
        self._work_scope: anyio.CancelScope | None = None
        self.totals = Totals()
        self.fatal: DispatcherError | None = None
        self._breaker = CircuitBreaker(settings.breaker_window, settings.breaker_threshold)
        # rows failed by platform-level answers, reopened if the breaker trips
        self._platform_failed: deque[tuple[str, int]] = deque(maxlen=settings.breaker_window)

    def hard_stop(self) -> None:
        """Stop now: requests in flight are abandoned (their rows stay ``sending``)."""
        self._stop.set()
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def run(self) -> Totals:
        rollout = self._rollout
        self.totals.waves = rollout.waves.waves
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._writer.run)
            try:
                async with anyio.create_task_group() as inner:
                    self._work_scope = inner.cancel_scope
                    if rollout.ramp is not None:
                        inner.start_soon(self._ramp, rollout.ramp)
                    try:
                        await self._waves()
                    except LedgerError as exc:
                        # the wave's mark, or a confirmation read from the ledger: the run
                        # stops with the ledger's error (exit 2), not an ExceptionGroup
                        self._fail(exc)
                    inner.cancel_scope.cancel()  # the ramp task
            finally:
                with anyio.CancelScope(shield=True):
                    await self._writer.close()
        if self._writer.failed is not None and self.fatal is None:
            # answers are not awaited: a commit that failed after the last send shows here
            self.fatal = self._writer.failed
        return self.totals

    async def _waves(self) -> None:
        rollout = self._rollout
        for wave in range(rollout.start_wave, rollout.waves.waves):
            if wave > rollout.start_wave and not await self._between_waves(wave):
                break
            if self._stop.is_set():
                break
            self.totals.wave = wave
            if rollout.on_wave is not None:
                await rollout.on_wave(wave)
            log.info("wave_started", wave=wave + 1, waves=rollout.waves.waves)
            await self._run_wave(wave)
            if self._stop.is_set():
                break
            log.info("wave_finished", wave=wave + 1, waves=rollout.waves.waves)

    async def _run_wave(self, wave: int) -> None:
        """One producer and the worker pool over the devices of ``wave``; returns when all are done."""
        workers = self._settings.concurrency
        handoff = Handoff(workers, workers)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce, handoff, wave)
            for _ in range(workers):
                tg.start_soon(self._work, handoff)

    async def _between_waves(self, wave: int) -> bool:
        """The pause before ``wave``: a timed wait, or a confirmation. False: stop here."""
        rollout = self._rollout
        if rollout.confirm is not None:
            self.totals.paused = f"waiting for confirmation to start wave {wave + 1}"
            log.info("wave_waiting_for_confirmation", wave=wave + 1)
            go_on = await rollout.confirm(wave)
            self.totals.paused = None
            if not go_on:
                self.totals.stopped_for_confirmation = True
            return go_on
        if rollout.pause > timedelta(0):
            self.totals.paused = f"pause before wave {wave + 1}"
            log.info("wave_pause", wave=wave + 1, seconds=rollout.pause.total_seconds())
            await self._sleep_or_stop(rollout.pause.total_seconds())
            self.totals.paused = None
        return not self._stop.is_set()

    async def _sleep_or_stop(self, seconds: float) -> None:
        await sleep_or_stop(self._clock, self._stop, seconds)

    async def _ramp(self, ramp: RampSpec) -> None:
        """Grow the rate from ``ramp.start`` by ``ramp.factor`` every ``ramp.every``."""
        target = self._limiter.target
        started = self._clock.monotonic()
        while True:
            rate = ramp_rate(ramp, target, self._clock.monotonic() - started)
            self._limiter.set_rate(rate)
            log.info("rate", per_second=rate)
            if rate >= target:
                return
            await self._clock.sleep(ramp.period.total_seconds())

    async def _gate(self) -> bool:
        """Wait while outside the dispatch window; False when the run must stop instead."""
        dispatch = self._rollout.dispatch
        if dispatch is None:
            return True
        while not self._stop.is_set():
            now = self._clock.wall()
            opens = dispatch.next_open(now)
            if opens <= now:
                self.totals.paused = None
                return True
            if self._rollout.no_wait:
                if not self.totals.stopped_outside_window:
                    log.info("outside_dispatch_window", opens=opens.isoformat(), action="exit")
                self.totals.stopped_outside_window = True
                self._stop.set()
                return False
            if self.totals.paused is None:
                log.info("outside_dispatch_window", opens=opens.isoformat(), action="sleep")
            self.totals.paused = f"outside the dispatch window until {opens.isoformat()}"
            await self._sleep_or_stop((opens - now).total_seconds())
        return False

    def _fail(self, exc: DispatcherError) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.hard_stop()

    async def _produce(self, send: Handoff, wave: int) -> None:
        """Stream the wave's devices to the workers, registering them in large batches.

        A batch's registration is committed by the writer while the next batch is parsed:
        the producer hands a batch out only after its rows exist, one batch behind.
        """
        rollout = self._rollout
        batch: list[DeviceWork] = []
        behind: tuple[list[DeviceWork], asyncio.Future[Any]] | None = None
        try:
            for position, device in enumerate(self._devices()):
                if self._stop.is_set() or self._limit_reached():
                    return
                if rollout.waves.wave_of(position, device.device.imei) != wave:
                    continue
                if rollout.fleets is not None and device.device.fleet not in rollout.fleets:
                    continue
                if rollout.imeis is not None and device.device.imei not in rollout.imeis:
                    continue
                if rollout.shard is not None and not rollout.shard.owns(device.device.imei):
                    continue
                if not device.requests:
                    # settled before this run (the resume's comparison found every
                    # row ok, failed or skipped): nothing to register or send
                    self.totals.planned_devices += 1
                    self.totals.already_done += 1
                    continue
                batch.append(device)
                if len(batch) >= REGISTER_BATCH:
                    previous, behind = behind, (batch, self._register(batch))
                    batch = []
                    if previous is not None and not await self._hand_out(*previous, send):
                        return
            if batch and not self._stop.is_set():
                previous, behind = behind, (batch, self._register(batch))
                if previous is not None and not await self._hand_out(*previous, send):
                    return
            if behind is not None and not self._stop.is_set():
                await self._hand_out(*behind, send)
                behind = None
        except LedgerError as exc:
            self._fail(exc)
        finally:
            if behind is not None:
                # not handed out: its rows stay pending; its outcome is not wanted
                behind[1].add_done_callback(ignore)
            await send.close()

    def _register(self, batch: list[DeviceWork]) -> asyncio.Future[Any]:
        return self._writer.register_soon(
            [(d.device.imei, d.device.fleet, [(r.op, r.digest) for r in d.requests]) for d in batch]
        )

    def _limit_reached(self) -> bool:
        limit = self._rollout.limit
        return limit is not None and self.totals.started_devices >= limit

    async def _hand_out(
        self,
        batch: list[DeviceWork],
        registered: asyncio.Future[Any],
        send: Handoff,
    ) -> bool:
        try:
            return await hand_out(
                batch,
                registered,
                send,
                self.totals,
                self._settings.resend_in_doubt,
                self._limit_reached,
            )
        except LedgerError as exc:
            self._fail(exc)
            return False

    async def _work(self, handoff: Handoff) -> None:
        try:
            while (work := await handoff.get()) is not None:
                if self._stop.is_set():
                    return
                try:
                    await self._device(work)
                except LedgerError as exc:
                    self._fail(exc)
                    return
        finally:
            handoff.leave()

    async def _device(self, work: Work) -> None:
        requests = work.device.requests
        for request in requests[work.start :]:
            if self._stop.is_set() or not await self._gate():
                return  # the rest stay pending: the next run sends them
            answered = await self._command(request)
            if answered is None:
                return  # stopped before it was sent: stays pending
            status, errno = answered
            if status in (Status.OK, Status.FAILED):
                self._check_abort(status is Status.OK, errno)
            if status is Status.OK:
                continue
            if status is Status.FAILED and request.index + 1 < len(requests):
                await self._writer.skip_rest(
                    request.imei, request.index, f"command {request.index} failed; not sent"
                )
                self.totals.by_status["skipped"] = (
                    self.totals.by_status.get("skipped", 0) + len(requests) - request.index - 1
                )
            return

    def _check_abort(self, ok: bool, errno: int | None) -> None:
        reason = self._rollout.abort.record(ok, errno)
        if reason is not None and self.fatal is None:
            self.fatal = Aborted(f"rollout aborted: {reason}")
            log.error("rollout_aborted", reason=reason)
            self._stop.set()

    async def _command(self, request: Request) -> tuple[Status, int | None] | None:
        """Send one command, retrying what provably did not arrive; record its answer.

        None when the run stopped while this one waited for its turn: it was never sent.
        """
        attempts = 0
        cap = self._settings.attempts
        while True:
            # every attempt marked at its slot's time (ahead.py): a retry that leaves long
            # after the first attempt must not look older than it is to reconciliation
            marked = await take_slot(request, self._limiter, self._writer, self._clock, self._stop)
            if not marked and attempts == 0:
                return Status.PENDING, None
            if not marked or self._stop.is_set():
                # A stop (signal, breaker, abort) came while this retry waited for its
                # slot: it records the last attempt's answer as pending (provably not queued).
                status = Status.PENDING
                break
            attempts += 1
            self.totals.sent += 1
            outcome = await self._transport.send(request, self._window, self._clock.wall())
            if outcome.auth_refused:
                # Our key or token, not this device (the client has told the two apart):
                # every further request would be refused too. Stop; the row stays pending.
                self._refused(outcome)
                status = Status.PENDING
                break
            if self._breaker.record(outcome):
                await self._trip(outcome)
            if outcome.kind is not Kind.RETRY:
                status = _STATUS[outcome.kind]
                break
            if outcome.slow_down:
                self._limiter.slow_down(SLOW_DOWN_FACTOR, SLOW_DOWN_SECONDS)
            if outcome.retry_after is not None:
                # "come back later" is said to the whole client, not to this one request
                self._limiter.pause_until(
                    self._clock.monotonic() + min(outcome.retry_after, self._settings.backoff_max)
                )
            if outcome.max_attempts is not None:
                cap = min(cap, outcome.max_attempts)
            if attempts >= cap:
                status = Status.FAILED
                outcome = Outcome(
                    Kind.FAILED,
                    errno=outcome.errno,
                    error=f"{outcome.error} (after {attempts} attempts)",
                    http_status=outcome.http_status,
                )
                break
            await self._backoff(attempts, outcome)
            if self._stop.is_set():
                status = Status.PENDING  # provably not queued: the next run sends it
                break
        if status is Status.FAILED and platform_level(outcome):
            if self._breaker.tripped:
                status = Status.PENDING  # the platform, not the device, failed: resend next run
            else:
                self._platform_failed.append((request.imei, request.index))
        # Not awaited: the answer joins the next group commit (in the queue ahead of this
        # worker's next ``sending`` mark, so it is durable before the next request leaves);
        # the run counts it once that commit lands.
        self._writer.answer(
            Answer(
                imei=request.imei,
                command=request.index,
                status=status,
                uuid=outcome.uuid,
                errno=outcome.errno,
                error=None if status is Status.OK else outcome.error,
                http_status=outcome.http_status,
                attempts=attempts,
                answered_at=unix_now(),
            ),
            functools.partial(self.totals.count, status),
        )
        return status, outcome.errno

    def _refused(self, outcome: Outcome) -> None:
        """The key or token is wrong: stop sending at once; a rerun cannot help until it is fixed."""
        self._stop.set()
        if self.fatal is not None:
            return  # the first reason stands (the answers to requests already in flight)
        why = outcome.error or f"HTTP {outcome.http_status}"
        errno = f"errno {outcome.errno}: " if outcome.errno is not None else ""
        self.fatal = CredentialsRefused(
            f"the platform refused {self._settings.credentials} ({errno}{why}); nothing more was"
            " sent and the rows stay pending: fix the key, then run the same command again"
        )
        log.error("credentials_refused", errno=outcome.errno, error=why)

    async def _trip(self, outcome: Outcome) -> None:
        """Stop taking work: the platform itself is failing. Rows stay resumable."""
        why = outcome.error or (
            f"errno {outcome.errno}" if outcome.errno is not None else "no answer"
        )
        self.fatal = PlatformUnavailable(
            f"platform unavailable: {self._breaker.threshold:.0%} or more of the last"
            f" {self._breaker.window} requests failed platform-wide (last: {why});"
            " the run stopped and resumes with the same command"
        )
        log.error("platform_unavailable", last_error=why, window=self._breaker.window)
        self._stop.set()
        rows = list(self._platform_failed)
        self._platform_failed.clear()
        if rows:
            await self._writer.reopen(rows)

    async def _backoff(self, attempts: int, outcome: Outcome) -> None:
        """Exponential backoff with full jitter, or what the platform's Retry-After says."""
        if outcome.retry_after is not None:
            delay = min(outcome.retry_after, self._settings.backoff_max)
        else:
            ceiling = min(
                self._settings.backoff_max, self._settings.backoff_base * math.pow(2, attempts - 1)
            )
            delay = self._rng.uniform(0, ceiling)
        with anyio.move_on_after(delay):
            await self._stop.wait()
