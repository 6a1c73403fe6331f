"""The simulator's dice and its rate limiter: every random choice comes from here.

One `random.Random` seeded from `config.seed` makes a sequential test's faults
reproducible. A knob at 0 or 1 never draws, so switching one knob fully on or off
does not shift the dice of the others. When a test changes `config.seed` the dice
are re-seeded on the next draw.
"""

from __future__ import annotations

import random
import time

from dispatcher.simulator.config import SimulatorConfig


class Faults:
    __slots__ = ("_bucket_rate", "_config", "_rng", "_seed", "_stamp", "_tokens")

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._seed = config.seed
        self._rng = random.Random(config.seed)
        self._bucket_rate: float | None = None
        self._tokens = 0.0
        self._stamp = 0.0

    def __repr__(self) -> str:
        return f"Faults(seed={self._seed!r}, rate={self._bucket_rate!r}, tokens={self._tokens:.2f})"

    def reset(self) -> None:
        """Start the dice and the bucket afresh, as a new simulator would."""
        self._seed = self._config.seed
        self._rng = random.Random(self._seed)
        self._bucket_rate = None

    def chance(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._dice().random() < rate

    def jitter(self, seconds: float) -> float:
        return self._dice().uniform(0.0, seconds) if seconds > 0 else 0.0

    def admit(self) -> bool:
        """Take one token from the bucket; False means over the rate limit.

        The bucket runs on the monotonic clock, not the platform's `now`: a test
        that freezes the platform's clock must not freeze the limiter with it.
        """
        rate = self._config.rate_limit
        if rate is None:
            self._bucket_rate = None
            return True
        now = time.monotonic()
        burst = max(1.0, rate)
        if rate != self._bucket_rate:  # a new or changed limit starts with a full bucket
            self._bucket_rate, self._tokens, self._stamp = rate, burst, now
        self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _dice(self) -> random.Random:
        if self._config.seed != self._seed:
            self._seed = self._config.seed
            self._rng = random.Random(self._seed)
        return self._rng
