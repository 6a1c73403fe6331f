"""A stop that comes while a request waits for its rate slot: the request never leaves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dispatcher.check import check_job
from dispatcher.clock import RealClock
from dispatcher.config import HttpConfig, Secret
from dispatcher.engine import Engine, EngineSettings, Rollout
from dispatcher.engine.abort import AbortRule
from dispatcher.errors import LedgerError
from dispatcher.ledger import Ledger
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register, SetWave, WriteOp
from dispatcher.ledger.writer import LedgerWriter
from dispatcher.limiter import RateLimiter
from dispatcher.onenet.auth import ApiKeyAuth
from dispatcher.onenet.client import OneNetClient
from dispatcher.rolloutspec import AbortSpec
from dispatcher.simulator import SimulatorConfig, running_simulator
from dispatcher.waves import WaveMap
from tests.helpers import API_KEY, imei, write_job

READ = "  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n"


class StopClock:
    """Real time, except that a wait for a rate slot lasts until the run is stopped.

    So the second request is provably waiting for its slot when the first one's
    answer stops the run: no timing decides the order.
    """

    def __init__(self, stop: anyio.Event) -> None:
        self._stop = stop
        self.slept = 0

    def monotonic(self) -> float:
        return anyio.current_time()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        self.slept += 1
        await self._stop.wait()


@pytest.mark.anyio
async def test_a_request_waiting_for_its_slot_is_not_sent_after_a_stop(tmp_path: Path) -> None:
    """The first answer fires the abort rule while the second device waits for its slot."""
    job = write_job(tmp_path, 2, commands=READ, rate=1, concurrency=2)
    checked = check_job(job, now=datetime.now(UTC))
    stop = anyio.Event()
    clock = StopClock(stop)
    config = SimulatorConfig(api_key=API_KEY, fail_imeis={imei(0)})  # errno 8 for the first
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        async with (
            running_simulator(config) as sim,
            OneNetClient(
                sim.base_url, ApiKeyAuth(Secret(API_KEY)), HttpConfig(), concurrency=2
            ) as client,
        ):
            engine = Engine(
                lambda: checked.plan.devices(checked.problems),
                window=checked.window,
                transport=client,
                limiter=RateLimiter(1, clock),
                writer=LedgerWriter(ledger, "r", capacity=8),
                clock=clock,
                settings=EngineSettings(
                    concurrency=2, attempts=1, backoff_base=0.01, backoff_max=0.01
                ),
                stop=stop,
                rollout=Rollout(
                    waves=WaveMap([2], None, "r"), abort=AbortRule(AbortSpec(errnos=[8]))
                ),
            )
            await engine.run()
            requests = list(sim.requests)
        counts = ledger.counts("r")
    assert clock.slept == 1  # the second device did wait for a slot
    assert isinstance(engine.fatal, Exception) and "abort" in str(engine.fatal)
    assert [imei(0)] == [r.imei for r in requests]
    assert {"failed": 1, "pending": 1} == counts


class FailingLedger(Ledger):
    """A ledger whose commits fail (as on a full disk) once they hold a ``failing`` write."""

    failing: type = SetWave

    def apply(self, ops: Sequence[WriteOp]) -> list[Any]:
        if any(isinstance(op, self.failing) for op in ops):
            raise LedgerError("disk full")
        return super().apply(ops)


@pytest.mark.anyio
@pytest.mark.parametrize("failing", [SetWave, Register, MarkSending, RecordAnswer])
async def test_a_ledger_that_fails_its_commits_stops_the_run_with_its_error(
    tmp_path: Path, failing: type
) -> None:
    """Whichever write's commit fails (the wave's mark, a registration, a request's mark,
    an answer), the run stops with the LedgerError as its reason and no ExceptionGroup
    escapes the engine's task groups; nothing leaves before its mark is durable."""
    job = write_job(tmp_path, 40, commands=READ, rate=1000, concurrency=4)
    checked = check_job(job, now=datetime.now(UTC))
    with FailingLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.failing = failing
        async with (
            running_simulator(SimulatorConfig(api_key=API_KEY)) as sim,
            OneNetClient(
                sim.base_url, ApiKeyAuth(Secret(API_KEY)), HttpConfig(), concurrency=4
            ) as client,
        ):
            writer = LedgerWriter(ledger, "r", capacity=8)
            stop = anyio.Event()
            engine = Engine(
                lambda: checked.plan.devices(checked.problems),
                window=checked.window,
                transport=client,
                limiter=RateLimiter(1000, RealClock()),
                writer=writer,
                clock=RealClock(),
                settings=EngineSettings(
                    concurrency=4, attempts=1, backoff_base=0.01, backoff_max=0.01
                ),
                stop=stop,
                rollout=Rollout(waves=WaveMap([40], None, "r"), on_wave=writer.set_wave),
            )
            totals = await engine.run()
            queued = len(sim.commands)
    assert isinstance(engine.fatal, LedgerError)
    assert "disk full" == str(engine.fatal)
    assert stop.is_set()
    if failing is RecordAnswer:
        assert 0 < totals.sent < 40  # sent, then stopped by the first answer's failed commit
    else:
        assert (0, 0) == (totals.sent, queued)
