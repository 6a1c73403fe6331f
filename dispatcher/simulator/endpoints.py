"""The platform's endpoints: cached write, read and execute, history, detail and cancel.

Every platform request goes through `_serve`, which records it, reads the simulated
clock once (the request's `received_at`: every time check of that request uses it),
plays the delivery due up to then, counts it in flight, applies the faults that come
before looking at a request (HTTP 503 or 429, an HTML error page, auth, rate limit),
runs the endpoint, sleeps the latency, and then answers (perhaps garbled), stalls or
drops the connection. Faults that need a valid request (unknown device, injected
errno) are applied by the endpoints once the request has passed the contract.
"""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from dispatcher.simulator import errnos, forms, history, rules
from dispatcher.simulator.auth import check_auth
from dispatcher.simulator.config import Envelope, Garble, Platform, SimulatorConfig
from dispatcher.simulator.errnos import Rejection, invalid
from dispatcher.simulator.rules import Op
from dispatcher.simulator.sim import Simulator
from dispatcher.simulator.state import (
    MAX_COMMANDS_PER_DEVICE,
    WAIT,
    CommandRecord,
    RequestRecord,
)

After = Literal["answer", "stall", "drop"]

# What a proxy in front of the platform might show; it says nothing about the command.
_HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>Error</title></head>"
    "<body><h1>Sorry, the page you are looking for is currently unavailable.</h1>"
    "<p>Please try again later.</p></body></html>"
)
_HUGE_CHUNK = b" " * 65536  # one shared chunk: streaming 20 MB costs the simulator no memory


@dataclass(slots=True)
class Outcome:
    """What a platform request comes to, before latency and delivery faults."""

    errno: int
    error: str
    data: Any = None
    uuid: str | None = None
    after: After = "answer"
    garble: Garble | None = None

    @classmethod
    def refused(cls, rejection: Rejection) -> Outcome:
        return cls(rejection.errno, rejection.error)

    @classmethod
    def succ(cls, data: Any = None) -> Outcome:
        return cls(errnos.OK, errnos.TEXTS[errnos.OK], data)

    def body(self, envelope: Envelope = "errno") -> dict[str, Any]:
        answer: dict[str, Any]
        if envelope == "code":
            answer = {"code": self.errno, "msg": self.error, "request_id": uuidlib.uuid4().hex}
        else:
            answer = {"errno": self.errno, "error": self.error}
        if self.data is not None:
            answer["data"] = self.data
        return answer


@dataclass(frozen=True, slots=True)
class Early:
    """An answer given before the request is looked at: nothing is checked or queued."""

    status: int
    content_type: str
    text: str


_EARLY_503 = Early(503, "text/plain", "Service Unavailable")
_EARLY_429 = Early(429, "text/plain", "Too Many Requests")
_EARLY_HTML = Early(200, "text/html", _HTML_ERROR_PAGE)


Endpoint = Callable[[Simulator, web.Request, RequestRecord], Awaitable[Outcome]]


# Each console's path prefix; both are routed, and a request under the prefix of the
# console not being served is answered 404, as the other host would.
PREFIXES: dict[Platform, str] = {"legacy": "/nbiot", "studio": "/nb-iot"}


def routes(sim: Simulator) -> list[web.RouteDef]:
    def bind(
        platform: Platform, endpoint: Endpoint, *, queues: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            if sim.config.platform != platform:
                raise web.HTTPNotFound()
            return await _serve(sim, request, endpoint, queues=queues)

        return handler

    table: list[web.RouteDef] = []
    for platform, prefix in PREFIXES.items():
        table += [
            web.post(f"{prefix}/offline", bind(platform, _write, queues=True)),
            # No HEAD twin: a HEAD would run the read and queue a command.
            web.get(f"{prefix}/offline", bind(platform, _read, queues=True), allow_head=False),
            web.post(f"{prefix}/execute/offline", bind(platform, _execute, queues=True)),
            web.get(f"{prefix}/offline/history", bind(platform, _history), allow_head=False),
            web.get(
                f"{prefix}/offline/history/{{uuid}}", bind(platform, _detail), allow_head=False
            ),
            # Registered before {uuid} so that "all" is not taken for a command id.
            web.put(f"{prefix}/offline/cancel/all", bind(platform, _cancel_all)),
            web.put(f"{prefix}/offline/cancel/{{uuid}}", bind(platform, _cancel)),
        ]
    return table


async def _serve(
    sim: Simulator, request: web.Request, endpoint: Endpoint, *, queues: bool
) -> web.StreamResponse:
    entry = sim.record.add_request(
        request.method, request.path, request.query.get("imei"), sim.now()
    )
    sim.delivery.catch_up(entry.received_at)
    sim.enter()
    try:
        config = sim.config
        outcome = await _decide(sim, request, entry, endpoint, queues)
        if queues and sim.faults.chance(config.foreign_rate):
            await _other_application(sim, request, entry)
        delay = config.latency + sim.faults.jitter(config.latency_jitter)
        if isinstance(outcome, Outcome) and outcome.after == "stall":
            delay += config.stall_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(outcome, Early):
            entry.status = outcome.status
            headers = {}
            if outcome.status in (429, 503) and config.retry_after is not None:
                headers["Retry-After"] = str(config.retry_after)
            return web.Response(
                status=outcome.status,
                text=outcome.text,
                content_type=outcome.content_type,
                headers=headers,
            )
        entry.uuid = outcome.uuid
        if outcome.after == "drop":
            # Close without a byte of answer: the client cannot tell whether the
            # command was queued, which is exactly the case the dispatcher must handle.
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # never written: aiohttp sees the closed transport
        entry.status = 200
        if outcome.garble != "not_json":
            entry.errno = outcome.errno
        return await _answer(request, outcome, config)
    finally:
        sim.leave()


async def _answer(
    request: web.Request, outcome: Outcome, config: SimulatorConfig
) -> web.StreamResponse:
    """The answer as the platform writes it, or garbled the way the `garble` knob says."""
    if outcome.garble is None:
        return forms.response(outcome.body(config.envelope), frozenset(config.answer_forms))
    if outcome.garble == "not_json":
        # A JSON text cut off inside the uuid, as a proxy that gave up mid-answer leaves it.
        text = json.dumps(outcome.body(config.envelope), separators=(",", ":"))
        assert outcome.uuid is not None, "only a queued answer is cut"
        cut = text[: text.index(outcome.uuid) + len(outcome.uuid) // 2]
        return web.Response(text=cut, content_type="application/json")
    if outcome.garble == "no_uuid":
        return web.json_response({"errno": errnos.OK, "error": errnos.TEXTS[errnos.OK], "data": {}})
    if outcome.garble == "wrong_content_type":
        return web.Response(
            text=json.dumps(outcome.body(config.envelope)), content_type="text/html"
        )
    assert outcome.garble == "huge", outcome.garble
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()  # no Content-Length: the client learns the size by reading
    try:
        await response.prepare(request)
        await response.write(json.dumps(outcome.body(config.envelope)).encode())
        left = config.huge_answer_bytes
        while left > 0:
            await response.write(_HUGE_CHUNK if left >= len(_HUGE_CHUNK) else _HUGE_CHUNK[:left])
            left -= len(_HUGE_CHUNK)
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped reading and closed: what a size cap does
    return response


async def _decide(
    sim: Simulator, request: web.Request, entry: RequestRecord, endpoint: Endpoint, queues: bool
) -> Outcome | Early:
    config = sim.config
    if sim.faults.chance(config.http_503_rate):
        return _EARLY_503
    if sim.faults.chance(config.http_429_rate):
        return _EARLY_429
    if queues and config.garble == "html_error" and sim.faults.chance(config.garble_rate):
        return _EARLY_HTML
    rejection = check_auth(request.headers, config, entry.received_at)
    if rejection is not None:
        return Outcome.refused(rejection)
    # After auth: the platform meters a caller it knows.
    if not sim.faults.admit():
        return Outcome.refused(Rejection.of(errnos.API_FREQ_OUT_OF_LIMIT))
    return await endpoint(sim, request, entry)


def _device_faults(sim: Simulator, imei: str) -> Outcome | None:
    """Faults that only a request the contract accepts can meet."""
    config = sim.config
    if imei in config.fail_imeis:
        return Outcome.refused(Rejection.of(errnos.NOT_FOUND))
    if imei in config.foreign_imeis:
        return Outcome.refused(Rejection.of(errnos.AUTH_FAILED, "device is not in this product"))
    if sim.faults.chance(config.error_rate):
        return Outcome(config.error_errno, config.error_text)
    return None


async def _write(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    return await _queue("write", sim, request, entry)


async def _read(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    return await _queue("read", sim, request, entry)


async def _execute(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    return await _queue("execute", sim, request, entry)


async def _queue(op: Op, sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    outcome = await _check_and_queue(op, sim, request, entry)
    config = sim.config
    if outcome.uuid is not None:
        if sim.faults.chance(config.drop_after_queue_rate):
            outcome.after = "drop"
        elif sim.faults.chance(config.stall_after_queue_rate):
            outcome.after = "stall"
    # "html_error" was drawn before the request was looked at; "wrong_content_type"
    # garbles refusals too, the others only an answer that queued a command.
    garble = config.garble
    if (
        outcome.after == "answer"
        and garble != "html_error"
        and (outcome.uuid is not None or garble == "wrong_content_type")
        and sim.faults.chance(config.garble_rate)
    ):
        outcome.garble = garble
    return outcome


async def _check_and_queue(
    op: Op, sim: Simulator, request: web.Request, entry: RequestRecord
) -> Outcome:
    now = entry.received_at
    checked = await _check_request(op, request, now)
    if isinstance(checked, Rejection):
        return Outcome.refused(checked)

    imei = request.query["imei"]
    fault = _device_faults(sim, imei)
    if fault is not None:
        return fault
    commands = sim.record.of_device(imei)
    sim.look_at(commands, now)
    if sim.record.live_count(imei) >= MAX_COMMANDS_PER_DEVICE:
        return Outcome.refused(
            Rejection.of(
                errnos.SYSTEM_LOGIC_LIMIT,
                f"device has {MAX_COMMANDS_PER_DEVICE} cached commands already",
            )
        )
    command = sim.record.queue(
        entry,
        uuid=str(uuidlib.uuid4()),
        op=op,
        imei=imei,
        raw_query=request.rel_url.raw_query_string,
        raw_body=checked or None,  # an execute's empty body is kept as no body
    )
    sim.delivery.queued(command)
    outcome = Outcome.succ({"uuid": command.uuid})
    outcome.uuid = command.uuid
    return outcome


_FOREIGN_TEXT = "set by another application"


async def _other_application(sim: Simulator, request: web.Request, entry: RequestRecord) -> None:
    """Another application queues a command of the same kind on the device, other content.

    It comes right after the request whatever became of it (queued, lost, refused), so
    a lost request leaves a command on the device that is not ours.
    """
    op: Op = (
        "read"
        if request.method == "GET"
        else "execute"
        if request.path.startswith("/nbiot/execute")
        else "write"
    )
    pairs = list(request.query.items())
    if rules.check_query(op, pairs, entry.received_at) is not None:
        return
    imei = request.query["imei"]
    if imei in sim.config.fail_imeis or sim.record.live_count(imei) >= MAX_COMMANDS_PER_DEVICE:
        return
    body: bytes | None = None
    if op == "read":
        # The same object, another resource (or instance): a read of what we read would be ours.
        name = next(n for n in ("res_id", "obj_inst_id", "obj_id") if n in request.query)
        pairs = [(k, str(int(v) + 1) if k == name else v) for k, v in pairs]
    elif op == "execute":
        body = json.dumps({"args": _FOREIGN_TEXT}).encode()
    else:
        try:
            res_id = json.loads(await request.read())["data"][0]["res_id"]
        except (ValueError, LookupError, TypeError):
            res_id = 1
        body = json.dumps({"data": [{"res_id": res_id, "val": _FOREIGN_TEXT}]}).encode()
    command = sim.record.queue(
        entry,
        uuid=str(uuidlib.uuid4()),
        op=op,
        imei=imei,
        raw_query=urlencode(pairs),
        raw_body=body,
        foreign=True,
    )
    sim.delivery.queued(command)


async def _check_request(op: Op, request: web.Request, now: float) -> bytes | Rejection:
    """The request against the contract: its body (b"" for none), or why it is refused."""
    rejection = rules.check_query(op, list(request.query.items()), now)
    if rejection is not None:
        return rejection
    if op == "read":
        return invalid("a read takes no body") if request.body_exists else b""
    content_type = request.headers.get("Content-Type")
    if op == "write":
        # Headers first: a write with the wrong Content-Type is refused unread.
        rejection = rules.check_write_headers(content_type)
        if rejection is not None:
            return rejection
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return Rejection.of(errnos.REQUEST_TOO_LARGE)
    if op == "write":
        rejection = rules.check_write_body(body)
    else:
        rejection = rules.check_execute_body(content_type, body)
    return body if rejection is None else rejection


async def _history(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    query = history.parse_history_query(list(request.query.items()))
    if isinstance(query, Rejection):
        return Outcome.refused(query)
    query = history.in_server_zone(query, sim.config)
    fault = _device_faults(sim, query.imei)
    if fault is not None:
        return fault
    commands = sim.record.of_device(query.imei)
    sim.look_at(commands, entry.received_at)
    return Outcome.succ(history.history_page(commands, query, sim.config))


async def _detail(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    found = _by_uuid(sim, request, entry)
    if isinstance(found, Outcome):
        return found
    return Outcome.succ(history.detail(found, sim.config))


async def _cancel(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    found = _by_uuid(sim, request, entry)
    if isinstance(found, Outcome):
        return found
    if not _cancellable(sim, found, entry.received_at):
        return Outcome.refused(invalid(f"command is not waiting (send_status {found.send_status})"))
    sim.record.cancel(found)
    return Outcome.succ()


async def _cancel_all(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    pairs = list(request.query.items())
    rejection = rules.check_params(pairs, history.BY_UUID_PARAMS, ("imei",))
    if rejection is not None:
        return Outcome.refused(rejection)
    imei = request.query["imei"]
    fault = _device_faults(sim, imei)
    if fault is not None:
        return fault
    commands = sim.record.of_device(imei)
    sim.look_at(commands, entry.received_at)
    waiting = [c for c in commands if c.send_status == WAIT]
    succ, failed = [], []
    for command in waiting:
        if _cancellable(sim, command, entry.received_at):
            sim.record.cancel(command)
            succ.append(command.uuid)
        else:
            failed.append(command.uuid)
    return Outcome.succ({"succ": succ, "failed": failed, "total": len(waiting)})


def _by_uuid(sim: Simulator, request: web.Request, entry: RequestRecord) -> CommandRecord | Outcome:
    rejection = rules.check_params(list(request.query.items()), history.BY_UUID_PARAMS, ("imei",))
    if rejection is not None:
        return Outcome.refused(rejection)
    imei = request.query["imei"]
    fault = _device_faults(sim, imei)
    if fault is not None:
        return fault
    command = sim.record.find(request.match_info["uuid"], imei)
    if command is None:
        return Outcome.refused(Rejection.of(errnos.NOT_FOUND, "no such command for this device"))
    sim.look_at((command,), entry.received_at)
    return command


def _cancellable(sim: Simulator, command: CommandRecord, now: float) -> bool:
    if command.send_status != WAIT:
        return False
    return not (sim.config.cancel_only_before_valid_time and command.valid_at <= now)
