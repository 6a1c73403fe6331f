"""The simulator's dice and its rate limiter: every random choice comes from here.

One `random.Random` seeded from `config.seed` makes a sequential test's faults
reproducible. A knob at 0 or 1 never draws, so switching one knob fully on or off
does not shift the dice of the others. When a test changes `config.seed` the dice
are re-seeded on the next draw. Delivery's choices are hashed instead (`hashed_unit`):
a device's fate must not depend on how its requests interleaved with others'.
"""

from __future__ import annotations

import hashlib
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


def hashed_unit(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts` alone, whatever was drawn before.

    Delivery uses it instead of the sequential dice so that a device's fate depends
    on the seed and the device, not on the order requests happened to arrive in.
    """
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def hashed_chance(rate: float, *parts: str) -> bool:
    """`chance` with a hashed number: a rate of 0 or 1 decides without hashing."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return hashed_unit(*parts) < rate
