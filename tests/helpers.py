"""Shared test helpers: a simulator on a background thread, and job files written to tmp."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel

from dispatcher.imei import luhn_check_digit
from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator

API_KEY = "test-key-6f1c2a"


def imei(n: int, prefix: str = "86582005") -> str:
    """A valid IMEI (Luhn digit computed) numbered ``n``."""
    base = f"{prefix}{n:06d}"
    return base + str(luhn_check_digit(base))


class SimThread:
    """A simulator serving from its own thread and event loop, so the CLI can run in this one."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._ready = threading.Event()
        self._stop: anyio.Event | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), daemon=True)
        self.sim: Simulator | None = None

    async def _main(self) -> None:
        self._stop = anyio.Event()
        self._token = anyio.lowlevel.current_token()
        async with running_simulator(self.config) as sim:
            self.sim = sim
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Simulator:
        self._thread.start()
        # generous: on a busy machine the thread may wait a while for a core
        if not self._ready.wait(60):
            raise RuntimeError("simulator did not start")
        assert self.sim is not None
        return self.sim

    def stop(self) -> None:
        if self._stop is not None:
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
        self._thread.join(60)


@contextmanager
def simulator(**knobs: object) -> Iterator[Simulator]:
    thread = SimThread(SimulatorConfig(**{"api_key": API_KEY, **knobs}))  # type: ignore[arg-type]
    try:
        yield thread.start()
    finally:
        thread.stop()


def write_fleet(path: Path, imeis: list[str], extra: dict[str, list[str]] | None = None) -> Path:
    extra = extra or {}
    header = ["imei", *extra]
    lines = [",".join(header)]
    for i, value in enumerate(imeis):
        lines.append(",".join([value, *(col[i] for col in extra.values())]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


JOB = """\
version: 1
name: {name}
fleets:
  - name: zone
    csv: fleet.csv
window:
  valid_time: {valid_time}
  expired_time: +48h
platform:
  retry: 2
commands:
{commands}
rate:
  per_second: {rate}
  concurrency: {concurrency}
"""

WRITE_AND_READ = """\
  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}, {res_id: 5750, val: "{server_ip}"}]}
  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}
"""


def write_job(
    directory: Path,
    devices: int,
    *,
    name: str = "test-job",
    commands: str = WRITE_AND_READ,
    rate: float = 1000,
    concurrency: int = 8,
    valid_time: str = "now",
) -> Path:
    imeis = [imei(i) for i in range(devices)]
    write_fleet(
        directory / "fleet.csv", imeis, {"server_ip": [f"10.0.0.{i % 250}" for i in range(devices)]}
    )
    job = directory / "job.yaml"
    job.write_text(
        JOB.format(
            name=name, commands=commands, rate=rate, concurrency=concurrency, valid_time=valid_time
        ),
        encoding="utf-8",
    )
    return job
