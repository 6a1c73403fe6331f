"""Every rule of the contract refuses a request with its errno and queues nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC

import pytest

from dispatcher.simulator import Simulator, SimulatorConfig

from .wire import (
    API_KEY,
    IMEI,
    Answer,
    Platform,
    in_hours,
    query_time,
    read_query,
    write_query,
)

pytestmark = pytest.mark.anyio

Send = Callable[[Platform], Awaitable[Answer]]
JSON = {"api-key": API_KEY, "Content-Type": "application/json"}


def body(*elements: object) -> dict[str, object]:
    return {"data": list(elements)}


def write(**changes: str | None) -> Send:
    return lambda p: p.write(write_query(**changes))


def read(**changes: str | None) -> Send:
    return lambda p: p.read(read_query(**changes))


def write_body(payload: object) -> Send:
    return lambda p: p.write(body=payload)


CASES: list[tuple[str, int, str, Send]] = [
    # auth
    (
        "no api-key",
        2,
        "api-key required",
        lambda p: p.write(headers={"Content-Type": "application/json"}),
    ),
    ("empty api-key", 2, "api-key required", lambda p: p.read(headers={"api-key": ""})),
    ("wrong api-key", 1, "auth failed", lambda p: p.read(headers={"api-key": "nope"})),
    # required parameters
    *[
        (f"write without {n}", 3, f"parameter required: {n}", write(**{n: None}))
        for n in ("imei", "obj_id", "obj_inst_id", "mode", "expired_time")
    ],
    *[
        (f"read without {n}", 3, f"parameter required: {n}", read(**{n: None}))
        for n in ("imei", "obj_id", "expired_time")
    ],
    # integers; int() would take the Arabic-Indic digit, a Java parser would not
    *[
        (f"obj_id={v!r}", 6, "obj_id must be an integer", write(obj_id=v))
        for v in ("abc", "1.5", "+1", "01", " 1", "1e3", "0x1f", "\u0661")
    ],
    ("negative obj_id", 6, "obj_id must be between", write(obj_id="-1")),
    ("obj_inst_id over int32", 6, "obj_inst_id must be between", write(obj_inst_id=str(2**31))),
    ("res_id not int on read", 6, "res_id must be an integer", read(res_id="a")),
    ("mode 0", 6, "invalid parameter: mode must be 1 or 2", write(mode="0")),
    ("mode 3", 6, "invalid parameter: mode must be 1 or 2", write(mode="3")),
    ("retry -1", 6, "retry must be between 0 and 10", write(retry="-1")),
    ("retry 11", 6, "retry must be between 0 and 10", read(retry="11")),
    ("timeout 4", 6, "timeout must be between 5 and 40", write(timeout="4")),
    ("timeout 41", 6, "timeout must be between 5 and 40", read(timeout="41")),
    ("trigger_msg 0", 6, "trigger_msg must be between 1 and 7", write(trigger_msg="0")),
    ("trigger_msg 8", 6, "trigger_msg must be between 1 and 7", read(trigger_msg="8")),
    # time strings
    *[
        (
            f"expired_time={v!r}",
            6,
            "expired_time must be YYYY-MM-DDTHH:MM:SS",
            write(expired_time=v),
        )
        for v in (
            "2099-01-01 00:00:00",
            "2099-01-01T00:00",
            "2099-1-01T00:00:00",
            "2099-01-01T00:00:00Z",
            "2099-01-01T00:00:00+08:00",
            "2099-01-01T00:00:00.000",
            "2099-02-30T00:00:00",
            "4102444800",
        )
    ],
    (
        "valid_time bad shape",
        6,
        "valid_time must be YYYY-MM-DDTHH:MM:SS",
        read(valid_time="tomorrow"),
    ),
    (
        "expired_time past",
        6,
        "expired_time must be later than the platform",
        write(expired_time=in_hours(-1)),
    ),
    (
        "expired == valid",
        6,
        "expired_time must be later than valid_time",
        write(valid_time=in_hours(2), expired_time=in_hours(2)),
    ),
    (
        "expired < valid",
        6,
        "expired_time must be later than valid_time",
        read(valid_time=in_hours(3), expired_time=in_hours(2)),
    ),
    ("read valid_time past", 6, "valid_time must be later", read(valid_time=in_hours(-1))),
    # A UTC wall time read as UTC+8 lies 8 hours earlier: 7 hours ago here.
    (
        "expired_time in UTC",
        6,
        "expired_time must be later than the platform",
        write(expired_time=query_time(time.time() + 3600, UTC)),
    ),
    # unknown, empty and repeated parameters
    ("mode on a read", 6, "unknown parameter mode", read(mode="1")),
    ("res_id on a write", 6, "unknown parameter res_id", write(res_id="1")),
    ("made-up parameter", 6, "unknown parameter foo", write(foo="1")),
    ("IMEI upper case", 6, "unknown parameter IMEI", write(imei=None, IMEI=IMEI)),
    ("empty imei", 6, "imei must not be empty", write(imei="")),
    ("empty optional", 6, "retry must not be empty", read(retry="")),
    (
        "repeated obj_id",
        6,
        "obj_id given more than once",
        lambda p: p.write([*write_query(), ("obj_id", "1")]),
    ),
    # write headers and body
    (
        "text/plain body",
        6,
        "Content-Type must be application/json",
        lambda p: p.write(headers={"api-key": API_KEY, "Content-Type": "text/plain"}),
    ),
    (
        "no Content-Type",
        6,
        "Content-Type must be application/json",
        lambda p: p.call(
            "POST",
            "/nbiot/offline",
            write_query(),
            body=b'{"data":[]}',
            skip_auto_headers=["Content-Type"],
        ),
    ),
    (
        "latin-1 charset",
        6,
        "charset must be utf-8",
        lambda p: p.write(
            headers={"api-key": API_KEY, "Content-Type": "application/json; charset=latin-1"}
        ),
    ),
    ("empty body", 3, "parameter required: data", write_body(b"")),
    ("not JSON", 4, "invalid JSON", write_body(b"{data: [1]}")),
    ("NaN", 4, "invalid JSON", write_body(b'{"data":[{"res_id":1,"val":NaN}]}')),
    ("not UTF-8", 4, "invalid JSON", write_body(b'{"data":[{"res_id":1,"val":"\xff"}]}')),
    ("over 2 KiB", 5, "request too large", write_body(body({"res_id": 1, "val": "x" * 2048}))),
    ("over 1 MiB", 5, "request too large", write_body(body({"res_id": 1, "val": "x" * 2**21}))),
    ("array body", 6, "body must be a JSON object", write_body([{"res_id": 1, "val": 1}])),
    ("no data key", 3, "parameter required: data", write_body({})),
    ("data not array", 6, "data must be an array", write_body({"data": {"res_id": 1, "val": 1}})),
    ("data null", 6, "data must be an array", write_body({"data": None})),
    ("data empty", 6, "data must not be empty", write_body(body())),
    (
        "extra body key",
        6,
        "unknown body key mode",
        write_body({**body({"res_id": 1, "val": 1}), "mode": 1}),
    ),
    ("element not object", 6, "data[0] must be an object", write_body(body(5))),
    ("no res_id", 3, "parameter required: data[0].res_id", write_body(body({"val": 1}))),
    (
        "no val",
        3,
        "parameter required: data[1].val",
        write_body(body({"res_id": 1, "val": 1}, {"res_id": 2})),
    ),
    (
        "res_id string",
        6,
        "data[0].res_id must be an integer",
        write_body(body({"res_id": "12", "val": 1})),
    ),
    (
        "res_id bool",
        6,
        "data[0].res_id must be an integer",
        write_body(body({"res_id": True, "val": 1})),
    ),
    (
        "res_id float",
        6,
        "data[0].res_id must be an integer",
        write_body(body({"res_id": 1.0, "val": 1})),
    ),
    (
        "res_id negative",
        6,
        "data[0].res_id must be an integer",
        write_body(body({"res_id": -1, "val": 1})),
    ),
    (
        "type 3",
        6,
        "data[0].type must be 1 or 2",
        write_body(body({"res_id": 1, "type": 3, "val": 1})),
    ),
    (
        "type string",
        6,
        "data[0].type must be 1 or 2",
        write_body(body({"res_id": 1, "type": "1", "val": "00"})),
    ),
    (
        "type bool",
        6,
        "data[0].type must be 1 or 2",
        write_body(body({"res_id": 1, "type": True, "val": "00"})),
    ),
    (
        "type null",
        6,
        "data[0].type must not be null",
        write_body(body({"res_id": 1, "type": None, "val": 1})),
    ),
    *[
        (
            f"opaque {v!r}",
            6,
            "even-length hex string",
            write_body(body({"res_id": 1, "type": 1, "val": v})),
        )
        for v in ("121", "12G4", "", " 12", 1234, True)
    ],
    *[
        (f"time {v!r}", 6, "must be a number", write_body(body({"res_id": 1, "type": 2, "val": v})))
        for v in ("1700000000", True, 10**19)
    ],
    ("val null", 6, "data[0].val must not be null", write_body(body({"res_id": 1, "val": None}))),
    ("val list", 6, "data[0].val must be a boolean", write_body(body({"res_id": 1, "val": [1]}))),
    ("val object", 6, "data[0].val must be a boolean", write_body(body({"res_id": 1, "val": {}}))),
    (
        "val over long",
        6,
        "data[0].val must be a boolean",
        write_body(body({"res_id": 1, "val": 2**63})),
    ),
    (
        "val infinite",
        6,
        "data[0].val must be a boolean",
        write_body(b'{"data":[{"res_id":1,"val":1e400}]}'),
    ),
    (
        "unknown element key",
        6,
        "unknown key data[0].obj_id",
        write_body(body({"res_id": 1, "val": 1, "obj_id": 3})),
    ),
    (
        "repeated key",
        6,
        "a JSON key is repeated",
        write_body(b'{"data":[{"res_id":1,"res_id":2,"val":1}]}'),
    ),
    # read body
    (
        "read with body",
        6,
        "a read takes no body",
        lambda p: p.call("GET", "/nbiot/offline", read_query(), body=b"{}"),
    ),
]


@pytest.mark.parametrize(
    ("errno", "text", "send"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_rule_is_enforced(
    platform: Platform, sim: Simulator, errno: int, text: str, send: Send
) -> None:
    """The request is answered HTTP 200 with its errno and a reason; nothing is queued."""
    answer = await send(platform)

    assert (answer.status, answer.content_type) == (200, "application/json")
    assert answer.json.keys() == {"errno", "error"}
    assert answer.errno == errno
    assert text in answer.error
    assert await platform.commands() == []
    [request] = (await platform.sim("requests"))["requests"]
    assert (request["errno"], request["uuid"]) == (errno, None)


def test_cases_have_unique_names() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


class TestPlatformClock:
    """Time rules compare with the simulator's clock, which tests can pin."""

    NOW = 1_900_000_000.0
    tomorrow = query_time(NOW + 86_400)

    @pytest.fixture
    def config(self) -> SimulatorConfig:
        return SimulatorConfig(api_key=API_KEY, now=lambda: self.NOW)

    async def test_read_valid_time_equal_to_now_is_refused(self, platform: Platform) -> None:
        query = read_query(valid_time=query_time(self.NOW), expired_time=self.tomorrow)
        answer = await platform.read(query)
        assert (answer.errno, answer.error) == (
            6,
            "invalid parameter: valid_time must be later than the platform's current time",
        )

    async def test_read_valid_time_one_second_later_is_accepted(self, platform: Platform) -> None:
        query = read_query(valid_time=query_time(self.NOW + 1), expired_time=self.tomorrow)
        assert (await platform.read(query)).errno == 0

    async def test_expired_time_one_second_later_is_accepted(self, platform: Platform) -> None:
        """The pinned clock, not the machine's, decides; and query times are UTC+8."""
        answer = await platform.write(write_query(expired_time=query_time(self.NOW + 1)))
        assert answer.errno == 0

    async def test_expired_time_equal_to_now_is_refused(self, platform: Platform) -> None:
        answer = await platform.write(write_query(expired_time=query_time(self.NOW)))
        assert answer.errno == 6

    async def test_clock_offset_moves_now(self, platform: Platform, sim: Simulator) -> None:
        """A number for `now` shifts the real clock: a day ahead, tomorrow noon is past."""
        sim.config.now = 86_400.0 * 2
        answer = await platform.write(write_query(expired_time=in_hours(24)))
        assert answer.errno == 6


async def test_rejections_dump_as_json(platform: Platform) -> None:
    """A rejection's text is plain JSON text, never the key."""
    answer = await platform.read(headers={"api-key": "a-wrong-key"})
    assert "a-wrong-key" not in json.dumps(answer.json)
    assert API_KEY not in json.dumps(answer.json)
