"""The platform's endpoints: cached write and read, history, detail and cancel.

Every platform request goes through `_serve`, which records it, counts it in
flight, applies the faults that come before looking at a request (HTTP 503, auth,
rate limit), runs the endpoint, sleeps the latency, and then answers, stalls or
drops the connection. Faults that need a valid request (unknown device, injected
errno) are applied by the endpoints once the request has passed the contract.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from dispatcher.simulator import errnos, history, rules
from dispatcher.simulator.auth import check_auth
from dispatcher.simulator.errnos import Rejection, invalid
from dispatcher.simulator.rules import Op
from dispatcher.simulator.state import (
    MAX_COMMANDS_PER_DEVICE,
    WAIT,
    CommandRecord,
    RequestRecord,
    Simulator,
)

After = Literal["answer", "stall", "drop"]


@dataclass(slots=True)
class Outcome:
    """What a platform request comes to, before latency and delivery faults."""

    errno: int
    error: str
    data: Any = None
    uuid: str | None = None
    after: After = "answer"

    @classmethod
    def refused(cls, rejection: Rejection) -> Outcome:
        return cls(rejection.errno, rejection.error)

    @classmethod
    def succ(cls, data: Any = None) -> Outcome:
        return cls(errnos.OK, errnos.TEXTS[errnos.OK], data)

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"errno": self.errno, "error": self.error}
        if self.data is not None:
            answer["data"] = self.data
        return answer


Endpoint = Callable[[Simulator, web.Request, RequestRecord], Awaitable[Outcome]]


def routes(sim: Simulator) -> list[web.RouteDef]:
    def bind(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await _serve(sim, request, endpoint)

        return handler

    return [
        web.post("/nbiot/offline", bind(_write)),
        # No HEAD twin: a HEAD would run the read and queue a command.
        web.get("/nbiot/offline", bind(_read), allow_head=False),
        web.get("/nbiot/offline/history", bind(_history), allow_head=False),
        web.get("/nbiot/offline/history/{uuid}", bind(_detail), allow_head=False),
        # Registered before {uuid} so that "all" is not taken for a command id.
        web.put("/nbiot/offline/cancel/all", bind(_cancel_all)),
        web.put("/nbiot/offline/cancel/{uuid}", bind(_cancel)),
    ]


async def _serve(sim: Simulator, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    entry = sim.record.add_request(
        request.method, request.path, request.query.get("imei"), sim.now()
    )
    sim.enter()
    try:
        config = sim.config
        outcome = await _decide(sim, request, entry, endpoint)
        delay = config.latency + sim.faults.jitter(config.latency_jitter)
        if outcome is not None and outcome.after == "stall":
            delay += config.stall_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        if outcome is None:
            entry.status = 503
            return web.Response(status=503, text="Service Unavailable")
        entry.uuid = outcome.uuid
        if outcome.after == "drop":
            # Close without a byte of answer: the client cannot tell whether the
            # command was queued, which is exactly the case the dispatcher must handle.
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # never written: aiohttp sees the closed transport
        entry.errno, entry.status = outcome.errno, 200
        return web.json_response(outcome.body())
    finally:
        sim.leave()


async def _decide(
    sim: Simulator, request: web.Request, entry: RequestRecord, endpoint: Endpoint
) -> Outcome | None:
    config = sim.config
    if sim.faults.chance(config.http_503_rate):
        return None  # None = HTTP 503, decided before the request is looked at
    rejection = check_auth(request.headers, config, sim.now())
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
    if sim.faults.chance(config.error_rate):
        return Outcome(config.error_errno, config.error_text)
    return None


async def _write(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    return await _queue("write", sim, request, entry)


async def _read(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    return await _queue("read", sim, request, entry)


async def _queue(op: Op, sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    rejection = rules.check_query(op, list(request.query.items()), sim.now())
    body: bytes | None = None
    if rejection is None and op == "write":
        rejection = rules.check_write_headers(request.headers.get("Content-Type"))
        if rejection is None:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return Outcome.refused(Rejection.of(errnos.REQUEST_TOO_LARGE))
            rejection = rules.check_write_body(body)
    elif rejection is None and request.body_exists:
        rejection = invalid("a read takes no body")
    if rejection is not None:
        return Outcome.refused(rejection)

    imei = request.query["imei"]
    fault = _device_faults(sim, imei)
    if fault is not None:
        return fault
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
        raw_body=body,
    )
    outcome = Outcome.succ({"uuid": command.uuid})
    outcome.uuid = command.uuid
    config = sim.config
    if sim.faults.chance(config.drop_after_queue_rate):
        outcome.after = "drop"
    elif sim.faults.chance(config.stall_after_queue_rate):
        outcome.after = "stall"
    return outcome


async def _history(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    query = history.parse_history_query(list(request.query.items()))
    if isinstance(query, Rejection):
        return Outcome.refused(query)
    fault = _device_faults(sim, query.imei)
    if fault is not None:
        return fault
    return Outcome.succ(history.history_page(sim.record.of_device(query.imei), query))


async def _detail(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    found = _by_uuid(sim, request)
    if isinstance(found, Outcome):
        return found
    return Outcome.succ(history.detail(found))


async def _cancel(sim: Simulator, request: web.Request, entry: RequestRecord) -> Outcome:
    found = _by_uuid(sim, request)
    if isinstance(found, Outcome):
        return found
    if not _cancellable(sim, found):
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
    waiting = [c for c in sim.record.of_device(imei) if c.send_status == WAIT]
    succ, failed = [], []
    for command in waiting:
        if _cancellable(sim, command):
            sim.record.cancel(command)
            succ.append(command.uuid)
        else:
            failed.append(command.uuid)
    return Outcome.succ({"succ": succ, "failed": failed, "total": len(waiting)})


def _by_uuid(sim: Simulator, request: web.Request) -> CommandRecord | Outcome:
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
    return command


def _cancellable(sim: Simulator, command: CommandRecord) -> bool:
    if command.send_status != WAIT:
        return False
    return not (sim.config.cancel_only_before_valid_time and command.valid_at <= sim.now())
