"""The run's one rate limiter: sends spaced evenly at ``per_second``, shared by all workers.

It starts empty (no burst at start-up) and never saves up unused slots, so after a
pause the next sends are spaced like any others. Each caller reserves the next free
slot and sleeps until it; because a slot is taken before sleeping, the order of
callers is the order of slots and no two share one.

When the platform answers "api freq out of limit" the whole run slows down, not
only the worker that saw it: the rate is cut by a factor (again on each further
refusal, at most every ``CUT_SPACING`` seconds), then doubles back step by step once
refusals stop.
"""

from __future__ import annotations

from dispatcher.clock import Clock

# Seconds between two cuts: answers to requests sent before a cut do not cut again.
CUT_SPACING = 0.5
MIN_FACTOR = 1 / 64  # never slower than this share of the target rate


class RateLimiter:
    __slots__ = (
        "_clock",
        "_factor",
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
        self._per_second = per_second
        self._interval = 1.0 / per_second
        self._next = float("-inf")
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
        self._per_second = per_second
        self._interval = 1.0 / per_second

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
        slot = self._next if self._next > now else now
        self._next = slot + self._interval / self._factor
        return slot - now

    def __repr__(self) -> str:
        return (
            f"RateLimiter(per_second={self._per_second:g}, factor={self._factor:g},"
            f" next_slot={self._next:.3f})"
        )
