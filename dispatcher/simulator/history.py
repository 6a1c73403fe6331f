"""The history, detail and cancel answers, in the shapes the platform's pages document.

Where the pages leave a shape open (the contract's list: `args`, `content`,
`cmd_result`, `remain`, `per_page`, the errno of a refused cancel) the simulator
chooses, and the dispatcher must not depend on the choice:

- `type` is "WRITE", "READ" or "EXECUTE" (the platform's example shows "READ"), or
  in lower case with `type_case` "lower";
- `content` and `args` take the form `detail_form` says (docs/simulator.md). The
  default, "text": `content` is a JSON text: a write's body as received; for a read,
  the query's `obj_id`/`obj_inst_id`/`res_id` that were given, as integers; an
  execute's body as received (`{"args": ...}`), None when it was sent without one;
  `args` is a JSON text of the write's `obj_id`/`obj_inst_id`/`mode`, or of the
  execute's `obj_id`/`obj_inst_id`/`res_id`; None for a read;
- with `page_quirks`, `cmd_uuid` carries a trailing space and `remain` and
  `total_count` are strings, as in the page's own example;
- `cmd_result` is only in a detail of a read confirmed with SUCCESS: a JSON array of
  `{"obj_id", "obj_inst_id", "res_id", "val"}`, the values the device holds under the
  read's path (see device.py); writes and executes never have one;
- `send_time` once sent, `confirm_time`/`confirm_status` once the device answered;
  `feedback_time` stays None and `feedback_msg` empty (nothing is pushed);
- `remain` is the command's `retry` (simulated devices answer the first time);
- `per_page` defaults to 10 and may be 1..100; `sort` defaults to DESC;
- a cancel of a command that is not waiting answers errno 6;
- `answer_forms` (forms.py) writes times, uuids, `send_status`, a write's values and
  the page's count in the other forms a faithful server may choose.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator import forms
from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.errnos import Rejection, invalid
from dispatcher.simulator.rules import DEFAULTS, check_params, parse_int
from dispatcher.simulator.state import CONFIRMED, SUCCESS, CommandRecord
from dispatcher.simulator.times import parse_query_time

HISTORY_PARAMS = frozenset({"imei", "start", "end", "page", "per_page", "sort"})
BY_UUID_PARAMS = frozenset({"imei"})
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100

_TYPES = {"write": "WRITE", "read": "READ", "execute": "EXECUTE"}
_ARGS = {"write": ("obj_id", "obj_inst_id", "mode"), "execute": ("obj_id", "obj_inst_id", "res_id")}


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    imei: str
    start: float
    end: float | None
    page: int
    per_page: int
    newest_first: bool


def parse_history_query(pairs: Sequence[tuple[str, str]]) -> HistoryQuery | Rejection:
    rejection = check_params(pairs, HISTORY_PARAMS, ("imei", "start"))
    if rejection is not None:
        return rejection
    query = dict(pairs)
    bounds: dict[str, float | None] = {}
    for name in ("start", "end"):
        given = query.get(name)
        bounds[name] = None if given is None else parse_query_time(given)
        if given is not None and bounds[name] is None:
            return invalid(f"{name} must be YYYY-MM-DDTHH:MM:SS")
    page = parse_int(query.get("page", "1"))
    if page is None or page < 1:
        return invalid("page must be an integer from 1")
    per_page = parse_int(query.get("per_page", str(DEFAULT_PER_PAGE)))
    if per_page is None or not 1 <= per_page <= MAX_PER_PAGE:
        return invalid(f"per_page must be between 1 and {MAX_PER_PAGE}")
    sort = query.get("sort", "DESC")
    if sort not in ("DESC", "ASC"):
        return invalid("sort must be DESC or ASC")
    start = bounds["start"]
    assert start is not None
    return HistoryQuery(query["imei"], start, bounds["end"], page, per_page, sort == "DESC")


def in_server_zone(query: HistoryQuery, config: SimulatorConfig) -> HistoryQuery:
    """The query's times as this server reads them (UTC with `utc_times`, else UTC+8)."""
    shift = forms.query_shift(frozenset(config.answer_forms))
    if not shift:
        return query
    end = None if query.end is None else query.end + shift
    return dataclasses.replace(query, start=query.start + shift, end=end)


def history_page(
    commands: Sequence[CommandRecord], query: HistoryQuery, config: SimulatorConfig
) -> dict[str, Any]:
    """`{total_count, items}` for the commands created inside the query's window."""
    chosen = [
        c
        for c in commands
        # create_time is shown to the second; compare at that resolution so a
        # command is listed by a window that starts at its displayed create_time.
        if int(c.received_at) >= query.start
        and (query.end is None or int(c.received_at) <= query.end)
    ]
    if query.newest_first:
        chosen.reverse()
    first = 0 if "page_ignored" in config.answer_forms else (query.page - 1) * query.per_page
    page = chosen[first : first + query.per_page]
    count = -1 if "unknown_total" in config.answer_forms else len(chosen)
    total: int | str = str(count) if config.page_quirks else count
    items = [history_item(c, config) for c in page]
    if "no_total" in config.answer_forms:
        return {"items": items}
    return {"total_count": total, "items": items}


def history_item(command: CommandRecord, config: SimulatorConfig) -> dict[str, Any]:
    confirmed = command.send_status in CONFIRMED
    kind = _TYPES[command.op]
    remain = command.int_param("retry", DEFAULTS["retry"])
    shown = frozenset(config.answer_forms)
    uuid = forms.uuid_form(command.uuid, shown)
    return {
        "cmd_uuid": uuid + " " if config.page_quirks else uuid,
        "type": kind.lower() if config.type_case == "lower" else kind,
        "create_time": forms.answer_time(command.received_at, shown),
        "valid_time": forms.answer_time(command.valid_at, shown),
        "expired_time": forms.answer_time(command.expires_at, shown),
        "send_time": _time(command.sent_at, shown),
        "trigger_msg": command.int_param("trigger_msg", DEFAULTS["trigger_msg"]),
        "send_status": forms.send_status(command.send_status, shown),
        "confirm_time": _time(command.confirmed_at, shown) if confirmed else None,
        "confirm_status": command.confirm_status if confirmed else None,
        "feedback_time": None,
        "imei": command.imei,
        "remain": str(remain) if config.page_quirks else remain,
    }


def detail(command: CommandRecord, config: SimulatorConfig) -> dict[str, Any]:
    """A list item plus args, content, feedback_msg, and a confirmed read's cmd_result."""
    item = history_item(command, config)
    args: Any = _args(command)
    content: Any = _content(command)
    form = config.detail_form
    if form == "data_text":
        content = _data_text(command, content)
    elif form in ("object", "pairs"):
        args = dict(command.query)  # the call's HTTP parameters, as strings
        content = _pairs(command) if form == "pairs" else _object(content)
    elif form == "unparseable":
        args, content = _unparseable(args), _unparseable(content)
    if "text_values" in config.answer_forms and command.op == "write" and form != "unparseable":
        content = forms.text_values(content)
    item.update(args=args, content=content, feedback_msg=[])
    if command.op == "read" and command.send_status == SUCCESS:
        item["cmd_result"] = command.cmd_result
    return item


def _time(unix: float | None, shown: frozenset[str]) -> str | int | None:
    return None if unix is None else forms.answer_time(unix, shown)


def _content(command: CommandRecord) -> str | None:
    if command.raw_body is not None:
        return command.raw_body.decode("utf-8")
    if command.op == "execute":
        return None
    ids = {
        name: command.int_param(name)
        for name in ("obj_id", "obj_inst_id", "res_id")
        if name in command.query
    }
    return json.dumps(ids, separators=(",", ":"))


def _args(command: CommandRecord) -> str | None:
    names = _ARGS.get(command.op)
    if names is None:
        return None
    return json.dumps({n: command.int_param(n) for n in names}, separators=(",", ":"))


def _data_text(command: CommandRecord, content: str | None) -> str | None:
    """A write's data list as JSON text; an execute's bare args text; a read's ids as before."""
    body = command.body
    if command.op == "write":
        return json.dumps(body["data"], separators=(",", ":"))
    if command.op == "execute":
        return None if body is None else str(body["args"])
    return content


def _object(content: str | None) -> Any:
    if content is None:
        return None
    parsed = json.loads(content)
    if isinstance(parsed, dict) and "data" not in parsed and "args" not in parsed:
        return {k: str(v) for k, v in parsed.items()}  # a read's ids, as the query wrote them
    return parsed


def _pairs(command: CommandRecord) -> Any:
    """res_id→val pairs for a write ({"5850": 1}); other commands as objects."""
    if command.op != "write":
        return _object(_content(command))
    return {str(e["res_id"]): e["val"] for e in command.body["data"]}


def _unparseable(text: str | None) -> str | None:
    return None if text is None else f"not json: {text}"
