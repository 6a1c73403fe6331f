"""Cached execute: queued like a write or read, every rule of the contract enforced."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import pytest

from dispatcher.simulator import Simulator, SimulatorConfig

from .wire import (
    API_KEY,
    IMEI,
    Answer,
    Platform,
    execute_query,
    in_hours,
    query_time,
    uuid_of,
)

pytestmark = pytest.mark.anyio

Send = Callable[[Platform], Awaitable[Answer]]


def execute(**changes: str | None) -> Send:
    return lambda p: p.execute(execute_query(**changes))


def execute_body(payload: object) -> Send:
    return lambda p: p.execute(body=payload)


async def test_execute_without_body_is_queued(platform: Platform, sim: Simulator) -> None:
    """No body at all: a uuid, op "execute", a null body in the record."""
    query = execute_query(valid_time=in_hours(1), retry="0", timeout="40", trigger_msg="2")
    token = uuid_of(await platform.execute(query))

    [command] = await platform.commands()
    assert (command["uuid"], command["op"], command["imei"]) == (token, "execute", IMEI)
    assert command["query"] == dict(query)
    assert command["body"] is None
    assert sim.commands[0].raw_body is None


async def test_execute_with_args_is_queued(platform: Platform) -> None:
    token = uuid_of(await platform.execute(body={"args": "reboot 5"}))
    [command] = await platform.commands()
    assert (command["uuid"], command["body"]) == (token, {"args": "reboot 5"})


async def test_empty_body_counts_as_none(platform: Platform) -> None:
    """Zero bytes, whatever Content-Type is claimed, is an execute without args."""
    headers = {"api-key": API_KEY, "Content-Type": "text/plain"}
    assert (await platform.execute(body=b"", headers=headers)).errno == 0
    [command] = await platform.commands()
    assert command["body"] is None


async def test_body_of_exactly_2048_bytes_is_accepted(platform: Platform) -> None:
    shell = len(json.dumps({"args": ""}).encode())
    body = json.dumps({"args": "x" * (2048 - shell)}).encode()
    assert len(body) == 2048
    assert (await platform.execute(body=body)).errno == 0


async def test_history_and_detail_of_an_execute(platform: Platform) -> None:
    """type EXECUTE; args the ids as integers; content the body as received."""
    token = uuid_of(await platform.execute(body={"args": "1,2"}))
    bare = uuid_of(await platform.execute())
    query = [("imei", IMEI), ("start", query_time(time.time() - 60)), ("sort", "ASC")]
    items = (await platform.call("GET", "/nbiot/offline/history", query)).json["data"]["items"]
    assert [(i["cmd_uuid"], i["type"]) for i in items] == [(token, "EXECUTE"), (bare, "EXECUTE")]

    data = (await platform.detail(token)).json["data"]
    assert json.loads(data["args"]) == {"obj_id": 3311, "obj_inst_id": 0, "res_id": 5523}
    assert json.loads(data["content"]) == {"args": "1,2"}
    assert "cmd_result" not in data
    assert (await platform.detail(bare)).json["data"]["content"] is None


async def test_device_faults_apply_to_executes(platform: Platform, sim: Simulator) -> None:
    sim.config.fail_imeis = {IMEI}
    assert (await platform.execute()).errno == 8
    sim.config.fail_imeis = set()
    sim.config.error_rate = 1.0
    assert (await platform.execute()).errno == 7
    assert await platform.commands() == []


CASES: list[tuple[str, int, str, Send]] = [
    *[
        (f"without {n}", 3, f"parameter required: {n}", execute(**{n: None}))
        for n in ("imei", "obj_id", "obj_inst_id", "res_id", "expired_time")
    ],
    ("mode", 6, "unknown parameter mode", execute(mode="1")),
    ("made-up parameter", 6, "unknown parameter args", execute(args="x")),
    ("res_id not int", 6, "res_id must be an integer", execute(res_id="01")),
    ("res_id over int32", 6, "res_id must be between", execute(res_id=str(2**31))),
    ("obj_inst_id negative", 6, "obj_inst_id must be between", execute(obj_inst_id="-1")),
    ("retry 11", 6, "retry must be between 0 and 10", execute(retry="11")),
    ("timeout 41", 6, "timeout must be between 5 and 40", execute(timeout="41")),
    ("trigger_msg 0", 6, "trigger_msg must be between 1 and 7", execute(trigger_msg="0")),
    ("empty value", 6, "imei must not be empty", execute(imei="")),
    (
        "repeated res_id",
        6,
        "res_id given more than once",
        lambda p: p.execute([*execute_query(), ("res_id", "1")]),
    ),
    (
        "expired_time shape",
        6,
        "expired_time must be YYYY-MM-DDTHH:MM:SS",
        execute(expired_time="2099-01-01 00:00:00"),
    ),
    (
        "expired_time past",
        6,
        "expired_time must be later than the platform",
        execute(expired_time=in_hours(-1)),
    ),
    ("valid_time past", 6, "valid_time must be later", execute(valid_time=in_hours(-1))),
    (
        "expired before valid",
        6,
        "expired_time must be later than valid_time",
        execute(valid_time=in_hours(3), expired_time=in_hours(2)),
    ),
    (
        "text/plain body",
        6,
        "Content-Type must be application/json",
        lambda p: p.execute(
            body=b'{"args":"x"}', headers={"api-key": API_KEY, "Content-Type": "text/plain"}
        ),
    ),
    (
        "body without Content-Type",
        6,
        "Content-Type must be application/json",
        lambda p: p.execute(body=b'{"args":"x"}', headers={"api-key": API_KEY}),
    ),
    (
        "latin-1 charset",
        6,
        "charset must be utf-8",
        lambda p: p.execute(
            body=b'{"args":"x"}',
            headers={"api-key": API_KEY, "Content-Type": "application/json; charset=latin-1"},
        ),
    ),
    ("not JSON", 4, "invalid JSON", execute_body(b"{args: 1}")),
    ("NaN", 4, "invalid JSON", execute_body(b'{"args": NaN}')),
    ("not UTF-8", 4, "invalid JSON", execute_body(b'{"args": "\xff"}')),
    ("over 2 KiB", 5, "request too large", execute_body({"args": "x" * 2048})),
    ("array body", 6, "body must be a JSON object", execute_body(["x"])),
    ("string body", 6, "body must be a JSON object", execute_body("x")),
    ("no args key", 3, "parameter required: args", execute_body({})),
    ("extra key", 6, "unknown body key data", execute_body({"args": "x", "data": []})),
    ("args null", 6, "args must not be null", execute_body({"args": None})),
    ("args number", 6, "args must be a string", execute_body({"args": 5})),
    ("args object", 6, "args must be a string", execute_body({"args": {"a": 1}})),
    ("args empty", 6, "args must not be empty", execute_body({"args": ""})),
    ("repeated key", 6, "a JSON key is repeated", execute_body(b'{"args":"a","args":"b"}')),
    ("no api-key", 2, "api-key required", lambda p: p.execute(headers={})),
]


@pytest.mark.parametrize(
    ("errno", "text", "send"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_rule_is_enforced(platform: Platform, errno: int, text: str, send: Send) -> None:
    """HTTP 200 with the errno and a reason; nothing queued."""
    answer = await send(platform)

    assert (answer.status, answer.content_type) == (200, "application/json")
    assert answer.json.keys() == {"errno", "error"}
    assert answer.errno == errno
    assert text in answer.error
    assert await platform.commands() == []


def test_cases_have_unique_names() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


class TestPlatformClock:
    NOW = 1_900_000_000.0

    @pytest.fixture
    def config(self) -> SimulatorConfig:
        return SimulatorConfig(api_key=API_KEY, now=lambda: self.NOW)

    async def test_valid_time_equal_to_now_is_refused(self, platform: Platform) -> None:
        """Like a read's: an execute's valid_time must be strictly later than now."""
        tomorrow = query_time(self.NOW + 86_400)
        at_now = execute_query(valid_time=query_time(self.NOW), expired_time=tomorrow)
        assert (await platform.execute(at_now)).errno == 6
        later = execute_query(valid_time=query_time(self.NOW + 1), expired_time=tomorrow)
        assert (await platform.execute(later)).errno == 0
