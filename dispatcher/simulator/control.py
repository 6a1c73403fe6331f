"""The test-only endpoints under /_sim/: read the record, reset it, turn the knobs.

No fault knob applies here and no key is asked for: these endpoints exist only for
tests on loopback, and must answer even while the platform is told to fail.
"""

from __future__ import annotations

import json

from aiohttp import web

from dispatcher.simulator.state import Simulator


def routes(sim: Simulator) -> list[web.RouteDef]:
    async def commands(request: web.Request) -> web.Response:
        return web.json_response({"commands": [c.to_json() for c in sim.commands]})

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
        try:
            changes = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        if not isinstance(changes, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            sim.config.update(changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(sim.config.to_json())

    return [
        web.get("/_sim/commands", commands),
        web.get("/_sim/requests", requests),
        web.get("/_sim/stats", stats),
        web.post("/_sim/reset", reset),
        web.get("/_sim/config", get_config),
        web.post("/_sim/config", set_config),
    ]
