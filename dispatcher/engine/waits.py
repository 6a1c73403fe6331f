"""A wait the run's stop cuts short (a pause between waves, a closed dispatch window)."""

from __future__ import annotations

import anyio

from dispatcher.clock import Clock


async def sleep_or_stop(clock: Clock, stop: anyio.Event, seconds: float) -> None:
    """Sleep on ``clock``, waking early when the run is stopped."""
    async with anyio.create_task_group() as tg:

        async def sleeper() -> None:
            await clock.sleep(seconds)
            tg.cancel_scope.cancel()

        async def stopper() -> None:
            await stop.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(sleeper)
        tg.start_soon(stopper)
