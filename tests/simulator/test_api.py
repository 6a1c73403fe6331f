"""The Python API and the test-only control endpoints."""

from __future__ import annotations

import tracemalloc

import aiohttp
import anyio
import pytest
from aiohttp import web

from dispatcher.simulator import (
    SIMULATOR,
    Simulator,
    SimulatorConfig,
    create_app,
    running_simulator,
    serve,
)
from dispatcher.simulator.state import Record

from .wire import API_KEY, IMEI, Platform, read_query

pytestmark = pytest.mark.anyio


def test_create_app_holds_the_simulator() -> None:
    config = SimulatorConfig(api_key=API_KEY, latency=0.5)
    app = create_app(config)
    assert isinstance(app, web.Application)
    assert isinstance(app[SIMULATOR], Simulator)
    assert app[SIMULATOR].config is config


async def test_running_simulator_serves_on_loopback() -> None:
    async with running_simulator(SimulatorConfig(api_key=API_KEY)) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert int(sim.base_url.rsplit(":", 1)[1]) > 0
        async with aiohttp.ClientSession() as session:
            assert (await Platform(session, sim.base_url).read()).errno == 0
        assert len(sim.commands) == 1 and sim.commands[0].op == "read"
        assert len(sim.requests) == 1 and sim.requests[0].errno == 0
    with pytest.raises(RuntimeError):
        sim.base_url  # noqa: B018  # the property is the thing under test


async def test_serve_runs_until_cancelled() -> None:
    urls: list[str] = []
    async with anyio.create_task_group() as tg:
        ready = anyio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        tg.start_soon(lambda: serve(SimulatorConfig(api_key=API_KEY), ready=on_ready))
        await ready.wait()
        async with aiohttp.ClientSession() as session:
            assert (await Platform(session, urls[0]).read()).errno == 0
        tg.cancel_scope.cancel()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await Platform(session, urls[0]).read()


async def test_reset_forgets_everything(platform: Platform, sim: Simulator) -> None:
    await platform.write()
    await platform.write()
    async with platform.session.post(platform.url("/_sim/reset")) as response:
        assert await response.json() == {
            "requests": 0,
            "queued": 0,
            "max_in_flight": 0,
            "in_flight": 0,
        }
    assert (sim.commands, sim.requests) == ([], [])
    assert (await platform.write()).errno == 0
    assert sim.requests[0].seq == 1


async def test_config_endpoint_updates_knobs_and_hides_keys(
    platform: Platform, sim: Simulator
) -> None:
    status, shown = await platform.set_config(latency=0.01, fail_imeis=[IMEI], now=None)
    assert status == 200
    assert (sim.config.latency, sim.config.fail_imeis) == (0.01, {IMEI})
    assert shown["fail_imeis"] == [IMEI]
    shown = await platform.sim("config")
    assert shown["api_key"] == "<redacted>"
    assert API_KEY not in str(shown)
    assert API_KEY not in repr(sim.config)


@pytest.mark.parametrize(
    "changes",
    [
        {"error_rate": 2},
        {"latency": "1"},
        {"no_such_knob": 1},
        {"error_errno": 0},
        {"seed": 1.5},
        {"delivery": "yes"},
        {"clock_speed": 0},
        {"wake_interval": -600},
        {"wake_uplink": 3},
        {"wake_uplink": True},
        {"confirm_delay": 6},
        {"confirm_fail_rate": 1.5},
        {"confirm_fail_statuses": []},
        {"confirm_fail_statuses": ["SUCCESS"]},
        {"confirm_fail_statuses": ["NOPE"]},
        {"offline_imeis": IMEI},
        {"offline_rate": -0.1},
    ],
)
async def test_config_endpoint_refuses_bad_knobs(
    platform: Platform, sim: Simulator, changes: dict[str, object]
) -> None:
    """HTTP 400 and the live config untouched."""
    before = sim.config.to_json()
    status, answer = await platform.set_config(**changes)
    assert status == 400 and answer["error"]
    assert sim.config.to_json() == before


async def test_config_endpoint_sets_the_delivery_knobs(platform: Platform, sim: Simulator) -> None:
    status, shown = await platform.set_config(
        delivery=True,
        clock_speed=600,
        wake_interval=3600,
        wake_uplink=4,
        confirm_delay=0,
        confirm_fail_rate=0.25,
        confirm_fail_statuses=["TIME_OUT", "OFFLINE"],
        offline_imeis=[IMEI],
        offline_rate=0.1,
    )
    assert status == 200
    config = sim.config
    assert (config.delivery, config.clock_speed, config.wake_interval) == (True, 600.0, 3600.0)
    assert (config.wake_uplink, config.confirm_delay, config.confirm_fail_rate) == (4, 0.0, 0.25)
    assert config.confirm_fail_statuses == ("TIME_OUT", "OFFLINE")
    assert (config.offline_imeis, config.offline_rate) == ({IMEI}, 0.1)
    assert (shown["confirm_fail_statuses"], shown["offline_imeis"]) == (
        ["TIME_OUT", "OFFLINE"],
        [IMEI],
    )


def test_delivery_is_off_by_default() -> None:
    config = SimulatorConfig()
    assert (config.delivery, config.clock_speed, config.wake_interval) == (False, 1.0, 600.0)
    assert (config.wake_uplink, config.confirm_delay, config.confirm_fail_rate) == (2, 2.0, 0.0)
    assert (config.offline_imeis, config.offline_rate) == (set(), 0.0)


async def test_devices_view(platform: Platform, sim: Simulator) -> None:
    """One entry per device sent a command, in order of its first one."""
    await platform.write()
    await platform.read(read_query(imei="860000000000009"))
    assert await platform.sim("devices") == {
        "devices": [
            {"imei": IMEI, "online": True, "next_wake": None, "live": 1, "resources": []},
            {
                "imei": "860000000000009",
                "online": True,
                "next_wake": None,
                "live": 1,
                "resources": [],
            },
        ]
    }


def test_config_refuses_nonsense_in_code() -> None:
    with pytest.raises(ValueError, match="access_key is set together with product_id or user_id"):
        SimulatorConfig(product_id="1")
    with pytest.raises(ValueError, match="error_rate"):
        SimulatorConfig(error_rate=-0.1)


def test_record_stays_compact() -> None:
    """A 100,000-command run fits in tens of MB: under 1 KB per request and command."""
    record = Record()
    query = (
        "imei=865820031234567&obj_id=3311&obj_inst_id=0&mode=1"
        "&expired_time=2030-01-01T00%3A00%3A00&valid_time=2029-12-31T00%3A00%3A00"
    )
    body = b'{"data": [{"res_id": 5850, "val": true}]}'
    tracemalloc.start()
    try:
        for n in range(10_000):
            request = record.add_request("POST", "/nbiot/offline", f"86582003{n:07d}", 1.0 * n)
            record.queue(
                request,
                uuid=f"{n:08d}-0000-4000-8000-000000000000",
                op="write",
                imei=request.imei or "",
                raw_query=query,
                raw_body=body,
            )
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used / 10_000 < 1024
