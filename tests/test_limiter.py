"""The rate limiter, on a clock the test moves (no real waiting)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from dispatcher.limiter import RateLimiter

pytestmark = pytest.mark.anyio


class FakeClock:
    """Virtual time: sleeping moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_sends_are_spaced_evenly_from_the_start() -> None:
    """At 50/s the first slot is now and each next one 20 ms later: no burst at start-up."""
    clock = FakeClock()
    limiter = RateLimiter(50, clock)
    times = []
    for _ in range(5):
        await limiter.acquire()
        times.append(round(clock.now - 100.0, 6))
    assert [0.0, 0.02, 0.04, 0.06, 0.08] == times


async def test_idle_time_is_not_saved_up() -> None:
    """After a pause the next sends are spaced, not fired together to catch up."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    await limiter.acquire()
    clock.now += 5.0
    start = clock.now
    await limiter.acquire()
    await limiter.acquire()
    assert pytest.approx(0.1) == clock.now - start


async def test_slow_down_halves_the_rate_for_a_while() -> None:
    """The platform's rate-limit answer halves the rate for the given time, then it recovers."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock)
    await limiter.acquire()
    limiter.slow_down(0.5, 1.0)
    assert 5 == limiter.per_second
    before = clock.now
    await limiter.acquire()
    await limiter.acquire()
    assert pytest.approx(0.3) == clock.now - before  # 0.1 (slot already reserved) + 0.2
    clock.now += 2
    assert 10 == limiter.per_second


async def test_concurrent_callers_get_distinct_slots() -> None:
    """Many workers acquiring at once are released one interval apart."""
    clock = FakeClock()
    limiter = RateLimiter(100, clock)
    released: list[float] = []

    async def worker() -> None:
        await limiter.acquire()
        released.append(clock.now)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(worker)
    assert 10 == len(released)
    assert pytest.approx(0.09) == max(released) - 100.0
