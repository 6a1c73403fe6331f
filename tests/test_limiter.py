"""The rate limiter, on a clock the test moves (no real waiting)."""

from __future__ import annotations

import math
import random
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


def _stalled_run(
    limiter: RateLimiter,
    clock: FakeClock,
    sends: int,
    seed: int,
    stall: float,
    stalls_per_second: float = 20,
) -> list[float]:
    """Send times of a run whose process is descheduled now and then (a busy core).

    Workers always wait for slots (the run is rate-bound); about 20 times a second a send
    is followed by a stall of up to ``stall`` seconds in which nothing runs, so the next
    reserve comes late. Virtual time: the figures are exact, not timed.
    """
    rng = random.Random(seed)
    times: list[float] = []
    chance = min(1.0, stalls_per_second / limiter.target)
    for _ in range(sends):
        clock.now += limiter.reserve()
        times.append(clock.now)
        if rng.random() < chance:
            clock.now += rng.uniform(0, stall)
    return times


def _most_in_a_second(times: list[float]) -> int:
    """The most sends any half-open 1-s window holds (two pointers over sorted times)."""
    most, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize("per_second", [50, 333.3, 1000, 2500])
@pytest.mark.parametrize("seed", range(4))
async def test_a_busy_core_loses_no_rate_and_no_second_holds_more_than_the_rate(
    per_second: float, seed: int
) -> None:
    """Stalls of up to 5 ms cost the old limiter their length for good; slots missed within
    the catch-up are given back, so the run keeps its rate within 1 %, and still no 1-s
    window holds more than floor(rate) sends."""
    clock = FakeClock()
    limiter = RateLimiter(per_second, clock)
    sends = int(per_second * 10)
    times = _stalled_run(limiter, clock, sends, seed, 0.005)
    assert _most_in_a_second(times) <= math.floor(per_second)
    for i in range(math.floor(per_second), len(times)):
        assert times[i] - times[i - math.floor(per_second)] >= 1.0 - 1e-9
    achieved = (sends - 1) / (times[-1] - times[0])
    assert achieved >= 0.99 * per_second * (math.floor(per_second) / per_second)


@pytest.mark.parametrize("per_second", [333.3, 1000, 2500])
@pytest.mark.parametrize("seed", range(4))
async def test_stalls_given_back_stay_given_back_a_second_later(
    per_second: float, seed: int
) -> None:
    """A stall given back is a burst; a second later the window holds the sends back until
    that burst leaves it, and then lets as many go at once: the catch-up is not undone by
    its echo, the rate stays within 1 %, and no 1-s window holds more than floor(rate)."""
    clock = FakeClock()
    limiter = RateLimiter(per_second, clock)
    sends = int(per_second * 10)
    times = _stalled_run(limiter, clock, sends, seed, 0.015, stalls_per_second=10)
    assert _most_in_a_second(times) <= math.floor(per_second)
    achieved = (sends - 1) / (times[-1] - times[0])
    assert achieved >= 0.99 * per_second * (math.floor(per_second) / per_second)


async def test_the_window_holds_under_long_stalls_and_slow_downs() -> None:
    """Stalls longer than the catch-up, a rate-limit slow-down and a rate change midway:
    every 1-s window stays within the rate then in force."""
    clock = FakeClock()
    limiter = RateLimiter(1000, clock)
    first = _stalled_run(limiter, clock, 3000, 7, 0.05)
    limiter.slow_down(0.5, 2.0)
    slowed = _stalled_run(limiter, clock, 400, 8, 0.05)
    clock.now += 0.3
    limiter.set_rate(400)
    after = _stalled_run(limiter, clock, 2000, 9, 0.05)
    assert _most_in_a_second(first) <= 1000
    assert _most_in_a_second(slowed) <= 500
    assert _most_in_a_second(first + slowed) <= 1000
    assert _most_in_a_second(after) <= 400


async def test_idle_time_is_not_given_back_at_a_high_rate() -> None:
    """A second without callers is idleness, not lateness: the next sends are spaced."""
    clock = FakeClock()
    limiter = RateLimiter(1000, clock)
    for _ in range(5):
        await limiter.acquire()
    clock.now += 1.0
    start = clock.now
    for _ in range(21):
        await limiter.acquire()
    assert pytest.approx(0.02) == clock.now - start
