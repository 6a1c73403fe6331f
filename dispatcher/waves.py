"""Wave assignment, beside the plan: which wave each device of a run is in.

A device's wave follows from the run id and its IMEI alone (a keyed shuffle), so a
resume, a dry run and `validate` agree on it without a ledger.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from dispatcher.rolloutspec import RolloutSpec, parse_percent


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
