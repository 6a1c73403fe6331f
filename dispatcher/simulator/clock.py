"""The platform's one clock: every time the simulator checks, records or delivers by.

    simulated now = the `now` knob's clock
                    + seconds moved by `advance()`
                    + (clock_speed - 1) x real seconds elapsed while sped up

so a real clock (`now` None or an offset) runs clock_speed times as fast while
delivery is on, and with delivery off and nothing advanced the clock is exactly the
`now` knob, as before. A callable `now` is the test's own clock: it is never sped
up (a test that wants speed makes its callable run fast, or advances). Knobs are
read lazily: a change of speed or of delivery counts from the next reading, and the
server reads the clock on every request.
Rule checks (valid_time, expired_time, token `et`), `received_at`, history times and
device wakes all read this one clock, so a command's window and its delivery can
never disagree about what time it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from dispatcher.simulator.config import SimulatorConfig


class SimClock:
    """`real` is the elapsed-time source acceleration multiplies (tests pass a fake)."""

    __slots__ = ("_advanced", "_anchor", "_config", "_gained", "_real", "_speed")

    def __init__(
        self, config: SimulatorConfig, *, real: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._real = real
        self.reset()

    def __repr__(self) -> str:
        return f"SimClock(speed={self._speed!r}, advanced={self._advanced!r})"

    def reset(self) -> None:
        """Back to the `now` knob's clock, as a new simulator starts."""
        self._advanced = 0.0
        self._gained = 0.0  # acceleration banked before the last speed change
        self._speed = 1.0
        self._anchor = self._real()

    @property
    def speed(self) -> float:
        """Simulated seconds per real second right now."""
        config = self._config
        if not config.delivery or callable(config.now):
            return 1.0
        return config.clock_speed

    @property
    def advanced(self) -> float:
        return self._advanced

    def base(self) -> float:
        """The `now` knob's clock alone."""
        clock = self._config.now
        if clock is None:
            return time.time()
        if callable(clock):
            return float(clock())
        return time.time() + clock

    def now(self) -> float:
        """Unix seconds on the simulated platform."""
        speed = self.speed
        # Monotonic by default, not wall time: a machine's clock step must not fling
        # the simulation hours ahead at clock_speed 600.
        real = self._real()
        if speed != self._speed:
            # Bank what the old speed gained so that a knob change never makes time jump.
            self._gained += (self._speed - 1.0) * (real - self._anchor)
            self._speed, self._anchor = speed, real
        return self.base() + self._advanced + self._gained + (speed - 1.0) * (real - self._anchor)

    def advance(self, seconds: float) -> None:
        """Move the clock forward at once; the past cannot be revisited."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("seconds must be a finite number >= 0")
        self._advanced += seconds
