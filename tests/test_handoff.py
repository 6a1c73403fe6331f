"""The producer's channel to the workers: every device reaches one worker, the end reaches
all of them, and a producer is never left waiting once no worker listens."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from dispatcher.engine.handout import Handoff, Work
from dispatcher.fleets import Device
from dispatcher.plan import DeviceWork

pytestmark = pytest.mark.anyio


def _work(n: int) -> Work:
    device = Device(imei=f"86{n:013d}", fleet="f", variables={}, file="f.csv", line=n)
    return Work(DeviceWork(device, ()), 0)


async def test_each_device_reaches_one_worker_and_the_end_reaches_all() -> None:
    handoff = Handoff(2, 3)
    got: list[list[str]] = [[], [], []]

    async def worker(k: int) -> None:
        try:
            while (work := await handoff.get()) is not None:
                got[k].append(work.device.device.imei)
                await anyio.lowlevel.checkpoint()
        finally:
            handoff.leave()

    async with anyio.create_task_group() as tg:
        for k in range(3):
            tg.start_soon(worker, k)
        for n in range(50):
            assert await handoff.put(_work(n))
        await handoff.close()
    handed = sorted(imei for each in got for imei in each)
    assert sorted(f"86{n:013d}" for n in range(50)) == handed


async def test_a_producer_waiting_for_room_learns_that_no_worker_listens() -> None:
    handoff = Handoff(1, 2)
    assert await handoff.put(_work(0))  # the queue is full now
    waiting = asyncio.ensure_future(handoff.put(_work(1)))
    await asyncio.sleep(0)
    assert not waiting.done()
    handoff.leave()
    await asyncio.sleep(0)
    assert not waiting.done()  # one worker is still there
    handoff.leave()
    with anyio.fail_after(5):
        assert not await waiting
    assert not await handoff.put(_work(2))
    await handoff.close()  # nobody to tell: returns at once
