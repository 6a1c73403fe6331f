"""A valid cached write or read is queued, answered with a uuid and recorded."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from dispatcher.simulator import Simulator

from .wire import API_KEY, IMEI, WRITE_BODY, Platform, in_hours, read_query, write_query

pytestmark = pytest.mark.anyio


def assert_succ(answer_json: object) -> str:
    assert isinstance(answer_json, dict)
    assert answer_json.keys() == {"errno", "error", "data"}
    assert (answer_json["errno"], answer_json["error"]) == (0, "succ")
    assert answer_json["data"].keys() == {"uuid"}
    token = answer_json["data"]["uuid"]
    assert uuid.UUID(token).version == 4
    return str(token)


async def test_valid_write_is_queued_and_recorded(platform: Platform, sim: Simulator) -> None:
    """A valid write answers errno 0 with a fresh uuid4, and /_sim/commands shows it."""
    before = time.time()
    query = write_query(valid_time=in_hours(1), retry="0", timeout="5", trigger_msg="4")
    answer = await platform.write(query)

    assert (answer.status, answer.content_type) == (200, "application/json")
    token = assert_succ(answer.json)
    [command] = await platform.commands()
    assert command["uuid"] == token
    assert command["op"] == "write"
    assert command["imei"] == IMEI
    assert command["query"] == dict(query)
    assert command["body"] == WRITE_BODY
    assert command["seq"] == 1
    assert before <= command["received_at"] <= time.time()
    assert sim.commands[0].uuid == token
    assert sim.commands[0].body == WRITE_BODY


async def test_valid_read_is_queued_with_no_body(platform: Platform, sim: Simulator) -> None:
    """A valid read answers a uuid; its record carries the query and a null body."""
    query = read_query(obj_inst_id="0", res_id="5850", valid_time=in_hours(1))
    token = assert_succ((await platform.read(query)).json)

    [command] = await platform.commands()
    assert (command["uuid"], command["op"], command["body"]) == (token, "read", None)
    assert command["query"] == dict(query)


@pytest.mark.parametrize(
    "element",
    [
        {"res_id": 12, "val": 121},
        {"res_id": 12, "type": 1, "val": "121A"},
        {"res_id": 12, "type": 1, "val": "00ff"},
        {"res_id": 12, "type": 2, "val": 1_700_000_000},
        {"res_id": 12, "type": 2, "val": 1_700_000_000.5},
        {"res_id": 0, "val": "text"},
        {"res_id": 12, "val": ""},
        {"res_id": 12, "val": -3.25},
        {"res_id": 12, "val": False},
        {"res_id": 12, "val": 2**63 - 1},
    ],
)
async def test_write_body_kinds_the_contract_allows(
    platform: Platform, element: dict[str, object]
) -> None:
    """Every value kind the contract names is accepted."""
    assert_succ((await platform.write(body={"data": [element]})).json)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retry", "0"),
        ("retry", "10"),
        ("timeout", "5"),
        ("timeout", "40"),
        ("trigger_msg", "1"),
        ("trigger_msg", "7"),
        ("mode", "2"),
        ("obj_id", "0"),
    ],
)
async def test_range_edges_are_accepted(platform: Platform, name: str, value: str) -> None:
    """The contract's ranges are inclusive."""
    assert (await platform.write(write_query(**{name: value}))).errno == 0


async def test_write_valid_time_may_be_in_the_past(platform: Platform) -> None:
    """Only a read's valid_time must be in the future."""
    assert (await platform.write(write_query(valid_time=in_hours(-1)))).errno == 0


async def test_json_charset_utf8_is_accepted(platform: Platform) -> None:
    """A charset parameter naming UTF-8 still says JSON."""
    headers = {"api-key": API_KEY, "Content-Type": "application/json; charset=utf-8"}
    assert (await platform.write(headers=headers)).errno == 0


async def test_body_of_exactly_2048_bytes_is_accepted(platform: Platform) -> None:
    """The 2 KiB limit includes 2048 itself."""
    shell = json.dumps({"data": [{"res_id": 1, "val": ""}]}).encode()
    body = json.dumps({"data": [{"res_id": 1, "val": "x" * (2048 - len(shell))}]}).encode()
    assert len(body) == 2048
    assert (await platform.write(body=body)).errno == 0


async def test_commands_and_requests_keep_arrival_order(platform: Platform) -> None:
    """seq grows with arrival; a command's seq is the seq of its request."""
    await platform.write()
    await platform.read(read_query(obj_id="x"))  # rejected: recorded, not queued
    await platform.read()

    commands = await platform.commands()
    requests = (await platform.sim("requests"))["requests"]
    assert [c["op"] for c in commands] == ["write", "read"]
    assert [c["seq"] for c in commands] == [1, 3]
    assert [(r["seq"], r["method"], r["errno"]) for r in requests] == [
        (1, "POST", 0),
        (2, "GET", 6),
        (3, "GET", 0),
    ]
    assert requests[0]["uuid"] == commands[0]["uuid"]
    assert requests[1]["uuid"] is None
    assert all(r["path"] == "/nbiot/offline" and r["imei"] == IMEI for r in requests)
    assert all(isinstance(r["received_at"], float) for r in requests)
