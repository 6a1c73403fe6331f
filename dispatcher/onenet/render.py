"""Requests as they go on the wire: the one renderer of the real send and the dry run.

A ``plan.Request`` holds what the job says (op, ids, body, times); which method and path
carry each op is the platform's contract, so it is decided here, once.
"""

from __future__ import annotations

import functools
from datetime import datetime
from urllib.parse import quote

from dispatcher.onenet.platforms import EXECUTE, OFFLINE
from dispatcher.plan import Request
from dispatcher.timewindow import Window, wire_time

# Relative to the platform profile's prefix (platforms.py).
_PATHS: dict[str, str] = {"write": OFFLINE, "read": OFFLINE, "execute": EXECUTE}
_METHODS: dict[str, str] = {"write": "POST", "read": "GET", "execute": "POST"}


def method_of(request: Request) -> str:
    return _METHODS[request.op]


def path_of(request: Request) -> str:
    return _PATHS[request.op]


def _value(v: str) -> str:
    # ids, modes and IMEIs are digits: nothing to encode, so no quote() call for them
    return v if v.isdigit() else quote(v, safe=":")


def build_url(base_url: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """The request URL, with values encoded as the platform's own examples write them."""
    query = "&".join(f"{k}={_value(v)}" for k, v in pairs)
    return f"{base_url}{path}?{query}"


@functools.lru_cache(maxsize=1024)
def _encoded(pairs: tuple[tuple[str, str], ...]) -> str:
    """A command's shared pairs (ids, mode; retry, timeout, trigger_msg), encoded once per run.

    Every device of a command shares these tuples (``plan`` builds them once per command),
    so the cache holds one entry per command, not per device.
    """
    return "".join(f"&{k}={_value(v)}" for k, v in pairs)


@functools.lru_cache(maxsize=64)
def _times(valid: datetime | None, expired: datetime) -> str:
    """The window's part of the query, formatted once per run (a ``strftime`` is costly).

    ``wire_time`` writes digits, dashes, ``T`` and colons only: nothing to encode.
    """
    part = f"&valid_time={wire_time(valid)}" if valid is not None else ""
    return f"{part}&expired_time={wire_time(expired)}"


def request_url(root: str, request: Request, window: Window, now: datetime) -> str:
    """Where ``request`` goes at ``now``: ``root`` is the base URL with the profile's prefix.

    The same text as ``build_url(root, path, request.query(window, now))``, built from
    parts encoded once: the device's IMEI (digits) and its command's shared pairs.
    """
    head = request.head
    if not head:
        return build_url(root, path_of(request), request.query(window, now))
    valid = window.valid if window.valid is not None and window.valid > now else None
    first, value = head[0]
    return (
        f"{root}{_PATHS[request.op]}?{first}={_value(value)}"
        f"{_encoded(head[1:])}{_times(valid, window.expired)}{_encoded(request.tail)}"
    )
