"""What the simulator remembers: every platform request, every queued command.

The record must stay small for a 100,000-command run, so each entry is a slotted
dataclass holding the request as received (the raw query string, the raw body
bytes) and everything else — the query as a dict, the body as JSON, history
fields — is derived on demand.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.faults import Faults
from dispatcher.simulator.rules import Op, parse_int
from dispatcher.simulator.times import parse_query_time

# send_status values from the contract; delivery is not modelled yet, so a command
# only ever waits or is cancelled.
WAIT = 1
CANCELLED = 2

MAX_COMMANDS_PER_DEVICE = 10


@dataclass(slots=True, eq=False)
class CommandRecord:
    """One command the simulator queued. `seq` is the seq of the request that queued it."""

    seq: int
    uuid: str
    op: Op
    imei: str
    raw_query: str
    raw_body: bytes | None
    received_at: float
    send_status: int = WAIT

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, decoded, as received."""
        return dict(parse_qsl(self.raw_query, keep_blank_values=True))

    @property
    def body(self) -> Any:
        """The write body parsed as JSON; None for a read."""
        return None if self.raw_body is None else json.loads(self.raw_body)

    @property
    def valid_at(self) -> float:
        """Unix time the command becomes valid: its valid_time, else its creation."""
        given = self.query.get("valid_time")
        parsed = None if given is None else parse_query_time(given)
        return self.received_at if parsed is None else parsed

    @property
    def expires_at(self) -> float:
        parsed = parse_query_time(self.query["expired_time"])
        assert parsed is not None, "only valid commands are queued"
        return parsed

    def int_param(self, name: str, default: int | None = None) -> int | None:
        given = self.query.get(name)
        return default if given is None else parse_int(given)

    def to_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "op": self.op,
            "imei": self.imei,
            "query": self.query,
            "body": self.body,
            "received_at": self.received_at,
            "seq": self.seq,
            "send_status": self.send_status,
        }


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One request on a platform endpoint.

    `errno` stays None until an errno answer is sent (so for a 503, a dropped
    connection, or a request still in flight); `status` is the HTTP status sent.
    """

    seq: int
    method: str
    path: str
    imei: str | None
    received_at: float
    errno: int | None = None
    uuid: str | None = None
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "imei": self.imei,
            "received_at": self.received_at,
            "errno": self.errno,
            "uuid": self.uuid,
            "status": self.status,
        }


class Record:
    """The requests and commands in arrival order, with the indexes history needs."""

    __slots__ = ("_by_imei", "_by_uuid", "_live", "_seq", "commands", "requests")

    commands: list[CommandRecord]
    requests: list[RequestRecord]
    _by_uuid: dict[str, CommandRecord]
    _by_imei: dict[str, list[CommandRecord]]
    _live: Counter[str]  # per device: queued and not cancelled
    _seq: int

    def __init__(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"Record(requests={len(self.requests)}, commands={len(self.commands)})"

    def clear(self) -> None:
        # New containers rather than .clear(): a snapshot taken before a reset stays intact.
        self.commands = []
        self.requests = []
        self._by_uuid = {}
        self._by_imei = {}
        self._live = Counter()
        self._seq = 0

    def add_request(
        self, method: str, path: str, imei: str | None, received_at: float
    ) -> RequestRecord:
        self._seq += 1
        # Methods and paths repeat across the whole run; share one string each.
        entry = RequestRecord(self._seq, sys.intern(method), sys.intern(path), imei, received_at)
        self.requests.append(entry)
        return entry

    def live_count(self, imei: str) -> int:
        return self._live[imei]

    def queue(
        self,
        request: RequestRecord,
        *,
        uuid: str,
        op: Op,
        imei: str,
        raw_query: str,
        raw_body: bytes | None,
    ) -> CommandRecord:
        command = CommandRecord(
            request.seq, uuid, op, imei, raw_query, raw_body, request.received_at
        )
        self.commands.append(command)
        self._by_uuid[uuid] = command
        self._by_imei.setdefault(imei, []).append(command)
        self._live[imei] += 1
        return command

    def find(self, uuid: str, imei: str) -> CommandRecord | None:
        """The command, if it exists and belongs to that device."""
        command = self._by_uuid.get(uuid)
        return command if command is not None and command.imei == imei else None

    def of_device(self, imei: str) -> list[CommandRecord]:
        return self._by_imei.get(imei, [])

    def cancel(self, command: CommandRecord) -> None:
        command.send_status = CANCELLED
        self._live[command.imei] -= 1


class Simulator:
    """The simulated platform's whole state: knobs, record, dice and load figures."""

    __slots__ = ("_base_url", "config", "faults", "in_flight", "max_in_flight", "record")

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.record = Record()
        self.faults = Faults(self.config)
        self.in_flight = 0
        self.max_in_flight = 0
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"Simulator(base_url={self._base_url!r}, requests={len(self.requests)}, "
            f"commands={len(self.commands)}, in_flight={self.in_flight}, "
            f"max_in_flight={self.max_in_flight})"
        )

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator is not serving; use running_simulator()")
        return self._base_url

    @base_url.setter
    def base_url(self, url: str | None) -> None:
        self._base_url = url

    @property
    def commands(self) -> list[CommandRecord]:
        return self.record.commands

    @property
    def requests(self) -> list[RequestRecord]:
        return self.record.requests

    def now(self) -> float:
        """The platform's clock in unix seconds (see `SimulatorConfig.now`)."""
        clock = self.config.now
        if clock is None:
            return time.time()
        if callable(clock):
            return float(clock())
        return time.time() + clock

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def reset(self) -> None:
        """Forget every request and command; requests still in flight keep counting."""
        self.record.clear()
        self.faults.reset()
        self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, int]:
        return {
            "requests": len(self.requests),
            "queued": len(self.commands),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
        }
