"""Shards: a run's fleet split into N parts by a stable hash of each IMEI.

``run --shard K/N`` sends the devices of shard K only (K from 0, as Kubernetes numbers
the pods of an Indexed Job). The split must be the same on every machine and every
Python version, for as long as a run lasts: pod 2 retried on another node must take
exactly the devices pod 2 took before. So it is BLAKE2b of the IMEI's digits, never
Python's ``hash()`` (salted per process for strings).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from dispatcher.errors import InputError

MAX_SHARDS = 1000  # more shards than this is a typo, not a deployment


def shard_of(imei: str, count: int) -> int:
    """The shard (0..count-1) that owns this IMEI in a split into ``count``."""
    digest = hashlib.blake2b(imei.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``index`` from 0)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, imei: str) -> bool:
        return self.count == 1 or shard_of(imei, self.count) == self.index

    def rate(self, per_second: float, mode: str) -> float:
        """This shard's share of the job's rate: the shards of a run share one key's budget."""
        return per_second if mode == "whole" else per_second / self.count

    def ledger_path(self, base: Path) -> Path:
        """The default SQLite file of this shard beside ``base``: ``ledger.shard-K.sqlite``.

        The shard count is not in the name on purpose: a rerun with another count finds
        the files of the first and is refused, rather than starting fresh files and
        sending again what the other split already sent.
        """
        if self.count == 1:
            return base
        return base.with_name(f"{base.stem}.shard-{self.index}{base.suffix}")


WHOLE = Shard(0, 1)


def parse_shard(text: str) -> Shard:
    """``K/N`` as given to ``--shard``; InputError (exit 2) saying what to write instead."""
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if match is None:
        raise InputError(
            f"--shard {text}: write K/N, shard K (from 0) of N, e.g. --shard 0/4"
            " (in an Indexed Job: --shard $(JOB_COMPLETION_INDEX)/4)"
        )
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS:
        raise InputError(f"--shard {text}: N must be 1..{MAX_SHARDS}, got {count}")
    if index >= count:
        raise InputError(
            f"--shard {text}: K must be 0..{count - 1} (shards are numbered from 0, as"
            " Kubernetes numbers an Indexed Job's pods)"
        )
    return Shard(index, count)


def shard_siblings(base: Path) -> list[Path]:
    """The SQLite files the shards of runs kept beside ``base`` (default ledger layout)."""
    return sorted(base.parent.glob(f"{base.stem}.shard-*{base.suffix}"))
