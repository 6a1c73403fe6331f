"""History, detail and cancel answer in the documented shapes; the 10-command cap."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from dispatcher.simulator import Simulator, SimulatorConfig

from .wire import (
    API_KEY,
    IMEI,
    WRITE_BODY,
    Answer,
    Platform,
    answer_time,
    in_hours,
    query_time,
    read_query,
    write_query,
)

pytestmark = pytest.mark.anyio

ITEM_KEYS = {
    "cmd_uuid",
    "type",
    "create_time",
    "valid_time",
    "expired_time",
    "send_time",
    "trigger_msg",
    "send_status",
    "confirm_time",
    "confirm_status",
    "feedback_time",
    "imei",
    "remain",
}
ANSWER_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
START = query_time(time.time() - 60)


def uuid_of(answer: Answer) -> str:
    assert answer.errno == 0, answer.json
    return str(answer.json["data"]["uuid"])


async def history(platform: Platform, **params: str) -> Answer:
    query = {"imei": IMEI, "start": START, **params}
    return await platform.call("GET", "/nbiot/offline/history", list(query.items()))


async def detail(platform: Platform, uuid: str, imei: str = IMEI) -> Answer:
    return await platform.call("GET", f"/nbiot/offline/history/{uuid}", [("imei", imei)])


async def cancel(platform: Platform, uuid: str, imei: str = IMEI) -> Answer:
    return await platform.call("PUT", f"/nbiot/offline/cancel/{uuid}", [("imei", imei)])


async def test_history_lists_queued_commands(platform: Platform) -> None:
    """total_count and items, newest first, with every documented field."""
    expired = in_hours(30)
    write = uuid_of(await platform.write(write_query(expired_time=expired, retry="2")))
    read = uuid_of(await platform.read(read_query(trigger_msg="3")))

    answer = await history(platform)
    assert answer.json.keys() == {"errno", "error", "data"}
    data = answer.json["data"]
    assert data["total_count"] == 2
    newest, oldest = data["items"]
    assert all(item.keys() == ITEM_KEYS for item in data["items"])
    assert (newest["cmd_uuid"], newest["type"], newest["trigger_msg"]) == (read, "READ", 3)
    assert (oldest["cmd_uuid"], oldest["type"], oldest["remain"]) == (write, "WRITE", 2)
    assert oldest["expired_time"] == expired.replace("T", " ")
    for item in data["items"]:
        assert item["send_status"] == 1
        assert item["imei"] == IMEI
        assert ANSWER_TIME.fullmatch(item["create_time"])
        assert item["valid_time"] == item["create_time"]  # no valid_time sent = now
        assert item["send_time"] is None and item["confirm_status"] is None


async def test_history_times_are_utc_plus_8(platform: Platform, sim: Simulator) -> None:
    uuid = uuid_of(await platform.write())
    [item] = (await history(platform)).json["data"]["items"]
    assert item["cmd_uuid"] == uuid
    assert item["create_time"] == answer_time(sim.commands[0].received_at)


async def test_history_pages_and_sorts(platform: Platform) -> None:
    uuids = [uuid_of(await platform.read()) for _ in range(5)]

    ascending = await history(platform, sort="ASC", per_page="2", page="2")
    assert ascending.json["data"]["total_count"] == 5
    assert [i["cmd_uuid"] for i in ascending.json["data"]["items"]] == uuids[2:4]
    descending = await history(platform, per_page="2")
    assert [i["cmd_uuid"] for i in descending.json["data"]["items"]] == [uuids[4], uuids[3]]


async def test_history_window_excludes_other_times_and_devices(platform: Platform) -> None:
    await platform.read()
    await platform.read(read_query(imei="860000000000009"))
    assert (await history(platform, start=in_hours(1))).json["data"]["total_count"] == 0
    assert (await history(platform, end=query_time(time.time() - 30))).json["data"][
        "total_count"
    ] == 0
    assert (await history(platform)).json["data"]["total_count"] == 1


@pytest.mark.parametrize(
    ("params", "errno"),
    [
        ({"start": None}, 3),
        ({"start": "yesterday"}, 6),
        ({"page": "0"}, 6),
        ({"per_page": "101"}, 6),
        ({"sort": "desc"}, 6),
        ({"obj_id": "1"}, 6),
    ],
)
async def test_history_query_is_checked(
    platform: Platform, params: dict[str, str | None], errno: int
) -> None:
    query = {"imei": IMEI, "start": START, **params}
    pairs = [(k, v) for k, v in query.items() if v is not None]
    answer = await platform.call("GET", "/nbiot/offline/history", pairs)
    assert answer.errno == errno


async def test_detail_of_a_write_carries_its_body(platform: Platform) -> None:
    uuid = uuid_of(await platform.write(write_query(valid_time=in_hours(1))))
    data = (await detail(platform, uuid)).json["data"]
    assert data.keys() >= ITEM_KEYS | {"args", "content", "feedback_msg"}
    assert "cmd_result" not in data  # only once the device confirmed
    assert json.loads(data["content"]) == WRITE_BODY
    assert json.loads(data["args"]) == {"obj_id": 3311, "obj_inst_id": 0, "mode": 1}
    assert (data["cmd_uuid"], data["type"], data["feedback_msg"]) == (uuid, "WRITE", [])


async def test_detail_of_a_read_carries_its_ids(platform: Platform) -> None:
    uuid = uuid_of(await platform.read(read_query(obj_inst_id="2", res_id="5850")))
    data = (await detail(platform, uuid)).json["data"]
    assert json.loads(data["content"]) == {"obj_id": 3311, "obj_inst_id": 2, "res_id": 5850}
    assert data["type"] == "READ"


async def test_detail_needs_the_right_device(platform: Platform) -> None:
    uuid = uuid_of(await platform.read())
    assert (await detail(platform, uuid, imei="860000000000009")).errno == 8
    assert (await detail(platform, "2f1e0b7c-0000-4000-8000-000000000000")).errno == 8
    answer = await platform.call("GET", f"/nbiot/offline/history/{uuid}")
    assert answer.errno == 3


async def test_cancel_a_waiting_command(platform: Platform) -> None:
    """A waiting command becomes send_status 2; cancelling it again is errno 6."""
    uuid = uuid_of(await platform.write())
    answer = await cancel(platform, uuid)
    assert answer.json == {"errno": 0, "error": "succ"}
    assert (await detail(platform, uuid)).json["data"]["send_status"] == 2
    assert [c["send_status"] for c in await platform.commands()] == [2]

    again = await cancel(platform, uuid)
    assert (again.errno, again.error) == (
        6,
        "invalid parameter: command is not waiting (send_status 2)",
    )


async def test_cancel_all_of_a_device(platform: Platform) -> None:
    uuids = [uuid_of(await platform.read()) for _ in range(3)]
    await cancel(platform, uuids[0])
    answer = await platform.call("PUT", "/nbiot/offline/cancel/all", [("imei", IMEI)])
    assert answer.json["data"] == {"succ": uuids[1:], "failed": [], "total": 2}


class TestCancelOnlyBeforeValidTime:
    @pytest.fixture
    def config(self) -> SimulatorConfig:
        return SimulatorConfig(api_key=API_KEY, cancel_only_before_valid_time=True)

    async def test_cancel_refused_once_valid(self, platform: Platform) -> None:
        """With the knob on, a command valid since its creation cannot be cancelled."""
        now_valid = uuid_of(await platform.write())
        later = uuid_of(await platform.write(write_query(valid_time=in_hours(1))))
        assert (await cancel(platform, now_valid)).errno == 6
        assert (await cancel(platform, later)).errno == 0


async def test_eleventh_command_for_a_device_hits_the_cap(platform: Platform) -> None:
    """10 cached commands per device, reads and writes alike; the 11th is errno 5006."""
    for n in range(10):
        answer = await (platform.write() if n % 2 else platform.read())
        assert answer.errno == 0
    eleventh = await platform.write()
    assert (eleventh.errno, eleventh.error[:18]) == (5006, "system logic limit")
    assert len(await platform.commands()) == 10
    assert (await platform.write(write_query(imei="860000000000009"))).errno == 0


async def test_cancelling_frees_a_place_under_the_cap(platform: Platform) -> None:
    uuids: list[Any] = [uuid_of(await platform.read()) for _ in range(10)]
    assert (await platform.read()).errno == 5006
    await cancel(platform, uuids[0])
    assert (await platform.read()).errno == 0
