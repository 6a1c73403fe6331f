"""The simulated platform's whole state: knobs, clock, record, delivery, dice, load."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dispatcher.simulator.clock import SimClock
from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.delivery import Delivery
from dispatcher.simulator.faults import Faults
from dispatcher.simulator.state import CommandRecord, Record, RequestRecord
from dispatcher.simulator.times import format_answer_time


class Simulator:
    """One simulated platform. Not thread-safe: use it from the loop that serves it.

    A test on another thread reads and moves it through the /_sim/ endpoints.
    """

    __slots__ = (
        "_base_url",
        "clock",
        "config",
        "delivery",
        "faults",
        "in_flight",
        "max_in_flight",
        "record",
    )

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.record = Record()
        self.faults = Faults(self.config)
        self.clock = SimClock(self.config)
        self.delivery = Delivery(self.config, self.record)
        self.in_flight = 0
        self.max_in_flight = 0
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"Simulator(base_url={self._base_url!r}, requests={len(self.requests)}, "
            f"commands={len(self.commands)}, in_flight={self.in_flight}, "
            f"max_in_flight={self.max_in_flight})"
        )

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator is not serving; use running_simulator()")
        return self._base_url

    @base_url.setter
    def base_url(self, url: str | None) -> None:
        self._base_url = url

    @property
    def commands(self) -> list[CommandRecord]:
        """Every queued command; with delivery on, as of the last `catch_up()`."""
        return self.record.commands

    @property
    def requests(self) -> list[RequestRecord]:
        return self.record.requests

    def now(self) -> float:
        """The platform's clock in unix seconds (`SimulatorConfig.now`, sped up, advanced)."""
        return self.clock.now()

    def catch_up(self) -> float:
        """Bring every command to the simulated now: wakes, answers, expiries. Returns now.

        The /_sim/ views call it; call it before reading `commands` directly.
        """
        now = self.now()
        self.delivery.catch_up(now)
        self.look_at(self.record.commands, now)
        return now

    def look_at(self, commands: Iterable[CommandRecord], now: float) -> None:
        """Commands a request is about to show or count: expire those past due."""
        if self.config.delivery:
            self.record.expire_due(commands, now)

    def advance(self, seconds: float) -> float:
        """Move the simulated clock `seconds` forward at once, then catch up. Returns now."""
        self.clock.advance(seconds)
        return self.catch_up()

    def clock_json(self) -> dict[str, Any]:
        now = self.catch_up()
        return {
            "now": now,
            "time": format_answer_time(now),
            "speed": self.clock.speed,
            "advanced": self.clock.advanced,
        }

    def devices_json(self) -> list[dict[str, Any]]:
        """Every device sent a command, in order of its first one (after a catch-up)."""
        self.catch_up()
        delivery, record = self.delivery, self.record
        return [
            {
                "imei": imei,
                "online": delivery.online(imei),
                "next_wake": delivery.next_wake(imei),
                "live": record.live_count(imei),
                "resources": delivery.resources.of(imei),
            }
            for imei, _ in record.devices()
        ]

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def reset(self) -> None:
        """Forget everything, as a new simulator; requests in flight keep counting."""
        self.record.clear()
        self.faults.reset()
        self.clock.reset()
        self.delivery.reset()
        self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, int]:
        return {
            "requests": len(self.requests),
            "queued": len(self.commands),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
        }
