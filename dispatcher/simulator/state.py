"""What the simulator remembers: every platform request, every queued command.

The record must stay small for a 100,000-command run, so each entry is a slotted
dataclass holding the request as received (the raw query string, the raw body
bytes) and everything else — the query as a dict, the body as JSON, history
fields — is derived on demand. The few numbers delivery reads again and again (the
window and trigger) are parsed on first use and then kept.
"""

from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from dispatcher.simulator.forms import uuid_key
from dispatcher.simulator.rules import DEFAULTS, Op, parse_int
from dispatcher.simulator.times import parse_query_time

# send_status values from the contract (8 "undefined" and the older 7 "timeout" are
# never produced: simulated devices always answer within the timeout).
WAIT = 1
CANCELLED = 2
SENT = 3
EXPIRED = 4
SUCCESS = 5
FAILED = 6

LIVE = frozenset({WAIT, SENT})
"""Still in the platform's cache: what the 10-command cap counts."""
CONFIRMED = frozenset({SUCCESS, FAILED})
"""The device answered: confirm_time and confirm_status are known."""

MAX_COMMANDS_PER_DEVICE = 10

_WINDOW = frozenset({"valid_time", "expired_time", "trigger_msg"})
_DEFAULT_TRIGGER = str(DEFAULTS["trigger_msg"])


def parse_query_string(raw: str, only: frozenset[str] | None = None) -> dict[str, str]:
    """`dict(parse_qsl(raw, keep_blank_values=True))` (just the `only` names, if given).

    A delivery pass decodes 100,000 queries; few of their parts are escaped, so only
    those pay for unquoting, and with `only` no other value is decoded at all. The
    record holds queries the simulator accepted: no name is repeated.
    """
    params: dict[str, str] = {}
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if only is not None and name not in only:
            continue
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        params[name] = value
    return params


def _raw_values(raw: str, names: frozenset[str]) -> dict[str, str]:
    """The values of `names`, still escaped."""
    found: dict[str, str] = {}
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in names:
            found[name] = value
    return found


# A rollout gives every device the same window: a handful of escaped strings, each
# unescaped and parsed once rather than 100,000 times.
@functools.lru_cache(maxsize=4096)
def _raw_time(escaped: str) -> float | None:
    return parse_query_time(unquote_plus(escaped))


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
    # Filled by delivery; None until the command is sent / confirmed.
    sent_at: float | None = None
    confirmed_at: float | None = None
    confirm_status: str | None = None
    cmd_result: Any = None
    # Queued by "another application" (the foreign_rate knob), not by the request's sender.
    foreign: bool = False
    # valid_at, expires_at, trigger: parsed from raw_query on first use, then kept.
    _window: tuple[float, float, int] | None = field(default=None, init=False, repr=False)

    @property
    def valid_at(self) -> float:
        """Unix time the command becomes valid: its valid_time, else its creation."""
        return self._parsed()[0]

    @property
    def expires_at(self) -> float:
        return self._parsed()[1]

    @property
    def trigger(self) -> int:
        """trigger_msg as a bit mask (default 7)."""
        return self._parsed()[2]

    def _parsed(self) -> tuple[float, float, int]:
        if self._window is None:
            raw = _raw_values(self.raw_query, _WINDOW)
            valid = raw.get("valid_time")
            valid_at = None if valid is None else _raw_time(valid)
            expires_at = _raw_time(raw.get("expired_time", ""))
            trigger = parse_int(unquote_plus(raw.get("trigger_msg", _DEFAULT_TRIGGER)))
            assert expires_at is not None and trigger is not None, "only valid commands are queued"
            self._window = (
                self.received_at if valid_at is None else valid_at,
                expires_at,
                trigger,
            )
        return self._window

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, decoded, as received."""
        return parse_query_string(self.raw_query)

    @property
    def body(self) -> Any:
        """The body parsed as JSON; None for a read or an execute sent without one."""
        return None if self.raw_body is None else json.loads(self.raw_body)

    def int_params(self, names: frozenset[str]) -> dict[str, int]:
        """Those of `names` the query gives (accepted queries hold canonical integers)."""
        return {k: int(v) for k, v in parse_query_string(self.raw_query, names).items()}

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
            "sent_at": self.sent_at,
            "confirmed_at": self.confirmed_at,
            "confirm_status": self.confirm_status,
            "cmd_result": self.cmd_result,
            "foreign": self.foreign,
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
    _live: Counter[str]  # per device: commands in LIVE states
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
        foreign: bool = False,
    ) -> CommandRecord:
        command = CommandRecord(
            request.seq, uuid, op, imei, raw_query, raw_body, request.received_at, foreign=foreign
        )
        self.commands.append(command)
        self._by_uuid[uuid_key(uuid)] = command
        self._by_imei.setdefault(imei, []).append(command)
        self._live[imei] += 1
        return command

    def find(self, uuid: str, imei: str) -> CommandRecord | None:
        """The command, if it exists and belongs to that device (its uuid in any form)."""
        command = self._by_uuid.get(uuid_key(uuid))
        return command if command is not None and command.imei == imei else None

    def of_device(self, imei: str) -> list[CommandRecord]:
        """The device's commands in creation order."""
        return self._by_imei.get(imei, [])

    def devices(self) -> Iterator[tuple[str, list[CommandRecord]]]:
        """Every device that was sent a command, in order of its first one."""
        return iter(self._by_imei.items())

    def set_status(self, command: CommandRecord, status: int) -> None:
        """Every send_status change goes through here so the cap's count stays true."""
        if command.send_status in LIVE and status not in LIVE:
            self._live[command.imei] -= 1
        command.send_status = status

    def cancel(self, command: CommandRecord) -> None:
        self.set_status(command, CANCELLED)

    def expire_due(self, commands: Iterable[CommandRecord], now: float) -> None:
        """Waiting commands whose expired_time has come become expired."""
        for command in commands:
            if command.send_status == WAIT and command.expires_at <= now:
                self.set_status(command, EXPIRED)
