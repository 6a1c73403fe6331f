"""Each fault knob does what it says, on the platform endpoints only."""

from __future__ import annotations

import aiohttp
import anyio
import pytest

from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator

from .wire import API_KEY, IMEI, Platform, write_query

pytestmark = pytest.mark.anyio


async def requests_of(platform: Platform) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = (await platform.sim("requests"))["requests"]
    return answer


async def test_drop_queues_then_closes_without_answer(platform: Platform, sim: Simulator) -> None:
    """The client sees a disconnect, yet the command is queued: the ambiguous case."""
    sim.config.drop_after_queue_rate = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await platform.write()

    [command] = await platform.commands()
    [request] = await requests_of(platform)
    assert (request["errno"], request["status"], request["uuid"]) == (None, None, command["uuid"])


async def test_stall_queues_then_answers_late(platform: Platform, sim: Simulator) -> None:
    """A client that gives up first has still queued the command; a patient one gets its uuid."""
    sim.config.stall_after_queue_rate = 1.0
    # The client gives up once the command is queued, not after a time a busy machine may
    # spend before the request even arrives; the stall outlasts the test (teardown ends it).
    sim.config.stall_seconds = 600
    with anyio.fail_after(60):  # a hang, not a timing
        async with anyio.create_task_group() as client:
            client.start_soon(platform.write)
            # ASYNC110: the simulator's record has no event to wait on; this polls it
            while not sim.commands:  # noqa: ASYNC110
                await anyio.sleep(0.005)
            client.cancel_scope.cancel()
    assert len(await platform.commands()) == 1

    sim.config.stall_seconds = 0.3
    answer = await platform.write()
    assert answer.errno == 0
    assert [c["uuid"] for c in await platform.commands()][1] == answer.json["data"]["uuid"]


async def test_http_503_answers_before_processing(platform: Platform, sim: Simulator) -> None:
    """HTTP 503 with no errno; nothing queued, even for a valid request."""
    sim.config.http_503_rate = 1.0
    answer = await platform.write()

    assert answer.status == 503
    assert await platform.commands() == []
    [request] = await requests_of(platform)
    assert (request["status"], request["errno"]) == (503, None)


async def test_rate_limit_answers_errno_15_beyond_the_rate(
    platform: Platform, sim: Simulator
) -> None:
    """With 3 requests/s allowed, a burst of 6 gets 3 uuids and 3 errno 15."""
    sim.config.rate_limit = 3
    errnos: list[int] = []

    async def one(n: int) -> None:
        answer = await platform.write(write_query(imei=f"86000000000000{n}"))
        errnos.append(answer.errno)

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(one, n)

    assert sorted(errnos) == [0, 0, 0, 15, 15, 15]
    assert len(await platform.commands()) == 3
    refused = [r for r in await requests_of(platform) if r["errno"] == 15]
    assert len(refused) == 3


async def test_rate_limit_error_text(platform: Platform, sim: Simulator) -> None:
    sim.config.rate_limit = 1
    await platform.write()
    answer = await platform.write()
    assert (answer.errno, answer.error) == (15, "api freq out of limit")


async def test_error_rate_answers_the_configured_errno(platform: Platform, sim: Simulator) -> None:
    """Default errno 7; a test may pick another; nothing is queued either way."""
    sim.config.error_rate = 1.0
    answer = await platform.write()
    assert (answer.errno, answer.error) == (7, "service internal error")

    sim.config.error_errno, sim.config.error_text = 17, "nbiot server error"
    answer = await platform.read()
    assert (answer.errno, answer.error) == (17, "nbiot server error")
    assert await platform.commands() == []


async def test_error_rate_spares_invalid_requests(platform: Platform, sim: Simulator) -> None:
    """An invalid request still gets its own errno: error_rate is for valid ones."""
    sim.config.error_rate = 1.0
    assert (await platform.write(write_query(mode="9"))).errno == 6


async def test_fail_imeis_are_not_found(platform: Platform, sim: Simulator) -> None:
    sim.config.fail_imeis = {IMEI}
    answer = await platform.write()
    assert (answer.errno, answer.error) == (8, "not found")
    assert (await platform.write(write_query(imei="860000000000001"))).errno == 0
    assert len(await platform.commands()) == 1


async def test_seeded_faults_repeat_exactly() -> None:
    """Two simulators with one seed fail the same requests of a sequential run."""
    runs: list[list[int]] = []
    for _ in range(2):
        config = SimulatorConfig(api_key=API_KEY, error_rate=0.5, seed=1234)
        async with running_simulator(config) as sim, aiohttp.ClientSession() as session:
            platform = Platform(session, sim.base_url)
            runs.append([(await platform.read()).errno for _ in range(10)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {0, 7}


async def test_latency_is_counted_in_flight(platform: Platform, sim: Simulator) -> None:
    """Five concurrent requests, each held 0.2 s, are all in flight at once."""
    sim.config.latency = 0.2

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(platform.read)

    stats = await platform.sim("stats")
    assert stats == {"requests": 5, "queued": 5, "max_in_flight": 5, "in_flight": 0}
    assert sim.max_in_flight == 5


async def test_faults_spare_the_test_endpoints(platform: Platform, sim: Simulator) -> None:
    """Everything under /_sim/ answers while the platform fails every request."""
    status, _ = await platform.set_config(http_503_rate=1.0, error_rate=1.0, rate_limit=0.001)
    assert status == 200
    for what in ("commands", "requests", "stats", "config"):
        await platform.sim(what)
    assert (await platform.write()).status == 503
