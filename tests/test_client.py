"""The client: exact requests, outcome classes, aiohttp's hidden retry, authentication."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import aiohttp
import pytest

from dispatcher.config import HttpConfig, Secret
from dispatcher.onenet.auth import ApiKeyAuth, TokenAuth, sign_token
from dispatcher.onenet.client import OneNetClient, _classify
from dispatcher.onenet.errnos import classify_errno
from dispatcher.onenet.render import build_url
from dispatcher.outcome import Kind
from dispatcher.plan import Request
from dispatcher.simulator import SimulatorConfig, running_simulator
from dispatcher.timewindow import PLATFORM_TZ, Window

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)  # 10:00 in UTC+8
EXPIRES = datetime(2026, 11, 24, 10, 0, 0, tzinfo=PLATFORM_TZ)


def live() -> tuple[Window, datetime]:
    """A window still open by the simulator's clock, and now: for requests that must be queued."""
    now = datetime.now(UTC)
    return Window(None, now + timedelta(days=2)), now


IMEI = "865820031234565"


def write_request(tail: tuple[tuple[str, str], ...] = ()) -> Request:
    return Request(
        index=0,
        op="write",
        imei=IMEI,
        head=(("imei", IMEI), ("obj_id", "3300"), ("obj_inst_id", "0"), ("mode", "1")),
        tail=tail,
        body=b'{"data":[{"res_id":5700,"val":60}]}',
    )


def read_request() -> Request:
    return Request(0, "read", IMEI, (("imei", IMEI), ("obj_id", "3300")), (), None)


def test_write_url_with_window_starting_now() -> None:
    """A window starting now sends no valid_time; times are UTC+8 without a zone."""
    window = Window(valid=None, expired=EXPIRES)
    url = build_url(
        "http://api.example", "/nbiot/offline", write_request((("retry", "3"),)).query(window, NOW)
    )
    assert (
        "http://api.example/nbiot/offline?imei=865820031234565&obj_id=3300&obj_inst_id=0&mode=1"
        "&expired_time=2026-11-24T10:00:00&retry=3"
    ) == url


def test_future_valid_time_is_sent_in_utc8_whatever_the_zone() -> None:
    """A valid_time given in UTC is written as the same instant in UTC+8."""
    window = Window(valid=datetime(2026, 11, 22, 16, 30, tzinfo=UTC), expired=EXPIRES)
    pairs = read_request().query(window, NOW)
    assert [
        ("imei", IMEI),
        ("obj_id", "3300"),
        ("valid_time", "2026-11-23T00:30:00"),
        ("expired_time", "2026-11-24T10:00:00"),
    ] == pairs


def test_valid_time_already_passed_is_left_out() -> None:
    """A resumed run whose valid_time has passed omits it (the platform refuses a past one)."""
    window = Window(valid=NOW - timedelta(minutes=1), expired=EXPIRES)
    assert "valid_time" not in dict(read_request().query(window, NOW))


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b'{"errno":0,"error":"succ","data":{"uuid":"u-1"}}', Kind.OK),
        (200, b'{"errno":6,"error":"invalid parameter"}', Kind.FAILED),
        (200, b'{"errno":15,"error":"api freq out of limit"}', Kind.RETRY),
        (200, b'{"errno":7,"error":"service internal error"}', Kind.RETRY),
        (200, b"<html>proxy</html>", Kind.IN_DOUBT),
        (200, b'{"errno":0,"error":"succ","data":{}}', Kind.IN_DOUBT),
        (200, None, Kind.IN_DOUBT),
        (503, b"", Kind.RETRY),
        (429, b"", Kind.RETRY),
        (500, b"", Kind.IN_DOUBT),
        (502, b"", Kind.IN_DOUBT),
        (404, b"", Kind.FAILED),
        (500, b'{"errno":6,"error":"invalid parameter"}', Kind.FAILED),
        # the newer console's envelope
        (200, b'{"code":0,"msg":"succ","data":{"uuid":"u-1"},"request_id":"r"}', Kind.OK),
        (200, b'{"code":0,"msg":"succ","data":{},"request_id":"r"}', Kind.IN_DOUBT),
        (200, b'{"code":10001,"msg":"something new","request_id":"r"}', Kind.FAILED),
        (200, b'{"code":7,"msg":"service internal error"}', Kind.RETRY),
        (403, b'{"code":"10403","msg":"not a number"}', Kind.FAILED),
        (200, b'{"code":true,"msg":"a bool is no code"}', Kind.IN_DOUBT),
        (200, b'{"errno":0,"code":5,"data":{"uuid":"u-1"}}', Kind.OK),  # errno wins
    ],
)
def test_answers_are_classified(status: int, body: bytes | None, kind: Kind) -> None:
    """Each kind of answer lands in its outcome class."""
    assert kind == _classify(status, body, None, None).kind


@pytest.mark.parametrize(
    ("errno", "text", "kind"),
    [
        (1, "auth failed", Kind.FAILED),
        (1, "internal server error", Kind.RETRY),
        (5106, "UNSUCESS: TIME_OUT", Kind.RETRY),
        (5106, "UNSUCESS: NOT_FOUND", Kind.FAILED),
        (5006, "system logic limit", Kind.FAILED),
        (5117, "rpc error", Kind.RETRY),
        (424242, "something new", Kind.FAILED),
    ],
)
def test_errnos_are_classified_by_number_and_text(errno: int, text: str, kind: Kind) -> None:
    """The errno table, with errno 1 and 5106 decided by their text."""
    assert kind == classify_errno(errno, text, 200).kind


@pytest.mark.parametrize(
    "body",
    [
        # an errno in more digits than Python turns into an int (ValueError, not a number)
        b'{"errno":"' + b"9" * 5000 + b'","error":"x"}',
        b'{"code":"' + b"9" * 5000 + b'"}',
        # nested deeper than the JSON reader recurses (RecursionError), in 64 KiB
        b'{"errno":0,"data":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"errno":0,"data":"' + b"[" * 5000 + b"]" * 5000 + b'"}',
    ],
)
def test_an_unreadable_answer_is_in_doubt_never_a_crash(body: bytes) -> None:
    """An answer the reader cannot take apart is an answer we cannot read, not a traceback."""
    assert _classify(200, body, None, None).kind is Kind.IN_DOUBT


def test_a_code_failure_keeps_its_text_and_request_id() -> None:
    outcome = _classify(200, b'{"code":10001,"msg":"no such user","request_id":"ab12"}', None, None)
    assert (outcome.errno, outcome.error) == (10001, "no such user (request_id ab12)")
    assert not outcome.auth_refused


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'{"errno":1,"error":"auth failed: token expired"}', True),
        (b'{"errno":2,"error":"api-key required"}', True),
        (b'{"code":1,"msg":"auth failed","request_id":"r"}', True),
        (b'{"errno":1,"error":"internal server error"}', False),
        (b'{"errno":8,"error":"not found"}', False),
    ],
)
def test_auth_refusals_are_told_apart(body: bytes, refused: bool) -> None:
    """A refusal of our credentials is flagged (the engine stops the run on it)."""
    assert refused == _classify(200, body, None, None).auth_refused


def test_user_token_signature_is_pinned() -> None:
    """The newer console's user token: the same formula over userid/<id> and 2022-05-01."""
    key = "KuF3NT/jUBJ62LNBB/A8XZA9CqS3Cu79B/ABmfA1UCw="
    token = sign_token("", key, 1537255523, "sha1", res="userid/12345", version="2022-05-01")
    message = b"1537255523\nsha1\nuserid/12345\n2022-05-01"
    sign = base64.b64encode(hmac.new(base64.b64decode(key), message, hashlib.sha1).digest())
    assert token == (
        "version=2022-05-01&res=userid%2F12345&et=1537255523&method=sha1&sign="
        + quote(sign.decode(), safe="")
    )


def test_token_signature_is_pinned() -> None:
    """A known input gives a known token (guards the signing formula)."""
    token = sign_token("123456", "KuF3NT/jUBJ62LNBB/A8XZA9CqS3Cu79B/ABmfA1UCw=", 1537255523, "sha1")
    assert (
        "version=2018-10-31&res=products%2F123456&et=1537255523&method=sha1&sign=Gi%2BjDjMnD9bsDbc%2F0uzvM0jcQlI%3D"
    ) == token


def test_token_is_renewed_before_it_expires() -> None:
    """The token is reused while fresh and re-signed when a fifth of its life is left."""
    now = [1_000_000.0]
    auth = TokenAuth("1", Secret("a2V5"), lifetime=1000, now=lambda: now[0])
    first = auth.headers()["authorization"]
    now[0] += 700
    assert first == auth.headers()["authorization"]
    now[0] += 150
    assert first != auth.headers()["authorization"]


async def test_simulator_accepts_our_token() -> None:
    """A write signed with a token is queued by the simulator (its own verification)."""
    key = "KuF3NT/jUBJ62LNBB/A8XZA9CqS3Cu79B/ABmfA1UCw="
    config = SimulatorConfig(api_key="unused", product_id="123456", access_key=key)
    async with running_simulator(config) as sim:
        auth = TokenAuth("123456", Secret(key), method="sha256")
        async with OneNetClient(sim.base_url, auth, HttpConfig(), concurrency=2) as client:
            outcome = await client.send(write_request(), *live())
        assert (Kind.OK, 1) == (outcome.kind, len(sim.commands))


async def test_aiohttp_alone_would_send_a_dropped_read_twice() -> None:
    """The trap is real: plain aiohttp resends a GET whose connection dropped (why the guard exists)."""
    async with running_simulator(SimulatorConfig(api_key="k", drop_after_queue_rate=1.0)) as sim:
        url = build_url(sim.base_url, "/nbiot/offline", read_request().query(*live()))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await session.get(url, headers={"api-key": "k"})
        assert 2 == len(sim.commands)


async def test_our_client_sends_a_dropped_read_once() -> None:
    """Through our client the same read arrives once and is in doubt."""
    async with running_simulator(SimulatorConfig(api_key="k", drop_after_queue_rate=1.0)) as sim:
        async with OneNetClient(
            sim.base_url, ApiKeyAuth(Secret("k")), HttpConfig(), concurrency=2
        ) as client:
            outcome = await client.send(read_request(), *live())
        assert (Kind.IN_DOUBT, 1) == (outcome.kind, len(sim.commands))


def _open_sockets() -> int:
    """Sockets this process holds open (Linux: its fd table)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets in /proc")
async def test_the_guard_leaves_no_connection_open_when_aiohttp_would_resend_on_a_pooled_one() -> (
    None
):
    """The resend aiohttp attempts takes a second pooled connection: the guard refuses it
    before a byte is written, the read is in doubt, and that connection is closed with the
    session, not left open with nobody holding it (the garbage collector's 'unclosed
    transport', whichever test it happens in)."""
    config = SimulatorConfig(api_key="k")
    async with running_simulator(config) as sim:
        before = _open_sockets()
        async with OneNetClient(
            sim.base_url, ApiKeyAuth(Secret("k")), HttpConfig(), concurrency=2
        ) as client:
            # two writes at once: two connections, both back in the pool afterwards
            writes = await asyncio.gather(
                *(client.send(write_request(), *live()) for _ in range(2))
            )
            assert [Kind.OK, Kind.OK] == [w.kind for w in writes]
            assert before + 4 == _open_sockets()  # two connections, both ends in this process
            config.drop_after_queue_rate = 1.0
            outcome = await client.send(read_request(), *live())
        assert (Kind.IN_DOUBT, 3) == (outcome.kind, len(sim.commands))
        # the server closes its ends once it reads the client's; give it a moment to
        for _ in range(1000):  # up to 10 s
            if _open_sockets() <= before:
                break
            await asyncio.sleep(0.01)
        assert before == _open_sockets()


async def test_without_the_guard_our_client_would_send_a_dropped_read_twice() -> None:
    """The benchmarks' trace ablation (a constructor argument) really removes the guard."""
    async with running_simulator(SimulatorConfig(api_key="k", drop_after_queue_rate=1.0)) as sim:
        async with OneNetClient(
            sim.base_url,
            ApiKeyAuth(Secret("k")),
            HttpConfig(),
            concurrency=2,
            guard_second_send=False,
        ) as client:
            await client.send(read_request(), *live())
        assert 2 == len(sim.commands)


async def test_refused_connection_is_retry_and_names_no_key() -> None:
    """Nothing listening: a retry outcome whose text does not carry the key."""
    secret = "canary-key-93b1"
    async with OneNetClient(
        "http://127.0.0.1:9",
        ApiKeyAuth(Secret(secret)),
        HttpConfig(connect_timeout=2),
        concurrency=1,
        secrets=(secret,),
    ) as client:
        outcome = await client.send(write_request(), *live())
    assert Kind.RETRY == outcome.kind
    assert secret not in repr(outcome)


async def test_read_timeout_is_in_doubt() -> None:
    """A command queued but answered after the read timeout ends in doubt."""
    config = SimulatorConfig(api_key="k", stall_after_queue_rate=1.0, stall_seconds=2.0)
    async with running_simulator(config) as sim:
        http = HttpConfig(read_timeout=0.3)
        async with OneNetClient(
            sim.base_url, ApiKeyAuth(Secret("k")), http, concurrency=1
        ) as client:
            outcome = await client.send(write_request(), *live())
        assert (Kind.IN_DOUBT, 1) == (outcome.kind, len(sim.commands))


async def test_every_renewed_token_is_blanked_from_error_text() -> None:
    """Not only the first token: one signed after a renewal is as secret in an error's text."""
    now = [1_000_000.0]
    auth = TokenAuth("1", Secret("a2V5"), lifetime=1000, now=lambda: now[0])
    first = auth.headers()["authorization"]
    async with OneNetClient(
        "http://127.0.0.1:9",
        auth,
        HttpConfig(connect_timeout=2),
        concurrency=1,
        secrets=(first,),
    ) as client:
        now[0] += 900  # the next request renews the token
        outcome = await client.send(write_request(), *live())
        second = auth.headers()["authorization"]
        assert first != second and Kind.RETRY == outcome.kind
        # what aiohttp's reprs may carry: the request's headers, both tokens in one text
        text = client._text(RuntimeError(f"headers {{'authorization': '{second}'}} then {first}"))
    assert first not in text and second not in text
    assert "***" in text
