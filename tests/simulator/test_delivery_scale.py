"""The delivery model stays cheap at a rollout's size (figures: bench/sim_delivery.py)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

from dispatcher.simulator import Simulator, SimulatorConfig
from dispatcher.simulator.state import SUCCESS

from .wire import query_time

NOW = 1_900_000_000.0
COMMANDS = 100_000
PER_DEVICE = 10


def test_a_hundred_thousand_commands_in_one_pass() -> None:
    """Queued through the Python API, all delivered by one catch-up after a jump."""
    sim = Simulator(SimulatorConfig(now=lambda: NOW, delivery=True, confirm_delay=1.0))
    sim.catch_up()
    expires = quote(query_time(NOW + 86_400))
    body = b'{"data":[{"res_id":5850,"val":true}]}'
    for n in range(COMMANDS):
        imei = f"8658200{n // PER_DEVICE:08d}"
        query = f"imei={imei}&obj_id=3311&obj_inst_id=0&mode=1&expired_time={expires}"
        request = sim.record.add_request("POST", "/nbiot/offline", imei, NOW)
        command = sim.record.queue(
            request,
            uuid=f"{n:08x}-0000-4000-8000-000000000000",
            op="write",
            imei=imei,
            raw_query=query,
            raw_body=body,
        )
        sim.delivery.queued(command)

    sim.advance(sim.config.wake_interval + PER_DEVICE * sim.config.confirm_delay)

    assert Counter(c.send_status for c in sim.commands) == {SUCCESS: COMMANDS}
    assert all(sim.record.live_count(imei) == 0 for imei, _ in sim.record.devices())
    assert sim.delivery.next_wake(sim.commands[0].imei) is None
