"""The run's one rate limiter: sends spaced evenly at ``per_second``, shared by all workers.

It starts empty (no burst at start-up) and never saves up unused slots, so after a
pause the next sends are spaced like any others. Each caller reserves the next free
slot and sleeps until it; because a slot is taken before sleeping, the order of
callers is the order of slots and no two share one.
"""

from __future__ import annotations

from dispatcher.clock import Clock


class RateLimiter:
    __slots__ = ("_clock", "_interval", "_next", "_per_second", "_slow_factor", "_slow_until")

    def __init__(self, per_second: float, clock: Clock) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._clock = clock
        self._per_second = per_second
        self._interval = 1.0 / per_second
        self._next = float("-inf")
        self._slow_until = float("-inf")
        self._slow_factor = 1.0

    @property
    def per_second(self) -> float:
        """The rate in force now (lower while slowed down)."""
        if self._clock.monotonic() < self._slow_until:
            return self._per_second * self._slow_factor
        return self._per_second

    def set_rate(self, per_second: float) -> None:
        """Change the target rate; the next slot keeps its place."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._per_second = per_second
        self._interval = 1.0 / per_second

    def slow_down(self, factor: float, seconds: float) -> None:
        """Send at ``factor`` of the rate for ``seconds`` (the platform asked us to slow down)."""
        self._slow_factor = min(self._slow_factor, factor) if self._in_slow() else factor
        self._slow_until = max(self._slow_until, self._clock.monotonic() + seconds)

    def _in_slow(self) -> bool:
        return self._clock.monotonic() < self._slow_until

    def pause_until(self, at: float) -> None:
        """No slot before ``at`` (a Retry-After for the whole run)."""
        self._next = max(self._next, at)

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        now = self._clock.monotonic()
        interval = self._interval
        if now < self._slow_until:
            interval /= self._slow_factor
        slot = self._next if self._next > now else now
        self._next = slot + interval
        if slot > now:
            await self._clock.sleep(slot - now)

    def __repr__(self) -> str:
        return f"RateLimiter(per_second={self._per_second:g}, next_slot={self._next:.3f})"
