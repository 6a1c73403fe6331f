"""``run --dry-run``: the exact requests a run would send, as JSON lines; nothing is sent.

It goes through the same plan, window and URL builder as ``run``, so what it prints
is what would leave (with the key masked). It lists every request of every targeted
device, wave by wave, without consulting a ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from dispatcher.check import CheckedJob
from dispatcher.onenet.render import method_of, request_url
from dispatcher.problems import Problems


def requests(
    checked: CheckedJob,
    *,
    run_id: str,
    base_url: str,  # with the platform profile's prefix: where the paths hang
    auth_header: str,
    now: datetime,
    fleets: frozenset[str] | None = None,
    imeis: frozenset[str] | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per request the run would send, in the order it would send them."""
    waves = checked.wave_map(run_id)
    started = 0
    for wave in range(waves.waves):
        for position, work in enumerate(checked.plan.devices(Problems())):
            device = work.device
            if waves.wave_of(position, device.imei) != wave:
                continue
            if (fleets is not None and device.fleet not in fleets) or (
                imeis is not None and device.imei not in imeis
            ):
                continue
            if limit is not None and started >= limit:
                return
            started += 1
            for request in work.requests:
                headers = {auth_header: "***"}
                if request.body is not None:
                    headers["Content-Type"] = "application/json"
                yield {
                    "wave": wave + 1,
                    "fleet": device.fleet,
                    "imei": device.imei,
                    "command": request.index,
                    "op": request.op,
                    "method": method_of(request),
                    "url": request_url(base_url, request, checked.window, now),
                    "headers": headers,
                    "body": None if request.body is None else json.loads(request.body),
                }


def write(records: Iterator[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n
