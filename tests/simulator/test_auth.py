"""Token auth: a token signed per the contract's formula is accepted, any flaw refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote

import pytest

from dispatcher.simulator import SimulatorConfig

from .wire import API_KEY, Platform

pytestmark = pytest.mark.anyio

PRODUCT_ID = "382947"
ACCESS_KEY = base64.b64encode(b"sixteen byte key and then some").decode()


def token(
    *,
    method: str = "sha1",
    et: int | None = None,
    res: str = f"products/{PRODUCT_ID}",
    access_key: str = ACCESS_KEY,
    version: str = "2018-10-31",
    encode: bool = True,
) -> str:
    """The contract's authorization header value, computed here from its formula."""
    et = int(time.time()) + 3600 if et is None else et
    message = f"{et}\n{method}\n{res}\n{version}".encode()
    digest = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}[method]
    sign = base64.b64encode(hmac.new(base64.b64decode(access_key), message, digest).digest())
    values = {"version": version, "res": res, "et": str(et), "method": method}
    values["sign"] = sign.decode()
    enc = (lambda v: quote(v, safe="")) if encode else (lambda v: v)
    return "&".join(f"{k}={enc(v)}" for k, v in values.items())


@pytest.fixture
def config() -> SimulatorConfig:
    return SimulatorConfig(api_key=API_KEY, product_id=PRODUCT_ID, access_key=ACCESS_KEY)


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256"])
async def test_signed_token_is_accepted(platform: Platform, method: str) -> None:
    answer = await platform.read(headers={"authorization": token(method=method)})
    assert answer.errno == 0


async def test_api_key_still_works_beside_tokens(platform: Platform) -> None:
    assert (await platform.read(headers={"api-key": API_KEY})).errno == 0


OTHER_KEY = base64.b64encode(b"another key").decode()
REFUSED = [
    ("expired", token(et=int(time.time()) - 1), "token expired"),
    ("wrong key", token(access_key=OTHER_KEY), "signature does not match"),
    ("other product", token(res="products/1"), "not this product"),
    ("other version", token(version="2020-05-29"), "token version"),
    ("unknown method", token(method="sha1").replace("method=sha1", "method=sha512"), "method"),
    ("tampered et", token().replace("et=", "et=1"), "signature does not match"),
    ("not encoded", token(encode=False), "not URL-encoded"),
    ("field missing", token().split("&sign=")[0], "fields"),
    ("field repeated", token() + "&et=1", "fields"),
    ("garbage", "Bearer abc", "fields"),
]


@pytest.mark.parametrize(
    ("header", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_flawed_token_is_refused(platform: Platform, header: str, reason: str) -> None:
    """errno 1 auth failed with a reason, and nothing queued."""
    answer = await platform.read(headers={"authorization": header})
    assert answer.errno == 1
    assert answer.error.startswith("auth failed: ")
    assert reason in answer.error
    assert await platform.commands() == []


async def test_token_expiry_follows_the_platform_clock(platform: Platform) -> None:
    """et is compared with the simulator's clock, which a test may move."""
    await platform.set_config(now=7200.0)
    answer = await platform.read(headers={"authorization": token()})
    assert (answer.errno, answer.error) == (1, "auth failed: token expired")


async def test_no_credentials_is_api_key_required(platform: Platform) -> None:
    answer = await platform.read(headers={})
    assert (answer.errno, answer.error) == (2, "api-key required")
