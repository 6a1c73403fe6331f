"""Stopping a run on a signal: first a graceful stop, then (a second signal, or the grace
period over) at once. systemd's stop and a terminal's Ctrl-C both land here."""

from __future__ import annotations

import signal

import anyio
import structlog

from dispatcher.engine import Engine
from dispatcher.runopts import RunResult

log = structlog.get_logger("dispatcher.run")


async def watch_signals(engine: Engine, stop: anyio.Event, result: RunResult, grace: float) -> None:
    """First SIGINT/SIGTERM: stop taking work, let requests in flight finish (up to a grace
    period). A second one, or the end of the grace period: stop at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if result.signal is None:
                result.signal = int(signum)
                log.warning("stopping", signal=signal.Signals(signum).name, grace_seconds=grace)
                stop.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(grace_then_stop, engine, grace)
                    async for _ in signals:
                        log.warning("stopping_now")
                        engine.hard_stop()
                        tg.cancel_scope.cancel()
                        break
                    tg.cancel_scope.cancel()


async def grace_then_stop(engine: Engine, grace: float) -> None:
    await anyio.sleep(grace)
    log.warning("grace_period_over")
    engine.hard_stop()
