"""The seams between the program and the network: what the engine and the lifecycle use.

Both are implemented by ``client.OneNetClient``; neither this module nor its users import
aiohttp, so the engine can be driven by any transport (and ``validate`` loads no HTTP).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from dispatcher.outcome import Outcome
from dispatcher.plan import Request
from dispatcher.timewindow import Window


class Transport(Protocol):
    """Sends one cached command; the outcome says what became of it."""

    async def send(self, request: Request, window: Window, now: datetime) -> Outcome: ...


class PlatformQueries(Protocol):
    """The platform's other calls: history and detail (GET), cancel (PUT).

    The answer's ``data`` object, or an Outcome saying why there is none.
    """

    async def ask(
        self, path: str, pairs: list[tuple[str, str]], *, method: str = "GET"
    ) -> dict[str, Any] | Outcome: ...
