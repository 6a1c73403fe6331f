"""Requests as they go on the wire: the one renderer of the real send and the dry run.

A ``plan.Request`` holds what the job says (op, ids, body, times); which method and path
carry each op is the platform's contract, so it is decided here, once.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from dispatcher.onenet.platforms import EXECUTE, OFFLINE
from dispatcher.plan import Request
from dispatcher.timewindow import Window

# Relative to the platform profile's prefix (platforms.py).
_PATHS: dict[str, str] = {"write": OFFLINE, "read": OFFLINE, "execute": EXECUTE}
_METHODS: dict[str, str] = {"write": "POST", "read": "GET", "execute": "POST"}


def method_of(request: Request) -> str:
    return _METHODS[request.op]


def path_of(request: Request) -> str:
    return _PATHS[request.op]


def build_url(base_url: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """The request URL, with values encoded as the platform's own examples write them."""
    query = "&".join(f"{k}={quote(v, safe=':')}" for k, v in pairs)
    return f"{base_url}{path}?{query}"


def request_url(root: str, request: Request, window: Window, now: datetime) -> str:
    """Where ``request`` goes at ``now``: ``root`` is the base URL with the profile's prefix."""
    return build_url(root, path_of(request), request.query(window, now))
