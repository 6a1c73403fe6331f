"""Assembling and running the simulator: an aiohttp app on a loopback port."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from aiohttp import web

from dispatcher.simulator import control, endpoints
from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.sim import Simulator

SIMULATOR = web.AppKey("simulator", Simulator)
"""`app[SIMULATOR]` is the app's `Simulator`: its config, record and load figures."""

# Big enough that an oversized write reaches the contract's 2 KiB check and is
# answered errno 5 like the platform does, rather than cut off by aiohttp first.
_CLIENT_MAX_SIZE = 1024 * 1024
# A stalled handler must not hold a test's teardown for stall_seconds.
_SHUTDOWN_GRACE = 0.1


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A fresh simulated platform; the defaults of `SimulatorConfig` when no config."""
    sim = Simulator(config)
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[SIMULATOR] = sim
    app.add_routes(endpoints.routes(sim))
    app.add_routes(control.routes(sim))
    return app


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    keepalive_timeout: float | None = None,
) -> AsyncIterator[Simulator]:
    """Serve a simulator for the duration of the block; port 0 picks a free port.

    `keepalive_timeout`: seconds an idle keep-alive connection stays open before the
    server closes it (None = aiohttp's default), as a platform's load balancer does.
    """
    app = create_app(config)
    sim = app[SIMULATOR]
    extra: dict[str, Any] = {}
    if keepalive_timeout is not None:
        if not (math.isfinite(keepalive_timeout) and keepalive_timeout > 0):
            raise ValueError("keepalive_timeout must be a positive number of seconds")
        extra["keepalive_timeout"] = keepalive_timeout
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE, **extra
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        sim.base_url = _base_url(host, runner.addresses[0][1])
        yield sim
    finally:
        sim.base_url = None
        # Shielded: the block may end because its task group was cancelled, and the
        # listening socket must be closed all the same.
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[str], object] | None = None,
    keepalive_timeout: float | None = None,
) -> None:
    """Serve until cancelled, calling `ready(base_url)` once listening."""
    async with running_simulator(
        config, host=host, port=port, keepalive_timeout=keepalive_timeout
    ) as sim:
        if ready is not None:
            ready(sim.base_url)
        await anyio.sleep_forever()


def _base_url(host: str, port: int) -> str:
    try:
        bracket = ipaddress.ip_address(host).version == 6
    except ValueError:  # a host name
        bracket = False
    return f"http://[{host}]:{port}" if bracket else f"http://{host}:{port}"
