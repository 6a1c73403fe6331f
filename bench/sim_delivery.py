"""What the simulator's delivery model costs on a big rollout.

A benchmark, not a test: it prints figures and writes ``bench/sim_delivery.json``.
Commands are queued through the simulator's Python API (the record and the delivery
schedule, as the endpoint does after its checks: HTTP is not what is measured), then
the clock is advanced past every device's wake and one catch-up plays the whole
delivery. Figures: queueing, the delivery pass, a catch-up with nothing due (what
every later request pays), and the peak traced memory of the record and the
schedule (from a second pass under tracemalloc: its times are not the ones shown).

    .venv/bin/python bench/sim_delivery.py                       # 100,000 commands
    .venv/bin/python bench/sim_delivery.py --commands 1000000 --per-device 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dispatcher.simulator import Simulator, SimulatorConfig
from dispatcher.simulator.rules import Op
from dispatcher.simulator.times import format_query_time

NOW = 1_900_000_000.0
OUT = Path(__file__).with_suffix(".json")


def queue(sim: Simulator, commands: int, per_device: int) -> None:
    expires = quote(format_query_time(NOW + 86_400))
    body = b'{"data":[{"res_id":5850,"val":true}]}'
    for n in range(commands):
        imei = f"8658200{n // per_device:08d}"
        op: Op = "write" if n % 2 == 0 else "read"
        query = f"imei={imei}&obj_id=3311&obj_inst_id=0&expired_time={expires}"
        request = sim.record.add_request("POST", "/nbiot/offline", imei, NOW)
        command = sim.record.queue(
            request,
            uuid=f"{n:08x}-0000-4000-8000-000000000000",
            op=op,
            imei=imei,
            raw_query=query + "&mode=1" if op == "write" else query,
            raw_body=body if op == "write" else None,
        )
        sim.delivery.queued(command)


def run(commands: int, per_device: int, fail_rate: float, *, traced: bool) -> Simulator:
    """One queue-then-deliver pass; with `traced`, under tracemalloc (slow, for memory)."""
    config = SimulatorConfig(
        now=lambda: NOW, delivery=True, seed=1, confirm_fail_rate=fail_rate, confirm_delay=1.0
    )
    sim = Simulator(config)
    sim.catch_up()
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    queue(sim, commands, per_device)
    FIGURES["queue_seconds"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    sim.advance(config.wake_interval + per_device * config.confirm_delay)
    FIGURES["delivery_pass_seconds"] = round(time.perf_counter() - started, 3)
    if traced:
        FIGURES["peak_traced_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return sim


FIGURES: dict[str, float | int] = {}


def measure(commands: int, per_device: int, fail_rate: float) -> dict[str, float | int]:
    run(commands, per_device, fail_rate, traced=True)
    memory = FIGURES["peak_traced_mb"]
    sim = run(commands, per_device, fail_rate, traced=False)
    started = time.perf_counter()
    for _ in range(1000):
        sim.delivery.catch_up(sim.now())
    idle = (time.perf_counter() - started) / 1000
    outcome = Counter(c.send_status for c in sim.commands)
    assert sum(outcome.values()) == commands and outcome.keys() <= {5, 6}, outcome
    return {
        "commands": commands,
        "devices": commands // per_device,
        "queue_seconds": FIGURES["queue_seconds"],
        "delivery_pass_seconds": FIGURES["delivery_pass_seconds"],
        "idle_catch_up_us": round(idle * 1e6, 2),
        "peak_traced_mb": memory,
        "success": outcome[5],
        "failed": outcome[6],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--per-device", type=int, default=1)
    parser.add_argument("--fail-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    figures = measure(args.commands, args.per_device, args.fail_rate)
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    OUT.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
