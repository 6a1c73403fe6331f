"""Test-side helpers for talking to the simulator over real loopback HTTP.

Written from the contract, not from the simulator's code: times are formatted here
in UTC+8 independently, so a zone bug in the simulator cannot hide behind its own
formatter.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from yarl import URL

API_KEY = "test-key-not-a-secret"
IMEI = "865820031234567"
CST = timezone(timedelta(hours=8))

Pairs = Sequence[tuple[str, str]]


def query_time(unix: float, tz: timezone = CST) -> str:
    """The contract's query time form: UTC+8 wall time, `T`, no zone."""
    return datetime.fromtimestamp(unix, tz).strftime("%Y-%m-%dT%H:%M:%S")


def answer_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, CST).strftime("%Y-%m-%d %H:%M:%S")


def in_hours(hours: float, now: float | None = None) -> str:
    return query_time((time.time() if now is None else now) + hours * 3600)


def write_query(**changes: str | None) -> list[tuple[str, str]]:
    """A valid write's query; a change of None removes that parameter."""
    base = {
        "imei": IMEI,
        "obj_id": "3311",
        "obj_inst_id": "0",
        "mode": "1",
        "expired_time": in_hours(48),
    }
    return _apply(base, changes)


def read_query(**changes: str | None) -> list[tuple[str, str]]:
    base = {"imei": IMEI, "obj_id": "3311", "expired_time": in_hours(48)}
    return _apply(base, changes)


def execute_query(**changes: str | None) -> list[tuple[str, str]]:
    base = {
        "imei": IMEI,
        "obj_id": "3311",
        "obj_inst_id": "0",
        "res_id": "5523",
        "expired_time": in_hours(48),
    }
    return _apply(base, changes)


def _apply(base: dict[str, str], changes: Mapping[str, str | None]) -> list[tuple[str, str]]:
    merged: dict[str, str | None] = {**base, **changes}
    return [(k, v) for k, v in merged.items() if v is not None]


WRITE_BODY: dict[str, Any] = {"data": [{"res_id": 5850, "val": True}]}


class Answer:
    """An HTTP answer from the simulator: status, content type and parsed JSON."""

    def __init__(self, status: int, content_type: str, payload: Any) -> None:
        self.status = status
        self.content_type = content_type
        self.json = payload

    @property
    def errno(self) -> Any:
        return self.json["errno"]

    @property
    def error(self) -> Any:
        return self.json["error"]


class Platform:
    """A thin aiohttp wrapper: what a client would send, with nothing checked first."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    def url(self, path: str, query: Pairs = ()) -> URL:
        return URL(self.base_url).with_path(path).with_query(list(query))

    async def call(
        self,
        method: str,
        path: str,
        query: Pairs = (),
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        skip_auto_headers: Sequence[str] = (),
    ) -> Answer:
        sent = {"api-key": API_KEY} if headers is None else dict(headers)
        # aiohttp warns (an error here) about big raw bytes; a stream sends the same.
        data = io.BytesIO(body) if body is not None and len(body) > 2**16 else body
        async with self.session.request(
            method,
            self.url(path, query),
            data=data,
            headers=sent,
            skip_auto_headers=skip_auto_headers,
        ) as response:
            text = await response.text()
            payload = json.loads(text) if response.content_type == "application/json" else text
            return Answer(response.status, response.content_type, payload)

    async def write(
        self,
        query: Pairs | None = None,
        body: Any = WRITE_BODY,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"api-key": API_KEY, "Content-Type": "application/json"}
        if headers is not None:
            sent = dict(headers)
        return await self.call(
            "POST",
            "/nbiot/offline",
            write_query() if query is None else query,
            body=raw,
            headers=sent,
        )

    async def read(
        self, query: Pairs | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Answer:
        return await self.call(
            "GET", "/nbiot/offline", read_query() if query is None else query, headers=headers
        )

    async def execute(
        self,
        query: Pairs | None = None,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """A cached execute; `body` None sends none, bytes as is, anything else as JSON."""
        sent = {"api-key": API_KEY}
        raw: bytes | None = None
        if body is not None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        return await self.call(
            "POST",
            "/nbiot/execute/offline",
            execute_query() if query is None else query,
            body=raw,
            headers=sent if headers is None else headers,
        )

    async def detail(self, uuid: str, imei: str = IMEI) -> Answer:
        return await self.call("GET", f"/nbiot/offline/history/{uuid}", [("imei", imei)])

    async def cancel(self, uuid: str, imei: str = IMEI) -> Answer:
        return await self.call("PUT", f"/nbiot/offline/cancel/{uuid}", [("imei", imei)])

    async def cancel_all(self, imei: str = IMEI) -> Answer:
        return await self.call("PUT", "/nbiot/offline/cancel/all", [("imei", imei)])

    async def advance(self, seconds: float) -> Any:
        """Move the simulated clock; answers GET /_sim/clock's object."""
        async with self.session.post(
            self.url("/_sim/advance"), json={"seconds": seconds}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def devices(self) -> dict[str, dict[str, Any]]:
        """GET /_sim/devices, keyed by IMEI."""
        listed = (await self.sim("devices"))["devices"]
        return {device["imei"]: device for device in listed}

    async def sim(self, what: str) -> Any:
        """GET one of the /_sim/ endpoints."""
        async with self.session.get(self.url(f"/_sim/{what}")) as response:
            assert response.status == 200
            return await response.json()

    async def commands(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = (await self.sim("commands"))["commands"]
        return answer

    async def set_config(self, **changes: Any) -> tuple[int, Any]:
        async with self.session.post(self.url("/_sim/config"), json=changes) as response:
            return response.status, await response.json()


def uuid_of(answer: Answer) -> str:
    """The uuid of an answer that queued a command (fails the test otherwise)."""
    assert answer.errno == 0, answer.json
    return str(answer.json["data"]["uuid"])
