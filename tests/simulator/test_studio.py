"""The newer console ("studio"): /nb-iot paths, tokens only, user and product resources."""

from __future__ import annotations

import time

import pytest

from dispatcher.simulator import SimulatorConfig

from .test_auth import ACCESS_KEY, OTHER_KEY, PRODUCT_ID, token
from .wire import API_KEY, Platform, read_query, uuid_of

pytestmark = pytest.mark.anyio

USER_ID = "u-520114"
STUDIO = "2022-05-01"


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(
        api_key=API_KEY,
        platform="studio",
        user_id=USER_ID,
        product_id=PRODUCT_ID,
        access_key=ACCESS_KEY,
    )


def user_token(**changes: object) -> str:
    fields: dict[str, object] = {"res": f"userid/{USER_ID}", "version": STUDIO, **changes}
    return token(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "header",
    [
        user_token(),
        user_token(method="sha256"),
        token(version=STUDIO),  # a product token, at the newer version
        token(),  # a product token as a legacy config signs it
    ],
    ids=["user", "user-sha256", "product-2022", "product-2018"],
)
async def test_a_token_is_accepted_under_nb_iot(platform: Platform, header: str) -> None:
    answer = await platform.call(
        "GET", "/nb-iot/offline", read_query(), headers={"authorization": header}
    )
    assert answer.errno == 0
    assert [uuid_of(answer)] == [c["uuid"] for c in await platform.commands()]


REFUSED = [
    ("api-key only", {"api-key": API_KEY}, "not api-key"),
    ("nothing", {}, "token required"),
    ("wrong key", {"authorization": user_token(access_key=OTHER_KEY)}, "signature does not match"),
    ("other user", {"authorization": user_token(res="userid/u-1")}, "not this user"),
    ("user at 2018", {"authorization": user_token(version="2018-10-31")}, STUDIO),
    ("expired", {"authorization": user_token(et=int(time.time()) - 1)}, "token expired"),
    ("unknown res", {"authorization": user_token(res="devices/1")}, "userid/<id>"),
]


@pytest.mark.parametrize(
    ("headers", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_studio_refuses_what_it_cannot_trust(
    platform: Platform, headers: dict[str, str], reason: str
) -> None:
    """errno 1 auth failed with a reason; nothing queued."""
    answer = await platform.call("GET", "/nb-iot/offline", read_query(), headers=headers)
    assert answer.errno == 1
    assert answer.error.startswith("auth failed: ")
    assert reason in answer.error
    assert await platform.commands() == []


async def test_each_console_serves_only_its_own_prefix(platform: Platform) -> None:
    """Studio: /nbiot is another host's path (404); switched to legacy, the reverse."""
    header = {"authorization": user_token()}
    assert (
        await platform.call("GET", "/nbiot/offline", read_query(), headers=header)
    ).status == 404
    assert (await platform.set_config(platform="legacy"))[0] == 200
    legacy = await platform.call(
        "GET", "/nbiot/offline", read_query(), headers={"api-key": API_KEY}
    )
    assert legacy.errno == 0
    assert (await platform.call("GET", "/nb-iot/offline", read_query())).status == 404
    # a user token is a studio resource: legacy refuses it
    refused = await platform.call("GET", "/nbiot/offline", read_query(), headers=header)
    assert refused.errno == 1


async def test_the_code_envelope(platform: Platform) -> None:
    """envelope "code": {"code", "msg", "request_id", "data"} instead of errno/error."""
    await platform.set_config(envelope="code")
    ok = await platform.call(
        "GET", "/nb-iot/offline", read_query(), headers={"authorization": user_token()}
    )
    assert isinstance(ok.json, dict)
    assert (ok.json["code"], ok.json["msg"]) == (0, "succ")
    assert ok.json["data"]["uuid"]
    assert ok.json["request_id"]
    assert "errno" not in ok.json
    refused = await platform.call("GET", "/nb-iot/offline", read_query(), headers={})
    assert isinstance(refused.json, dict)
    assert refused.json["code"] == 1
