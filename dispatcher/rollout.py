"""Rollout controls at run time: which wave a device is in, when to abort, the rate ramp."""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from dispatcher.rolloutspec import AbortSpec, RampSpec, RolloutSpec, parse_percent


def wave_bounds(spec: RolloutSpec, total: int) -> list[int]:
    """Cumulative device counts at the end of each wave, for a fleet of ``total`` devices."""
    bounds: list[int] = []
    last = 0
    for wave in spec.waves:
        count = wave if isinstance(wave, int) else math.ceil(total * parse_percent(wave))
        count = max(last, min(total, count))
        bounds.append(count)
        last = count
    bounds[-1] = total
    return bounds


def shuffle_key(run_id: str, imei: str) -> int:
    """A device's place in a shuffled order: random-looking, the same for every run of a run id."""
    digest = hashlib.blake2b(f"{run_id}\0{imei}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def key_thresholds(keys: Iterable[int], bounds: list[int]) -> list[int]:
    """For shuffled order: the key below which a device falls into each wave but the last.

    Keeps only as many keys as the largest non-final wave holds, not the whole fleet.
    """
    inner = bounds[:-1]
    if not inner or max(inner) == 0:
        return [0] * len(inner)
    smallest = heapq.nsmallest(max(inner), keys)
    return [smallest[b - 1] + 1 if b > 0 else 0 for b in inner]


@dataclass(frozen=True, slots=True)
class WaveMap:
    """Which wave a device belongs to, from its position in the fleet or its shuffle key."""

    bounds: list[int]  # cumulative counts per wave
    thresholds: list[int] | None  # shuffle keys; None for csv order
    run_id: str

    @property
    def waves(self) -> int:
        return len(self.bounds)

    def wave_of(self, position: int, imei: str) -> int:
        if self.thresholds is None:
            for wave, bound in enumerate(self.bounds):
                if position < bound:
                    return wave
            return len(self.bounds) - 1
        key = shuffle_key(self.run_id, imei)
        for wave, threshold in enumerate(self.thresholds):
            if key < threshold:
                return wave
        return len(self.bounds) - 1


class AbortRule:
    """Evaluates a job's abort rule against the answers so far."""

    __slots__ = ("_spec", "answered", "failed")

    def __init__(self, spec: AbortSpec | None, answered: int = 0, failed: int = 0) -> None:
        self._spec = spec
        self.answered = answered
        self.failed = failed

    def record(self, ok: bool, errno: int | None) -> str | None:
        """Count one answered row; a reason when the rollout must stop."""
        self.answered += 1
        if not ok:
            self.failed += 1
        spec = self._spec
        if spec is None:
            return None
        if not ok and errno is not None and errno in spec.errnos:
            return f"errno {errno} is an abort errno"
        share = spec.failure_share
        if (
            share is not None
            and self.answered >= spec.min_answered
            and self.failed >= share * self.answered
        ):
            return (
                f"failure rate {self.failed}/{self.answered} ({self.failed / self.answered:.1%})"
                f" reached the abort rule's {spec.failure_rate}"
            )
        return None


def ramp_rate(ramp: RampSpec | None, per_second: float, elapsed: float) -> float:
    """The rate ``elapsed`` seconds after sending started."""
    if ramp is None:
        return per_second
    steps = int(elapsed // ramp.period.total_seconds())
    return min(per_second, ramp.start * ramp.factor**steps)
