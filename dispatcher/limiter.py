"""The run's one rate limiter: sends spaced evenly at ``per_second``, shared by all workers.

It starts empty (no burst at start-up) and never saves up unused slots, so after a
pause the next sends are spaced like any others. Each caller reserves the next free
slot and sleeps until it; because a slot is taken before sleeping, the order of
callers is the order of slots and no two share one.

A caller the scheduler delayed (a busy core) reserves its slot late; a limiter that
spaced from "now" would lose that time for good, and the run's rate would slip under
load. So a slot missed by a little is given back: while the limiter is busy, the next
slot counts from the one before even when that is already past, by at most
``CATCH_UP`` of a second's slots (none below 1/CATCH_UP per second; none while slowed
down). A longer gap is idleness, and idle time is never saved up. Whatever the
catch-up, the platform's rule holds for the slots granted: from 50/s up, no 1-second
window holds more than the rate (each slot is at least a second after the floor(rate)-th
slot before it); below, no slot is given back and the even spacing holds as before.

When the platform answers "api freq out of limit" the whole run slows down, not
only the worker that saw it: the rate is cut by a factor (again on each further
refusal, at most every ``CUT_SPACING`` seconds), then doubles back step by step once
refusals stop.
"""

from __future__ import annotations

import math
from collections import deque

from dispatcher.clock import Clock

# Seconds between two cuts: answers to requests sent before a cut do not cut again.
CUT_SPACING = 0.5
MIN_FACTOR = 1 / 64  # never slower than this share of the target rate
CATCH_UP = 0.02  # a late caller may take slots missed within this share of a second's slots
# The 1-s window is kept from the rate where slots can be given back (below it the even
# spacing alone holds a window to the rate rounded up, as it always did) to where the
# rate means unlimited (an ablation of the benchmarks).
WINDOW_MIN_RATE = 1 / CATCH_UP
WINDOW_MAX_RATE = 100_000


class RateLimiter:
    __slots__ = (
        "_catch_up",
        "_clock",
        "_factor",
        "_granted",
        "_interval",
        "_last_cut",
        "_next",
        "_per_second",
        "_recover_at",
        "_recover_every",
    )

    def __init__(self, per_second: float, clock: Clock) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._clock = clock
        self._next = float("-inf")
        # the last granted slots, one second's worth: the sliding-window rule's memory
        self._granted: deque[float] = deque()
        self._set(per_second)
        self._factor = 1.0
        self._last_cut = float("-inf")
        self._recover_at = float("inf")
        self._recover_every = 0.0

    @property
    def per_second(self) -> float:
        """The rate in force now (lower while slowed down)."""
        self._recover(self._clock.monotonic())
        return self._per_second * self._factor

    @property
    def target(self) -> float:
        """The configured rate, whatever the slow-down."""
        return self._per_second

    def set_rate(self, per_second: float) -> None:
        """Change the target rate; the next slot keeps its place."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._set(per_second)

    def _set(self, per_second: float) -> None:
        self._per_second = per_second
        self._interval = 1.0 / per_second
        # seconds a busy limiter may count back: whole slots only, so none at low rates
        self._catch_up = math.floor(CATCH_UP * per_second) * self._interval
        keep = math.floor(per_second) if per_second <= WINDOW_MAX_RATE else 0
        # (a slow-down's lower rate counts fewer of the kept slots: ``reserve``)
        self._granted = deque(self._granted, maxlen=keep)

    def slow_down(self, factor: float, seconds: float) -> None:
        """Multiply the rate by ``factor``; it doubles back every ``seconds`` without a cut."""
        now = self._clock.monotonic()
        if now - self._last_cut >= CUT_SPACING:
            self._factor = max(MIN_FACTOR, self._factor * factor)
            self._last_cut = now
        self._recover_every = seconds
        self._recover_at = now + seconds

    def _recover(self, now: float) -> None:
        if self._recover_every <= 0:
            self._factor = 1.0
            return
        while self._factor < 1.0 and now >= self._recover_at:
            self._factor = min(1.0, self._factor * 2)
            self._recover_at += self._recover_every

    def pause_until(self, at: float) -> None:
        """No slot before ``at`` (a Retry-After for the whole run)."""
        self._next = max(self._next, at)

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        delay = self.reserve()
        if delay > 0:
            await self._clock.sleep(delay)

    def reserve(self) -> float:
        """Take the next free slot; the seconds until it (the caller sleeps them).

        Split from ``acquire`` so a caller can do something durable while it waits: the
        engine's write-ahead mark is committed during the wait for the slot.
        """
        now = self._clock.monotonic()
        self._recover(now)
        slot = self._next
        lag = now - slot
        if lag > 0 and (lag > self._catch_up or self._factor < 1.0):
            slot = now  # idle (or slowed down): nothing is given back
        grant = slot if slot > now else now  # a slot given back leaves at once
        granted = self._granted
        # at most floor(rate) slots in any 1-s window: one more waits a second after the
        # floor(rate)-th before it (the spacing alone keeps to it unless slots are given back)
        rate = self._per_second * self._factor
        n = math.floor(rate) if rate >= WINDOW_MIN_RATE else 0
        if 0 < n <= len(granted) and granted[-n] + 1.0 > grant:
            # Held back by the window until its oldest slot leaves. A burst that gave back
            # a stall a second ago leaves all at once, and so may its echo now: the slots
            # keep counting from the schedule while it is within the catch-up.
            grant = granted[-n] + 1.0
            if grant - slot > self._catch_up:
                slot = grant  # far behind: count on from here, giving nothing more back
        self._next = slot + self._interval / self._factor
        granted.append(grant)
        return grant - now

    def __repr__(self) -> str:
        return (
            f"RateLimiter(per_second={self._per_second:g}, factor={self._factor:g},"
            f" next_slot={self._next:.3f})"
        )
