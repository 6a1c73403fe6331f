"""A simulated OneNET platform: the tests' independent oracle for the wire contract.

It serves the cached ("offline") command API the dispatcher talks to and checks
every request against the contract (docs: onenet-offline-api.md) with its own code;
nothing here imports the rest of `dispatcher`, so a bug shared with the client's
request builder cannot pass both sides unseen.

Platform endpoints (need `api-key`, or a signed `authorization` token when
`product_id` and `access_key` are configured; fault knobs apply to these only):

    POST /nbiot/offline                  cached write   -> {"uuid"}
    GET  /nbiot/offline                  cached read    -> {"uuid"}
    POST /nbiot/execute/offline          cached execute -> {"uuid"}
    GET  /nbiot/offline/history          ?imei&start[&end&page&per_page&sort]
    GET  /nbiot/offline/history/{uuid}   ?imei
    PUT  /nbiot/offline/cancel/{uuid}    ?imei   (a waiting command -> send_status 2)
    PUT  /nbiot/offline/cancel/all       ?imei

With `platform="studio"` the same endpoints are served under /nb-iot/ instead (the
newer console), and only a signed token is accepted: `userid/<user_id>` at version
2022-05-01, or `products/<product_id>` (auth.py). `envelope="code"` answers
{"code", "msg", "request_id", "data"} instead of {"errno", "error", "data"}.

With `delivery` on, devices wake on a schedule (sped up by `clock_speed`), receive
their waiting commands whose trigger matches, and answer them; history, detail,
cancel and the 10-command cap follow (delivery.py, docs/simulator.md).

Test-only endpoints (no key, never faulted):

    GET  /_sim/commands   {"commands": [{uuid, op, imei, query, body, received_at,
                           seq, send_status, sent_at, confirmed_at, confirm_status,
                           cmd_result}]} every queued command, arrival order
    GET  /_sim/devices    {"devices": [{imei, online, next_wake, live, resources}]}
    GET  /_sim/clock      {"now", "time", "speed", "advanced"}
    POST /_sim/advance    {"seconds": N}: the clock jumps N simulated seconds
    GET  /_sim/requests   {"requests": [{seq, method, path, imei, received_at,
                           errno, uuid, status}]} every platform request, rejected
                           ones too; errno null when no errno answer was sent
    GET  /_sim/stats      {"requests", "queued", "max_in_flight", "in_flight"}
    POST /_sim/reset      forget everything recorded; answers the stats
    GET  /_sim/config     the knobs, keys redacted
    POST /_sim/config     a partial JSON update of the knobs; HTTP 400 if invalid

Times in the record are the simulated clock (clock.py) in unix seconds; a
command's `seq` is the seq of the request that queued it.

Python API::

    app = create_app(config)                  # app[SIMULATOR] is the Simulator
    async with running_simulator(config) as sim:
        sim.base_url, sim.commands, sim.requests, sim.config, sim.max_in_flight
        sim.now(), sim.advance(seconds), sim.catch_up()
    await serve(config, host, port, ready=print)
"""

from __future__ import annotations

from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.server import SIMULATOR, create_app, running_simulator, serve
from dispatcher.simulator.sim import Simulator
from dispatcher.simulator.state import CommandRecord, RequestRecord

__all__ = [
    "SIMULATOR",
    "CommandRecord",
    "RequestRecord",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "running_simulator",
    "serve",
]
