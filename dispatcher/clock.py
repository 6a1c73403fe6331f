"""Time, injected: code asks a clock, tests move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import anyio


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The event loop's monotonic clock and the machine's wall clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return anyio.current_time()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def unix_now() -> float:
    return time.time()
