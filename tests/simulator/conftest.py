from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator

from .wire import API_KEY, Platform


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config() -> SimulatorConfig:
    """The knobs the `sim` fixture starts with; override in a module to change them."""
    return SimulatorConfig(api_key=API_KEY)


@pytest.fixture
async def sim(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    async with running_simulator(config) as running:
        yield running


@pytest.fixture
async def platform(sim: Simulator) -> AsyncIterator[Platform]:
    async with aiohttp.ClientSession() as session:
        yield Platform(session, sim.base_url)
