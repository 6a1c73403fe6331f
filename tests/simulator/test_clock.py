"""The simulated clock: sped up while delivery is on, advanced at will, one for every rule."""

from __future__ import annotations

import time

import pytest

from dispatcher.simulator import Simulator, SimulatorConfig
from dispatcher.simulator.clock import SimClock

from .test_auth import ACCESS_KEY, PRODUCT_ID, token
from .wire import API_KEY, Platform, query_time, uuid_of, write_query

pytestmark = pytest.mark.anyio

NOW = 1_900_000_000.0


class FakeReal:
    """Stands in for time.monotonic: moves only when the test says."""

    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def real_plus(clock: SimClock, offset: float) -> bool:
    """The clock reads the real time plus ``offset``: between the real times read just
    before and just after it (less a float rounding), however long a busy machine takes."""
    before = time.time()
    value = clock.now()
    after = time.time()
    return before + offset - 1e-3 <= value <= after + offset + 1e-3


def test_speed_applies_only_while_delivery_is_on() -> None:
    real = FakeReal()
    config = SimulatorConfig(now=0.0, clock_speed=600.0)  # the real clock, unshifted
    clock = SimClock(config, real=real)
    real.value += 1
    assert real_plus(clock, 0)  # delivery off: the `now` knob alone

    config.delivery = True
    assert real_plus(clock, 0)
    real.value += 1
    assert real_plus(clock, 599)  # one real second is 600 simulated


def test_changing_speed_never_makes_time_jump() -> None:
    """What one speed gained is kept when the speed changes or delivery stops."""
    real = FakeReal()
    config = SimulatorConfig(now=0.0, delivery=True, clock_speed=10.0)
    clock = SimClock(config, real=real)
    clock.now()
    real.value += 2
    assert real_plus(clock, 18)
    config.clock_speed = 100.0
    assert real_plus(clock, 18)
    real.value += 1
    assert real_plus(clock, 18 + 99)
    config.delivery = False
    assert real_plus(clock, 117)  # a change counts from the next reading
    real.value += 5
    assert real_plus(clock, 117)


def test_a_callable_clock_is_never_sped_up() -> None:
    """A pinned clock stays pinned: tests that pin it move it with advance()."""
    real = FakeReal()
    clock = SimClock(SimulatorConfig(now=lambda: NOW, delivery=True, clock_speed=600), real=real)
    real.value += 10
    assert (clock.now(), clock.speed) == (NOW, 1.0)


def test_advance_adds_and_reset_forgets() -> None:
    clock = SimClock(SimulatorConfig(now=lambda: NOW))
    clock.advance(90)
    clock.advance(0.5)
    assert (clock.now(), clock.advanced) == (NOW + 90.5, 90.5)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(float("nan"))
    clock.reset()
    assert clock.now() == NOW


def test_advance_composes_with_a_real_clock_offset() -> None:
    """`now` as a number shifts the real clock; advancing adds on top."""
    clock = SimClock(SimulatorConfig(now=3600.0))
    clock.advance(600)
    assert real_plus(clock, 4200)


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(api_key=API_KEY, now=lambda: NOW, delivery=True)


async def test_clock_endpoints(platform: Platform) -> None:
    """GET /_sim/clock shows the simulated now; POST /_sim/advance moves it."""
    shown = await platform.sim("clock")
    assert shown == {"now": NOW, "time": "2030-03-18 01:46:40", "speed": 1.0, "advanced": 0.0}
    moved = await platform.advance(3600)
    assert (moved["now"], moved["time"], moved["advanced"]) == (
        NOW + 3600,
        "2030-03-18 02:46:40",
        3600.0,
    )


@pytest.mark.parametrize(
    "payload",
    [{"seconds": -1}, {"seconds": "60"}, {"seconds": True}, {}, {"seconds": 1, "x": 2}, [60]],
)
async def test_advance_refuses_nonsense(platform: Platform, payload: object) -> None:
    async with platform.session.post(platform.url("/_sim/advance"), json=payload) as response:
        assert response.status == 400
        assert (await response.json())["error"]
    assert (await platform.sim("clock"))["now"] == NOW


async def test_rules_follow_the_advanced_clock(platform: Platform) -> None:
    """An expired_time accepted now is refused once the clock has passed it."""
    query = write_query(expired_time=query_time(NOW + 3600))
    assert (await platform.write(query)).errno == 0
    await platform.advance(3600)
    answer = await platform.write(query)
    assert (answer.errno, answer.error) == (
        6,
        "invalid parameter: expired_time must be later than the platform's current time",
    )


async def test_records_and_history_use_the_simulated_clock(
    platform: Platform, sim: Simulator
) -> None:
    await platform.advance(7200)
    uuid = uuid_of(await platform.write(write_query(expired_time=query_time(NOW + 86_400))))
    assert sim.commands[0].received_at == NOW + 7200
    data = (await platform.detail(uuid)).json["data"]
    assert data["create_time"] == "2030-03-18 03:46:40"


async def test_reset_rewinds_the_clock(platform: Platform) -> None:
    await platform.advance(60)
    async with platform.session.post(platform.url("/_sim/reset")) as response:
        assert response.status == 200
    assert (await platform.sim("clock"))["now"] == NOW


async def test_a_sped_up_clock_delivers_without_waiting(sim: Simulator, platform: Platform) -> None:
    """clock_speed 600: one real second (faked) is a ten-minute wake interval."""
    real = FakeReal()
    sim.config.now = None
    sim.config.clock_speed = 600.0
    sim.clock = SimClock(sim.config, real=real)
    uuid = uuid_of(await platform.write(write_query()))
    assert (await platform.detail(uuid)).json["data"]["send_status"] == 1
    real.value += 1.01
    assert (await platform.detail(uuid)).json["data"]["send_status"] == 5
    assert (await platform.sim("clock"))["speed"] == 600.0


class TestTokens:
    @pytest.fixture
    def config(self) -> SimulatorConfig:
        return SimulatorConfig(
            api_key=API_KEY, product_id=PRODUCT_ID, access_key=ACCESS_KEY, delivery=True
        )

    async def test_token_expiry_is_on_the_simulated_clock(self, platform: Platform) -> None:
        """One clock for the whole platform: advancing past `et` expires a token."""
        header = {"authorization": token(et=int(time.time()) + 3600)}
        assert (await platform.read(headers=header)).errno == 0
        await platform.advance(3600)
        answer = await platform.read(headers=header)
        assert (answer.errno, answer.error) == (1, "auth failed: token expired")
