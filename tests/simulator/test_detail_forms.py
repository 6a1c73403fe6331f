"""The knobs that let tests meet a platform written differently: detail forms, the page's
quirks, and another application queuing commands on the same devices."""

from __future__ import annotations

import json

import pytest

from .wire import (
    IMEI,
    WRITE_BODY,
    Platform,
    execute_query,
    in_hours,
    read_query,
    uuid_of,
    write_query,
)

pytestmark = pytest.mark.anyio

EXECUTE_BODY = {"args": "reboot"}


async def queue_three(platform: Platform) -> tuple[str, str, str]:
    write = uuid_of(await platform.write())
    read = uuid_of(await platform.read(read_query(obj_inst_id="0", res_id="5850")))
    execute = uuid_of(await platform.execute(execute_query(), EXECUTE_BODY))
    return write, read, execute


async def details(platform: Platform, uuids: tuple[str, ...]) -> list[dict[str, object]]:
    found = []
    for uuid in uuids:
        answer = await platform.detail(uuid)
        assert answer.errno == 0
        found.append(answer.json["data"])
    return found


async def test_each_detail_form(platform: Platform) -> None:
    """text (default), data_text, object, pairs, unparseable: args and content as documented."""
    uuids = await queue_three(platform)
    write, read, execute = await details(platform, uuids)
    assert json.loads(str(write["content"])) == WRITE_BODY
    assert json.loads(str(read["content"])) == {"obj_id": 3311, "obj_inst_id": 0, "res_id": 5850}
    assert json.loads(str(write["args"])) == {"obj_id": 3311, "obj_inst_id": 0, "mode": 1}

    assert (await platform.set_config(detail_form="data_text"))[0] == 200
    write, read, execute = await details(platform, uuids)
    assert json.loads(str(write["content"])) == WRITE_BODY["data"]
    assert execute["content"] == "reboot"

    assert (await platform.set_config(detail_form="object"))[0] == 200
    write, read, execute = await details(platform, uuids)
    assert write["content"] == WRITE_BODY
    assert read["content"] == {"obj_id": "3311", "obj_inst_id": "0", "res_id": "5850"}
    assert execute["content"] == EXECUTE_BODY
    assert isinstance(write["args"], dict) and write["args"]["mode"] == "1"
    assert isinstance(read["args"], dict) and read["args"]["imei"] == IMEI

    assert (await platform.set_config(detail_form="pairs"))[0] == 200
    write, _, _ = await details(platform, uuids)
    assert write["content"] == {str(e["res_id"]): e["val"] for e in WRITE_BODY["data"]}

    assert (await platform.set_config(detail_form="unparseable"))[0] == 200
    for detail in await details(platform, uuids):
        for field in ("args", "content"):
            value = detail[field]
            if value is not None:
                with pytest.raises(ValueError):
                    json.loads(str(value))


async def test_the_pages_quirks_and_type_case(platform: Platform) -> None:
    uuid = uuid_of(await platform.write())
    assert (await platform.set_config(page_quirks=True, type_case="lower"))[0] == 200
    listed = await platform.call(
        "GET", "/nbiot/offline/history", [("imei", IMEI), ("start", in_hours(-1))]
    )
    page = listed.json["data"]
    assert page["total_count"] == "1"
    (item,) = page["items"]
    assert (item["cmd_uuid"], item["type"], item["remain"]) == (uuid + " ", "write", "3")
    assert (await platform.detail(uuid)).json["data"]["cmd_uuid"] == uuid + " "


async def test_another_application_queues_beside_each_request(platform: Platform) -> None:
    """With foreign_rate 1 each cached request is followed by a command of the same kind, other content."""
    assert (await platform.set_config(foreign_rate=1.0))[0] == 200
    await queue_three(platform)
    # A refused request (no expired_time) is not followed: its query is not valid.
    assert (await platform.write(write_query(expired_time=None))).errno != 0
    commands = await platform.commands()
    assert [(c["op"], c["foreign"]) for c in commands] == [
        ("write", False),
        ("write", True),
        ("read", False),
        ("read", True),
        ("execute", False),
        ("execute", True),
    ]
    write, other_write, _, other_read, execute, other_execute = commands
    assert other_write["body"]["data"][0]["res_id"] == write["body"]["data"][0]["res_id"]
    assert other_write["body"] != write["body"]
    assert other_read["query"]["res_id"] == "5851"
    assert other_execute["body"] != execute["body"]
    assert {c["imei"] for c in commands} == {IMEI}


@pytest.mark.parametrize(
    "change",
    [{"detail_form": "yaml"}, {"type_case": "title"}, {"page_quirks": "yes"}, {"foreign_rate": 2}],
)
async def test_bad_values_for_the_new_knobs_are_refused(
    platform: Platform, change: dict[str, object]
) -> None:
    status, _ = await platform.set_config(**change)
    assert status == 400
