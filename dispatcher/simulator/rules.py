"""The wire contract's rules for a cached write, read or execute, from the contract alone.

Every check answers a `Rejection` (errno 3 for a missing parameter, 4 for a body that
is not JSON, 5 for a body over 2 KiB, 6 for anything else invalid) or None. The
simulator's own readings where the contract is silent, each chosen to be strict so
that a doubtful request fails in tests rather than on the platform:

- integers are canonical decimal (`-?[1-9][0-9]*` or `0`): no `+`, spaces or leading
  zeros; ids (`obj_id`, `obj_inst_id`, `res_id`) are 0 .. 2**31-1 (a Java int);
- a parameter given twice, a parameter with an empty value, and one the contract
  does not name for the operation are all errno 6;
- a write's `valid_time` may lie in the past; a read's must be in the future, and so
  must an execute's (the contract says "as above" for execute, and above the two
  differ: the stricter one is taken);
- `data` must hold at least one element; JSON keys may not repeat; `NaN`/`Infinity`
  are not JSON; an integer `val` must fit a Java long;
- an execute's body is optional: none (or an empty one), else exactly
  `{"args": "<non-empty string>"}` sent as application/json, the whole body at most
  2 KiB like a write's.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from dispatcher.simulator import errnos
from dispatcher.simulator.errnos import Rejection, invalid, required
from dispatcher.simulator.times import parse_query_time

Op = Literal["write", "read", "execute"]

MAX_BODY_BYTES = 2048
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_BOTH = ("imei", "obj_id", "obj_inst_id", "valid_time", "expired_time", "retry", "timeout")
ALLOWED: dict[Op, frozenset[str]] = {
    "write": frozenset((*_BOTH, "trigger_msg", "mode")),
    "read": frozenset((*_BOTH, "trigger_msg", "res_id")),
    "execute": frozenset((*_BOTH, "trigger_msg", "res_id")),
}
REQUIRED: dict[Op, tuple[str, ...]] = {
    "write": ("imei", "obj_id", "obj_inst_id", "mode", "expired_time"),
    "read": ("imei", "obj_id", "expired_time"),
    "execute": ("imei", "obj_id", "obj_inst_id", "res_id", "expired_time"),
}
# Ops whose valid_time, when given, must be later than the platform's now.
_FUTURE_VALID_TIME: frozenset[Op] = frozenset({"read", "execute"})
INT_RANGES: dict[str, tuple[int, int]] = {
    "obj_id": (0, INT32_MAX),
    "obj_inst_id": (0, INT32_MAX),
    "res_id": (0, INT32_MAX),
    "mode": (1, 2),
    "retry": (0, 10),
    "timeout": (5, 40),
    "trigger_msg": (1, 7),
}
DEFAULTS = {"retry": 3, "timeout": 25, "trigger_msg": 7}
_RANGE_TEXT = {"mode": "1 or 2"}
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*", re.ASCII)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)
_BODY_KEYS = frozenset({"res_id", "type", "val"})


def parse_int(text: str) -> int | None:
    return int(text) if _CANONICAL_INT.fullmatch(text) else None


def check_params(
    pairs: Sequence[tuple[str, str]], allowed: frozenset[str], required_names: Sequence[str]
) -> Rejection | None:
    """The shape every platform query shares: known names, once each, not empty."""
    seen: set[str] = set()
    for name, value in pairs:
        if name not in allowed:
            return invalid(f"unknown parameter {name}")
        if name in seen:
            return invalid(f"{name} given more than once")
        if value == "":
            return invalid(f"{name} must not be empty")
        seen.add(name)
    for name in required_names:
        if name not in seen:
            return required(name)
    return None


def check_query(op: Op, pairs: Sequence[tuple[str, str]], now: float) -> Rejection | None:
    """A cached write's or read's query parameters, `now` being the platform's clock."""
    rejection = check_params(pairs, ALLOWED[op], REQUIRED[op])
    if rejection is not None:
        return rejection
    query = dict(pairs)
    for name, (low, high) in INT_RANGES.items():
        if name not in query:
            continue
        number = parse_int(query[name])
        if number is None:
            return invalid(f"{name} must be an integer")
        if not low <= number <= high:
            allowed = _RANGE_TEXT.get(name, f"between {low} and {high}")
            return invalid(f"{name} must be {allowed}")
    return _check_window(op, query, now)


def _check_window(op: Op, query: dict[str, str], now: float) -> Rejection | None:
    times: dict[str, float] = {}
    for name in ("valid_time", "expired_time"):
        if name in query:
            parsed = parse_query_time(query[name])
            if parsed is None:
                return invalid(f"{name} must be YYYY-MM-DDTHH:MM:SS")
            times[name] = parsed
    valid = times.get("valid_time")
    expired = times["expired_time"]
    if op in _FUTURE_VALID_TIME and valid is not None and not valid > now:
        return invalid("valid_time must be later than the platform's current time")
    if valid is not None and not expired > valid:
        return invalid("expired_time must be later than valid_time")
    if not expired > now:
        return invalid("expired_time must be later than the platform's current time")
    return None


def check_write_headers(content_type: str | None) -> Rejection | None:
    """A JSON body must say it is JSON; a charset, if named, must be UTF-8."""
    if content_type is None:
        return invalid("Content-Type must be application/json")
    mimetype, _, params = content_type.partition(";")
    if mimetype.strip().lower() != "application/json":
        return invalid("Content-Type must be application/json")
    for param in filter(None, (p.strip() for p in params.split(";"))):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return invalid("Content-Type charset must be utf-8")
    return None


def check_write_body(body: bytes) -> Rejection | None:
    """The write body: `{"data": [{"res_id", "type"?, "val"}, ...]}`, at most 2 KiB."""
    if not body:
        return required("data")
    document = _parse_json_object(body)
    if isinstance(document, Rejection):
        return document
    if "data" not in document:
        return required("data")
    unknown = sorted(document.keys() - {"data"})
    if unknown:
        return invalid(f"unknown body key {unknown[0]}")
    data = document["data"]
    if not isinstance(data, list):
        return invalid("data must be an array")
    if not data:
        return invalid("data must not be empty")
    for index, element in enumerate(data):
        rejection = _check_element(f"data[{index}]", element)
        if rejection is not None:
            return rejection
    return None


def check_execute_body(content_type: str | None, body: bytes) -> Rejection | None:
    """An execute's optional body: none at all, or `{"args": "<string>"}` as JSON."""
    if not body:
        return None  # no body, so nothing for a Content-Type to describe
    rejection = check_write_headers(content_type)
    if rejection is not None:
        return rejection
    document = _parse_json_object(body)
    if isinstance(document, Rejection):
        return document
    unknown = sorted(document.keys() - {"args"})
    if unknown:
        return invalid(f"unknown body key {unknown[0]}")
    if "args" not in document:
        return required("args")
    args = document["args"]
    if args is None:
        return invalid("args must not be null")
    if not isinstance(args, str):
        return invalid("args must be a string")
    if not args:
        return invalid("args must not be empty (send no body instead)")
    return None


def _parse_json_object(body: bytes) -> dict[str, Any] | Rejection:
    """A JSON object body of at most 2 KiB: errno 5 if longer, 4 if not JSON, 6 if not an object."""
    if len(body) > MAX_BODY_BYTES:
        return Rejection.of(errnos.REQUEST_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # _DuplicateKey is a ValueError too but is the caller's shape problem, not syntax.
        if isinstance(exc, _DuplicateKey):
            return invalid(str(exc))
        return Rejection.of(errnos.INVALID_JSON)
    if not isinstance(document, dict):
        return invalid("body must be a JSON object")
    return document


def _check_element(where: str, element: Any) -> Rejection | None:
    if not isinstance(element, dict):
        return invalid(f"{where} must be an object")
    unknown = sorted(element.keys() - _BODY_KEYS)
    if unknown:
        return invalid(f"unknown key {where}.{unknown[0]}")
    for key in ("res_id", "val"):
        if key not in element:
            return required(f"{where}.{key}")
    for key, value in element.items():
        if value is None:
            return invalid(f"{where}.{key} must not be null")
    res_id = element["res_id"]
    if not _is_int(res_id) or not 0 <= res_id <= INT32_MAX:
        return invalid(f"{where}.res_id must be an integer between 0 and {INT32_MAX}")
    kind = element.get("type")
    if kind is not None and not (_is_int(kind) and kind in (1, 2)):
        return invalid(f"{where}.type must be 1 or 2")
    return _check_val(where, kind, element["val"])


def _check_val(where: str, kind: int | None, val: Any) -> Rejection | None:
    if kind == 1:
        if not isinstance(val, str) or _HEX.fullmatch(val) is None:
            return invalid(f"{where}.val must be an even-length hex string for type 1")
        return None
    if kind == 2:
        if not _is_number(val):
            return invalid(f"{where}.val must be a number (unix seconds) for type 2")
        return None
    if isinstance(val, bool | str) or _is_number(val):
        return None
    return invalid(f"{where}.val must be a boolean, string, integer or float")


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but `true` is not an integer in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if _is_int(value):
        return bool(INT64_MIN <= value <= INT64_MAX)
    # json turns 1e400 into inf; the platform's double cannot hold it either.
    return isinstance(value, float) and math.isfinite(value)


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateKey("a JSON key is repeated")
    return document


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
