"""The test-only endpoints under /_sim/: read the record, reset it, turn the knobs.

No fault knob applies here and no key is asked for: these endpoints exist only for
tests on loopback, and must answer even while the platform is told to fail. The
views that show commands or devices first bring delivery up to the simulated now.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from dispatcher.simulator.sim import Simulator


def routes(sim: Simulator) -> list[web.RouteDef]:
    async def commands(request: web.Request) -> web.Response:
        sim.catch_up()
        return web.json_response({"commands": [c.to_json() for c in sim.commands]})

    async def devices(request: web.Request) -> web.Response:
        return web.json_response({"devices": sim.devices_json()})

    async def clock(request: web.Request) -> web.Response:
        return web.json_response(sim.clock_json())

    async def advance(request: web.Request) -> web.Response:
        changes = await _json_object(request)
        if changes is None or changes.keys() != {"seconds"}:
            return _bad_request('body must be {"seconds": N}')
        seconds = changes["seconds"]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            return _bad_request("seconds must be a number >= 0")
        sim.advance(float(seconds))
        return web.json_response(sim.clock_json())

    async def requests(request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_json() for r in sim.requests]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    async def reset(request: web.Request) -> web.Response:
        sim.reset()
        return web.json_response(sim.stats())

    async def get_config(request: web.Request) -> web.Response:
        return web.json_response(sim.config.to_json())

    async def set_config(request: web.Request) -> web.Response:
        changes = await _json_object(request)
        if changes is None:
            return _bad_request("body must be a JSON object")
        try:
            sim.config.update(changes)
        except ValueError as exc:
            return _bad_request(str(exc))
        return web.json_response(sim.config.to_json())

    return [
        web.get("/_sim/commands", commands),
        web.get("/_sim/devices", devices),
        web.get("/_sim/clock", clock),
        web.post("/_sim/advance", advance),
        web.get("/_sim/requests", requests),
        web.get("/_sim/stats", stats),
        web.post("/_sim/reset", reset),
        web.get("/_sim/config", get_config),
        web.post("/_sim/config", set_config),
    ]


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        document = json.loads(await request.read())
    except (UnicodeDecodeError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _bad_request(error: str) -> web.Response:
    return web.json_response({"error": error}, status=400)
