"""Devices wake, take their waiting commands in order and answer; the clock is advanced.

Every test here pins the platform's clock (`now`) and moves it with POST /_sim/advance,
so nothing waits on real time.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from yarl import URL

from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator

from .wire import (
    API_KEY,
    IMEI,
    Platform,
    answer_time,
    execute_query,
    query_time,
    read_query,
    uuid_of,
    write_query,
)

pytestmark = pytest.mark.anyio

NOW = 1_900_000_000.0
DAY = 86_400.0
OTHER = "860000000000009"
DEVICE_FAILURES = {"METHOD_NOT_ALLOWED", "NOT_FOUND", "INTERNAL_SERVER_ERROR", "BAD_REQUEST"}
ANSWER_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def at(seconds: float) -> str:
    """A query time `seconds` after the pinned now."""
    return query_time(NOW + seconds)


def write_q(**changes: str | None) -> list[tuple[str, str]]:
    return write_query(**{"expired_time": at(DAY), **changes})


def read_q(**changes: str | None) -> list[tuple[str, str]]:
    return read_query(**{"expired_time": at(DAY), **changes})


def execute_q(**changes: str | None) -> list[tuple[str, str]]:
    return execute_query(**{"expired_time": at(DAY), **changes})


def body(*elements: tuple[int, Any]) -> dict[str, Any]:
    return {"data": [{"res_id": res_id, "val": val} for res_id, val in elements]}


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(api_key=API_KEY, now=lambda: NOW, delivery=True, seed=7)


async def state(platform: Platform, uuid: str, imei: str = IMEI) -> dict[str, Any]:
    answer = await platform.detail(uuid, imei)
    assert answer.errno == 0, answer.json
    data: dict[str, Any] = answer.json["data"]
    return data


async def statuses(platform: Platform, *uuids: str, imei: str = IMEI) -> list[int]:
    return [(await state(platform, u, imei))["send_status"] for u in uuids]


async def next_wake(platform: Platform, imei: str = IMEI) -> float:
    wake = (await platform.devices())[imei]["next_wake"]
    assert isinstance(wake, float)
    return wake


# -- waiting, sent, confirmed ------------------------------------------------------------


async def test_commands_wait_until_the_device_wakes_then_succeed(platform: Platform) -> None:
    """At the wake: sent in creation order, one confirm_delay apart, each answered SUCCESS."""
    uuids = [
        uuid_of(await platform.write(write_q())),
        uuid_of(await platform.read(read_q())),
        uuid_of(await platform.execute(execute_q(), body={"args": "go"})),
    ]
    waiting = await state(platform, uuids[0])
    assert (waiting["send_status"], waiting["send_time"], waiting["confirm_time"]) == (
        1,
        None,
        None,
    )
    wake = await next_wake(platform)
    assert NOW < wake <= NOW + 600

    await platform.advance(600)

    for n, uuid in enumerate(uuids):
        data = await state(platform, uuid)
        assert (data["send_status"], data["confirm_status"]) == (5, "SUCCESS")
        assert data["send_time"] == answer_time(wake + 2 * n)
        assert data["confirm_time"] == answer_time(wake + 2 * n + 2)
        assert ANSWER_TIME.fullmatch(data["confirm_time"])
    listed = [c["send_status"] for c in await platform.commands()]
    assert listed == [5, 5, 5]


async def test_history_list_shows_delivery(platform: Platform) -> None:
    uuid = uuid_of(await platform.write(write_q()))
    await platform.advance(600)
    query = [("imei", IMEI), ("start", at(-60))]
    [item] = (await platform.call("GET", "/nbiot/offline/history", query)).json["data"]["items"]
    assert (item["cmd_uuid"], item["send_status"], item["confirm_status"]) == (uuid, 5, "SUCCESS")
    assert ANSWER_TIME.fullmatch(item["send_time"]) and ANSWER_TIME.fullmatch(item["confirm_time"])
    assert item["feedback_time"] is None


async def test_sent_until_the_device_answers(platform: Platform) -> None:
    """Between send and confirm: send_status 3, a send_time, no confirmation yet."""
    uuid = uuid_of(await platform.write(write_q()))
    wake = await next_wake(platform)
    await platform.advance(wake - NOW)

    data = await state(platform, uuid)
    assert (data["send_status"], data["send_time"]) == (3, answer_time(wake))
    assert (data["confirm_time"], data["confirm_status"]) == (None, None)
    [command] = await platform.commands()
    assert (command["sent_at"], command["confirmed_at"]) == (wake, None)

    await platform.advance(2)
    assert await statuses(platform, uuid) == [5]


async def test_a_sent_command_is_answered_even_past_its_expiry(platform: Platform) -> None:
    """Expiry applies to waiting commands: once sent, the device's answer counts."""
    first = uuid_of(await platform.write(write_q()))
    wake = await next_wake(platform)
    # Sent at wake + 2 (after `first`), answered at wake + 4, expired from wake + 3.
    late = uuid_of(await platform.write(write_q(expired_time=at(wake - NOW + 3))))
    await platform.advance(wake - NOW + 4)
    assert await statuses(platform, first, late) == [5, 5]


async def test_escaped_query_names_and_values_are_read_right(platform: Platform) -> None:
    """The window and trigger are read from the raw query, escapes included."""
    expired = at(3600).replace(":", "%3A")
    raw = (
        f"imei={IMEI}&obj%5Fid=3311&obj_inst_id=0&mode=1"
        f"&expired%5Ftime={expired}&trigger%5Fmsg=%34"  # 4: NOTIFY only
    )
    url = URL(f"{platform.base_url}/nbiot/offline?{raw}", encoded=True)
    headers = {"api-key": API_KEY, "Content-Type": "application/json"}
    async with platform.session.post(
        url, data=b'{"data":[{"res_id":1,"val":1}]}', headers=headers
    ) as r:
        uuid = str((await r.json())["data"]["uuid"])
    await platform.advance(1800)
    assert await statuses(platform, uuid) == [1]  # devices send UPDATE, not NOTIFY
    await platform.advance(1800)
    data = await state(platform, uuid)
    assert (data["send_status"], data["expired_time"], data["trigger_msg"]) == (
        4,
        answer_time(NOW + 3600),
        4,
    )


async def test_a_new_wake_interval_reschedules_the_devices(platform: Platform) -> None:
    uuid = uuid_of(await platform.write(write_q()))
    await platform.set_config(wake_interval=60)
    assert NOW < await next_wake(platform) <= NOW + 60
    await platform.advance(62)
    assert await statuses(platform, uuid) == [5]


async def test_valid_time_holds_a_command_back(platform: Platform) -> None:
    """Delivered at the first wake at or after its valid_time, not before."""
    uuid = uuid_of(await platform.write(write_q(valid_time=at(1800))))
    await platform.advance(1799)
    assert await statuses(platform, uuid) == [1]
    await platform.advance(601)
    data = await state(platform, uuid)
    assert data["send_status"] == 5
    assert answer_time(NOW + 1800) <= data["send_time"] < answer_time(NOW + 2400)


async def test_confirm_fail_rate_one_fails_every_command(
    platform: Platform, sim: Simulator
) -> None:
    """send_status 6, a device failure as confirm_status; nothing written, nothing read."""
    sim.config.confirm_fail_rate = 1.0
    write = uuid_of(await platform.write(write_q(), body((5850, True))))
    read = uuid_of(await platform.read(read_q()))
    await platform.advance(600)

    for uuid in (write, read):
        data = await state(platform, uuid)
        assert data["send_status"] == 6
        assert data["confirm_status"] in DEVICE_FAILURES
        assert ANSWER_TIME.fullmatch(data["confirm_time"])
        assert "cmd_result" not in data
    assert (await platform.devices())[IMEI]["resources"] == []


async def test_failure_statuses_are_a_knob(platform: Platform) -> None:
    await platform.set_config(confirm_fail_rate=1.0, confirm_fail_statuses=["TIME_OUT"])
    uuid = uuid_of(await platform.execute(execute_q()))
    await platform.advance(600)
    data = await state(platform, uuid)
    assert (data["send_status"], data["confirm_status"]) == (6, "TIME_OUT")


# -- never delivered -----------------------------------------------------------------------


async def test_expired_when_looked_at(platform: Platform, sim: Simulator) -> None:
    """A command nobody delivered before its expired_time is send_status 4, never sent."""
    sim.config.offline_imeis = {IMEI}
    uuid = uuid_of(await platform.write(write_q(expired_time=at(300))))
    await platform.advance(299)
    assert await statuses(platform, uuid) == [1]
    await platform.advance(1)
    data = await state(platform, uuid)
    assert (data["send_status"], data["send_time"], data["confirm_status"]) == (4, None, None)


async def test_a_window_between_two_wakes_expires(platform: Platform) -> None:
    """Valid after one wake and expired before the next: the device never sees it."""
    first = uuid_of(await platform.write(write_q()))
    wake = await next_wake(platform)
    missed = uuid_of(
        await platform.write(
            write_q(valid_time=at(wake - NOW + 1), expired_time=at(wake - NOW + 60))
        )
    )
    await platform.advance(3600)
    assert await statuses(platform, first, missed) == [5, 4]
    assert (await state(platform, missed))["send_time"] is None


async def test_trigger_mask_must_include_the_uplink(platform: Platform) -> None:
    """Devices send UPDATE (2) by default: masks without bit 2 wait; another uplink serves them."""
    masks = ["1", "4", "5", "2", "3", "6", "7"]
    uuids = [uuid_of(await platform.read(read_q(trigger_msg=m))) for m in masks]
    await platform.advance(DAY / 2)
    assert await statuses(platform, *uuids) == [1, 1, 1, 5, 5, 5, 5]

    status, _ = await platform.set_config(wake_uplink=1)  # REGISTER from now on
    assert status == 200
    await platform.advance(600)
    assert await statuses(platform, *uuids) == [5, 1, 5, 5, 5, 5, 5]


async def test_offline_devices_never_wake(platform: Platform, sim: Simulator) -> None:
    sim.config.offline_imeis = {OTHER}
    online = uuid_of(await platform.write(write_q()))
    offline = uuid_of(await platform.write(write_q(imei=OTHER)))
    await platform.advance(DAY / 2)
    assert await statuses(platform, online) == [5]
    assert await statuses(platform, offline, imei=OTHER) == [1]
    devices = await platform.devices()
    assert (devices[OTHER]["online"], devices[OTHER]["next_wake"]) == (False, None)
    assert devices[IMEI]["online"] is True

    await platform.set_config(offline_imeis=[])
    await platform.advance(600)
    assert await statuses(platform, offline, imei=OTHER) == [5]


async def test_offline_rate_one_keeps_every_device_offline(platform: Platform) -> None:
    await platform.set_config(offline_rate=1.0)
    uuid = uuid_of(await platform.read(read_q()))
    await platform.advance(DAY / 2)
    assert await statuses(platform, uuid) == [1]


async def test_delivery_off_freezes_everything(platform: Platform, sim: Simulator) -> None:
    """Off: commands only wait; on again, delivery resumes from then."""
    sim.config.delivery = False
    uuid = uuid_of(await platform.write(write_q(expired_time=at(3600))))
    await platform.advance(DAY)  # past its expiry, but nothing moves with delivery off
    assert await statuses(platform, uuid) == [1]
    sim.config.delivery = True
    assert await statuses(platform, uuid) == [4]


# -- cancel -----------------------------------------------------------------------------


async def test_cancel_before_delivery_keeps_it_from_the_device(platform: Platform) -> None:
    uuid = uuid_of(await platform.write(write_q(), body((5850, 1))))
    assert (await platform.cancel(uuid)).json == {"errno": 0, "error": "succ"}
    await platform.advance(DAY / 2)
    data = await state(platform, uuid)
    assert (data["send_status"], data["send_time"]) == (2, None)
    assert (await platform.devices())[IMEI]["resources"] == []


@pytest.mark.parametrize(("fail_rate", "final"), [(0.0, 5), (1.0, 6)])
async def test_cancel_after_delivery_is_refused(
    platform: Platform, sim: Simulator, fail_rate: float, final: int
) -> None:
    """errno 6 naming the send_status; the command is left as it was."""
    sim.config.confirm_fail_rate = fail_rate
    uuid = uuid_of(await platform.write(write_q()))
    await platform.advance(600)
    answer = await platform.cancel(uuid)
    assert (answer.errno, answer.error) == (
        6,
        f"invalid parameter: command is not waiting (send_status {final})",
    )
    assert await statuses(platform, uuid) == [final]


async def test_cancel_of_a_sent_or_expired_command_is_refused(
    platform: Platform, sim: Simulator
) -> None:
    sent = uuid_of(await platform.write(write_q()))
    await platform.advance(await next_wake(platform) - NOW)
    assert (await platform.cancel(sent)).error.endswith("(send_status 3)")

    sim.config.offline_imeis = {OTHER}
    expired = uuid_of(await platform.write(write_q(imei=OTHER, expired_time=at(3600))))
    await platform.advance(3600)
    assert (await platform.cancel(expired, imei=OTHER)).error.endswith("(send_status 4)")


async def test_cancel_all_takes_only_waiting_commands(platform: Platform) -> None:
    delivered = [uuid_of(await platform.read(read_q())) for _ in range(2)]
    await platform.advance(600)
    waiting = [uuid_of(await platform.read(read_q())) for _ in range(2)]
    answer = await platform.cancel_all()
    assert answer.json["data"] == {"succ": waiting, "failed": [], "total": 2}
    assert await statuses(platform, *delivered, *waiting) == [5, 5, 2, 2]


# -- the 10-command cap ---------------------------------------------------------------------


async def test_cap_counts_waiting_and_sent_commands(platform: Platform) -> None:
    """Confirmed commands leave the cache; a sent, unanswered one still counts."""
    for _ in range(10):
        uuid_of(await platform.write(write_q()))
    assert (await platform.write(write_q())).errno == 5006
    wake = await next_wake(platform)
    await platform.advance(wake - NOW + 2 * 9)  # nine answered, the tenth just sent
    assert [c["send_status"] for c in await platform.commands()] == [5] * 9 + [3]
    assert (await platform.devices())[IMEI]["live"] == 1

    for _ in range(9):
        uuid_of(await platform.write(write_q()))
    eleventh = await platform.write(write_q())
    assert (eleventh.errno, eleventh.error) == (
        5006,
        "system logic limit: device has 10 cached commands already",
    )


async def test_cap_frees_places_of_expired_and_cancelled_commands(
    platform: Platform, sim: Simulator
) -> None:
    sim.config.offline_imeis = {IMEI}
    uuids = [uuid_of(await platform.read(read_q(expired_time=at(3600)))) for _ in range(10)]
    assert (await platform.read(read_q())).errno == 5006
    assert (await platform.cancel(uuids[0])).errno == 0
    assert (await platform.read(read_q())).errno == 0  # the cancelled one's place
    await platform.advance(3600)
    for _ in range(9):  # the nine expired ones' places
        uuid_of(await platform.read(read_q()))
    assert (await platform.read(read_q())).errno == 5006


# -- what the device holds -------------------------------------------------------------------


async def test_a_read_reports_what_confirmed_writes_set(platform: Platform) -> None:
    """cmd_result lists the values under the read's path; a write in the same wake is seen."""
    await platform.write(write_q(mode="2"), body((5850, True), (5851, "on")))
    await platform.write(write_q(obj_inst_id="1", mode="2"), body((5850, 1.5)))
    one = uuid_of(await platform.read(read_q(obj_inst_id="0", res_id="5850")))
    instance = uuid_of(await platform.read(read_q(obj_inst_id="0")))
    everything = uuid_of(await platform.read(read_q()))
    nothing = uuid_of(await platform.read(read_q(obj_id="3303")))
    await platform.advance(600)

    def entry(inst: int, res: int, val: Any) -> dict[str, Any]:
        return {"obj_id": 3311, "obj_inst_id": inst, "res_id": res, "val": val}

    assert (await state(platform, one))["cmd_result"] == [entry(0, 5850, True)]
    assert (await state(platform, instance))["cmd_result"] == [
        entry(0, 5850, True),
        entry(0, 5851, "on"),
    ]
    assert (await state(platform, everything))["cmd_result"] == [
        entry(0, 5850, True),
        entry(0, 5851, "on"),
        entry(1, 5850, 1.5),
    ]
    assert (await state(platform, nothing))["cmd_result"] == []


async def test_write_mode_1_replaces_the_instance(platform: Platform) -> None:
    await platform.write(write_q(mode="2"), body((5850, True), (5851, "on")))
    await platform.write(write_q(mode="1"), body((5851, "off")))
    read = uuid_of(await platform.read(read_q(obj_inst_id="0")))
    await platform.advance(600)
    [only] = (await state(platform, read))["cmd_result"]
    assert (only["res_id"], only["val"]) == (5851, "off")


async def test_writes_and_executes_have_no_cmd_result(platform: Platform) -> None:
    uuids = [
        uuid_of(await platform.write(write_q())),
        uuid_of(await platform.execute(execute_q(), body={"args": "x"})),
    ]
    await platform.advance(600)
    for uuid in uuids:
        data = await state(platform, uuid)
        assert data["send_status"] == 5
        assert "cmd_result" not in data


# -- determinism -----------------------------------------------------------------------------


async def fates(seed: int, imeis: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Per device, each command's (send_status, confirm_status, send_time, confirm_time)."""
    config = SimulatorConfig(
        api_key=API_KEY, now=lambda: NOW, delivery=True, seed=seed, confirm_fail_rate=0.5
    )
    async with running_simulator(config) as sim, aiohttp.ClientSession() as session:
        platform = Platform(session, sim.base_url)
        for imei in imeis:
            for _ in range(3):
                uuid_of(await platform.write(write_q(imei=imei)))
        await platform.advance(600)
        seen: dict[str, list[tuple[Any, ...]]] = {}
        for c in await platform.commands():
            seen.setdefault(c["imei"], []).append(
                (c["send_status"], c["confirm_status"], c["sent_at"], c["confirmed_at"])
            )
        return seen


async def test_a_seed_fixes_every_fate() -> None:
    """Same seed: same wakes, failures and confirm statuses, in whatever order devices came."""
    imeis = [f"8600000000{n:05d}" for n in range(20)]
    first = await fates(11, imeis)
    assert await fates(11, imeis[::-1]) == first
    assert {s for fate in first.values() for s, *_ in fate} == {5, 6}
    assert await fates(12, imeis) != first
