"""The engine: one task group per run, producer -> bounded stream -> workers -> ledger writer.

It owns concurrency, the rate, the order of a device's commands, retries and
shutdown. It reaches the network only through ``Transport`` and the disk only
through ``LedgerWriter``.

Per device, commands go in the job's order: the next is sent only after the one
before was answered ``ok``. A ``failed`` command skips the rest of the device; after
an ``in_doubt`` one the rest stay ``pending`` until it is settled.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dispatcher.breaker import CircuitBreaker, platform_level
from dispatcher.client import Transport
from dispatcher.clock import Clock, unix_now
from dispatcher.errors import DispatcherError, LedgerError, PlatformUnavailable
from dispatcher.ledger import Answer, Status
from dispatcher.limiter import RateLimiter
from dispatcher.outcome import Kind, Outcome
from dispatcher.plan import DeviceWork, Request
from dispatcher.timewindow import Window
from dispatcher.writer import LedgerWriter

log = structlog.get_logger("dispatcher.engine")

_STATUS = {Kind.OK: Status.OK, Kind.FAILED: Status.FAILED, Kind.IN_DOUBT: Status.IN_DOUBT}
REGISTER_BATCH = 256  # devices registered in the ledger per transaction by the producer
SLOW_DOWN_FACTOR = 0.5  # the platform's rate-limit errno halves the run's rate ...
SLOW_DOWN_SECONDS = 10.0  # ... for this long


@dataclass(frozen=True, slots=True)
class EngineSettings:
    concurrency: int
    attempts: int
    backoff_base: float
    backoff_max: float
    resend_in_doubt: bool = False
    breaker_window: int = 20
    breaker_threshold: float = 0.8


@dataclass
class Totals:
    """What this invocation did, for progress and the summary."""

    planned_devices: int = 0
    already_done: int = 0  # devices whose every command was settled by an earlier run
    held_in_doubt: int = 0  # devices waiting on an in-doubt command
    sent: int = 0  # requests put on the wire (attempts)
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: Status) -> None:
        self.by_status[status.value] = self.by_status.get(status.value, 0) + 1


@dataclass(frozen=True, slots=True)
class _Work:
    device: DeviceWork
    start: int  # index of the first command still to send


def first_to_send(statuses: list[Status], resend_in_doubt: bool) -> int | None:
    """Index of the first command to send, or None when there is nothing to send now."""
    for i, status in enumerate(statuses):
        if status is Status.OK:
            continue
        if status is Status.PENDING:
            return i
        if status is Status.IN_DOUBT and resend_in_doubt:
            return i
        return None  # failed, skipped, or held in doubt
    return None


class Engine:
    def __init__(
        self,
        devices: Iterator[DeviceWork],
        *,
        window: Window,
        transport: Transport,
        limiter: RateLimiter,
        writer: LedgerWriter,
        clock: Clock,
        settings: EngineSettings,
        stop: anyio.Event,
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
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._writer.run)
            try:
                async with anyio.create_task_group() as inner:
                    self._work_scope = inner.cancel_scope
                    send, recv = anyio.create_memory_object_stream[_Work](
                        self._settings.concurrency
                    )
                    inner.start_soon(self._produce, send)
                    async with recv:
                        for _ in range(self._settings.concurrency):
                            inner.start_soon(self._work, recv.clone())
            finally:
                with anyio.CancelScope(shield=True):
                    await self._writer.close()
        return self.totals

    def _fail(self, exc: DispatcherError) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.hard_stop()

    async def _produce(self, send: MemoryObjectSendStream[_Work]) -> None:
        async with send:
            batch: list[DeviceWork] = []
            for device in self._devices:
                if self._stop.is_set():
                    return
                batch.append(device)
                if len(batch) >= REGISTER_BATCH:
                    if not await self._hand_out(batch, send):
                        return
                    batch = []
            if batch and not self._stop.is_set():
                await self._hand_out(batch, send)

    async def _hand_out(self, batch: list[DeviceWork], send: MemoryObjectSendStream[_Work]) -> bool:
        try:
            statuses = await self._writer.register(
                [(d.device.imei, d.device.fleet, [r.op for r in d.requests]) for d in batch]
            )
        except LedgerError as exc:
            self._fail(exc)
            return False
        for work in batch:
            self.totals.planned_devices += 1
            row = statuses[work.device.imei]
            start = first_to_send(row, self._settings.resend_in_doubt)
            if start is None:
                if Status.IN_DOUBT in row:
                    self.totals.held_in_doubt += 1
                else:
                    self.totals.already_done += 1
                continue
            try:
                await send.send(_Work(work, start))
            except anyio.BrokenResourceError:
                return False  # every worker has stopped
        return True

    async def _work(self, recv: MemoryObjectReceiveStream[_Work]) -> None:
        async with recv:
            async for work in recv:
                if self._stop.is_set():
                    return
                try:
                    await self._device(work)
                except LedgerError as exc:
                    self._fail(exc)
                    return

    async def _device(self, work: _Work) -> None:
        requests = work.device.requests
        for request in requests[work.start :]:
            if self._stop.is_set():
                return  # the rest stay pending: the next run sends them
            status = await self._command(request)
            self.totals.count(status)
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

    async def _command(self, request: Request) -> Status:
        """Send one command, retrying what provably did not arrive; record its answer."""
        attempts = 0
        cap = self._settings.attempts
        while True:
            await self._limiter.acquire()
            if attempts == 0:
                # Written ahead: durable before the request leaves.
                await self._writer.sending(request.imei, request.index, unix_now())
            attempts += 1
            self.totals.sent += 1
            outcome = await self._transport.send(request, self._window, self._clock.wall())
            if self._breaker.record(outcome):
                await self._trip(outcome)
            if outcome.kind is not Kind.RETRY:
                status = _STATUS[outcome.kind]
                break
            if outcome.slow_down:
                self._limiter.slow_down(SLOW_DOWN_FACTOR, SLOW_DOWN_SECONDS)
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
            if self._stop.is_set():
                status = Status.PENDING  # provably not queued: the next run sends it
                break
            await self._backoff(attempts, outcome)
        if status is Status.FAILED and platform_level(outcome):
            if self._breaker.tripped:
                status = Status.PENDING  # the platform, not the device, failed: resend next run
            else:
                self._platform_failed.append((request.imei, request.index))
        await self._writer.answer(
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
            )
        )
        return status

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
