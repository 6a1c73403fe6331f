"""Garbled answers: in doubt when the command may have been queued, failed when the answer says
it was not, and a huge answer read only up to the client's cap."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from dispatcher.cli import main
from dispatcher.config import HttpConfig, Secret
from dispatcher.onenet.auth import ApiKeyAuth
from dispatcher.onenet.client import MAX_ANSWER_BYTES, OneNetClient
from dispatcher.outcome import Kind, Outcome
from dispatcher.plan import Request
from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator
from dispatcher.simulator.config import Garble
from dispatcher.timewindow import PLATFORM_TZ, Window
from tests.helpers import API_KEY, imei, simulator, write_job

IMEI = imei(1)
HUGE = 20 * 1024 * 1024

UNREADABLE: list[Garble] = ["not_json", "no_uuid", "huge"]


def write_request() -> Request:
    return Request(
        index=0,
        op="write",
        imei=IMEI,
        head=(("imei", IMEI), ("obj_id", "3300"), ("obj_inst_id", "0"), ("mode", "1")),
        tail=(),
        body=b'{"data":[{"res_id":5700,"val":60}]}',
    )


def read_request() -> Request:
    head = (("imei", IMEI), ("obj_id", "3300"), ("obj_inst_id", "0"), ("res_id", "5700"))
    return Request(0, "read", IMEI, head, (), None)


def window() -> Window:
    return Window(valid=None, expired=datetime.now(PLATFORM_TZ) + timedelta(days=2))


def garbling(garble: Garble, **knobs: object) -> SimulatorConfig:
    return SimulatorConfig(api_key=API_KEY, garble_rate=1.0, garble=garble, **knobs)  # type: ignore[arg-type]


async def send(sim: Simulator, request: Request) -> Outcome:
    async with OneNetClient(
        sim.base_url, ApiKeyAuth(Secret(API_KEY)), HttpConfig(), concurrency=1
    ) as client:
        return await client.send(request, window(), datetime.now(PLATFORM_TZ))


# -- the simulator's knobs answer as documented --------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("garble", "queued", "content_type"),
    [
        ("not_json", 1, "application/json"),
        ("no_uuid", 1, "application/json"),
        ("wrong_content_type", 1, "text/html"),
        ("html_error", 0, "text/html"),
    ],
)
async def test_simulator_garbles_the_answer_as_told(
    garble: Garble, queued: int, content_type: str
) -> None:
    """Each garble knob sends HTTP 200 with its kind of answer, queueing only where it says."""
    async with running_simulator(garbling(garble)) as sim, aiohttp.ClientSession() as session:
        url = (
            f"{sim.base_url}/nbiot/offline?imei={IMEI}&obj_id=3300&expired_time=2099-01-01T00:00:00"
        )
        async with session.get(url, headers={"api-key": API_KEY}) as resp:
            status, ctype, text = resp.status, resp.content_type, await resp.text()
        commands = list(sim.commands)
    assert (200, content_type, queued) == (status, ctype, len(commands))
    if garble == "not_json":
        assert text.startswith('{"errno":0,"error":"succ","data":{"uuid":"')
        with pytest.raises(ValueError):
            json.loads(text)
    elif garble == "no_uuid":
        assert {"errno": 0, "error": "succ", "data": {}} == json.loads(text)
    elif garble == "wrong_content_type":
        assert {"errno": 0, "error": "succ", "data": {"uuid": commands[0].uuid}} == json.loads(text)
    else:
        assert text.startswith("<!DOCTYPE html>")


@pytest.mark.anyio
async def test_simulator_huge_answer_is_valid_json_when_read_whole() -> None:
    """The huge answer is the true answer plus 20 MB of white space: a client without a cap would take it."""
    async with (
        running_simulator(garbling("huge", huge_answer_bytes=HUGE)) as sim,
        aiohttp.ClientSession() as session,
    ):
        url = (
            f"{sim.base_url}/nbiot/offline?imei={IMEI}&obj_id=3300&expired_time=2099-01-01T00:00:00"
        )
        async with session.get(url, headers={"api-key": API_KEY}) as resp:
            length = resp.content_length
            body = await resp.read()
        [command] = sim.commands
    assert length is None  # streamed: no Content-Length to refuse it by
    assert len(body) > HUGE
    assert {"errno": 0, "error": "succ", "data": {"uuid": command.uuid}} == json.loads(body)


def test_simulator_refuses_an_unknown_garble() -> None:
    """A garble the simulator does not know is refused when the config is made."""
    with pytest.raises(ValueError, match="garble must be one of"):
        SimulatorConfig(garble="teapot")  # type: ignore[arg-type]


# -- through the client --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("garble", UNREADABLE)
@pytest.mark.parametrize("op", ["write", "read"])
async def test_unreadable_answer_after_queueing_is_in_doubt_and_sent_once(
    garble: Garble, op: str
) -> None:
    """Non-JSON, no uuid, or too big to read: the queued command is in doubt, and sent only once."""
    async with running_simulator(garbling(garble)) as sim:
        outcome = await send(sim, write_request() if op == "write" else read_request())
        assert (Kind.IN_DOUBT, 1, 1) == (outcome.kind, len(sim.commands), len(sim.requests))
    assert outcome.uuid is None


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["write", "read"])
async def test_html_error_page_with_http_200_is_in_doubt(op: str) -> None:
    """An HTML page with HTTP 200 says nothing the contract can read: in doubt, though nothing was queued."""
    async with running_simulator(garbling("html_error")) as sim:
        outcome = await send(sim, write_request() if op == "write" else read_request())
        assert (Kind.IN_DOUBT, 0, 1) == (outcome.kind, len(sim.commands), len(sim.requests))


@pytest.mark.anyio
async def test_wrong_content_type_with_a_uuid_is_ok_with_that_uuid() -> None:
    """A readable errno-0 answer under text/html is taken at its word: ok, with the queued uuid."""
    async with running_simulator(garbling("wrong_content_type")) as sim:
        outcome = await send(sim, write_request())
        [command] = sim.commands
    assert (Kind.OK, command.uuid) == (outcome.kind, outcome.uuid)


@pytest.mark.anyio
async def test_wrong_content_type_with_an_errno_is_failed() -> None:
    """A readable non-zero errno under text/html says nothing was queued: failed, with that errno."""
    async with running_simulator(garbling("wrong_content_type", fail_imeis={IMEI})) as sim:
        outcome = await send(sim, write_request())
        assert (Kind.FAILED, 8, 0) == (outcome.kind, outcome.errno, len(sim.commands))


@pytest.mark.anyio
async def test_huge_answer_costs_the_client_little_memory() -> None:
    """Reading a 20 MB streamed answer peaks far below its size: the client stops at its cap."""
    async with running_simulator(garbling("huge", huge_answer_bytes=HUGE)) as sim:
        async with OneNetClient(
            sim.base_url, ApiKeyAuth(Secret(API_KEY)), HttpConfig(), concurrency=1
        ) as client:
            tracemalloc.start()
            try:
                outcome = await client.send(write_request(), window(), datetime.now(PLATFORM_TZ))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert (Kind.IN_DOUBT, 1) == (outcome.kind, len(sim.commands))
    assert f"answer larger than {MAX_ANSWER_BYTES} bytes" == outcome.error
    print(f"huge answer: traced peak {peak / 1024:.0f} KiB for a {HUGE // 2**20} MiB body")
    assert peak < 2 * 1024 * 1024


# -- through the CLI -----------------------------------------------------------------------


@pytest.fixture
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def ledger_rows(path: Path) -> list[tuple[str, int, str, str | None, int | None]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT imei, command, status, uuid, errno FROM items ORDER BY imei, command"
        ).fetchall()
    finally:
        db.close()


@pytest.mark.usefixtures("_key")
@pytest.mark.parametrize(
    ("garble", "status", "queued"),
    [
        ("not_json", "in_doubt", 1),
        ("no_uuid", "in_doubt", 1),
        ("huge", "in_doubt", 1),
        ("html_error", "in_doubt", 0),
        ("wrong_content_type", "ok", 1),
    ],
)
def test_run_records_a_garbled_answer(
    tmp_path: Path, garble: Garble, status: str, queued: int
) -> None:
    """Through the CLI each garbled answer lands in the ledger as its class; nothing is sent twice."""
    commands = (
        "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"
    )
    job = write_job(tmp_path, 2, commands=commands)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(garble_rate=1.0, garble=garble) as sim:
        code = main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        uuids = {c.imei: c.uuid for c in sim.commands}
        assert (2 * queued, 2) == (len(sim.commands), len(sim.requests))
    assert (0 if status == "ok" else 1) == code
    rows = ledger_rows(ledger)
    assert [status, status] == [r[2] for r in rows]
    if status == "ok":
        assert uuids == {r[0]: r[3] for r in rows}
    else:
        assert [None, None] == [r[3] for r in rows]


@pytest.mark.usefixtures("_key")
def test_run_records_an_errno_under_a_wrong_content_type_as_failed(tmp_path: Path) -> None:
    """Through the CLI, errno 8 sent as text/html is failed with errno 8, and the rest of the fleet is ok."""
    commands = (
        "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"
    )
    job = write_job(tmp_path, 2, commands=commands)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(garble_rate=1.0, garble="wrong_content_type", fail_imeis={imei(0)}) as sim:
        code = main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        assert 1 == len(sim.commands)
    assert 1 == code
    assert [("failed", 8), ("ok", 0)] == [(r[2], r[4]) for r in ledger_rows(ledger)]
