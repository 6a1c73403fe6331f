"""Is this command on the platform the one we sent? Judged on the detail's `args` and `content`.

The platform's detail page (``platforms.detail_path``) says only that
``args`` holds the call's HTTP parameters and ``content`` its HTTP content, "as json":
its example shows JSON objects, other platforms write JSON text, of the body or of
just its ``data`` list, or res_id→val pairs. So every form is tried on both fields:

- a write's body: ``{"data": [...]}``, the ``data`` list alone, res_id→val pairs
  (``{"5850": 1}`` or ``[{"5850": 1}]``);
- an execute's body: ``{"args": "..."}``, or its args text alone;
- the call's parameters: ``imei``, ``obj_id``, ``obj_inst_id``, ``res_id``, ``mode``.

Numbers and numeric strings compare equal (``"1"`` and ``1``), an opaque value's hex
compares without case, a boolean equals its JSON text (``true`` and ``"true"``).
Where a rewrite could have made our value look like another one, the comparison is no
evidence rather than a difference: ``true`` against ``1``, two numbers equal to a
float's precision, an opaque value not written in hex, a Time value written as a date,
a type written as a name we do not know, an id written ``null``. The call's
parameters are read from a query string too (``obj_id=3300&obj_inst_id=0``). A field
that does not parse, or parses to a shape none of these forms has, is no evidence
either way. One comparable difference rules the
command out; it *agrees* only when what defines the command was confirmed: the body
when we sent one, otherwise every object id we sent. Being wrong either way is
costly (a wrong "differs" sends a device a command twice, a wrong "agrees" settles our
row on someone else's command), so anything less certain is "no evidence".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from dispatcher.answerforms import answer_time
from dispatcher.answerforms import count as count
from dispatcher.plan import Request

ID_KEYS = ("obj_id", "obj_inst_id", "res_id", "mode")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPAQUE = 1
_TIME = 2
_TYPE_NAMES = {"opaque": _OPAQUE, "time": _TIME}
_HEX = re.compile(r"[0-9a-fA-F]*")
_QUERY = re.compile(r"[A-Za-z_][\w.]*=[^&=]*(?:&[A-Za-z_][\w.]*=[^&=]*)*")
# Two numbers this close may be one value passed through a float (or a float32):
# not evidence that they differ.
_FLOAT_CLOSE = Decimal("1e-6")


class Verdict(StrEnum):
    AGREES = "agrees"
    DIFFERS = "differs"
    NO_EVIDENCE = "no evidence"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    why: str


class _Unparsed:
    """A text that is not JSON: comparable as an execute's args text, and, when it is a
    query string (``obj_id=3300&mode=1``), as the call's parameters."""

    __slots__ = ("params", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.params: dict[str, str] | None = None
        stripped = text.strip().lstrip("?")
        if _QUERY.fullmatch(stripped):
            pairs = parse_qsl(stripped, keep_blank_values=True)
            keys = [k for k, _ in pairs]
            # Only a parameter list names an id or the device (an execute's args text may
            # look like a query too: "reboot=10.0.0.1"); a name given twice is ambiguous.
            if len(set(keys)) == len(keys) and {"imei", *ID_KEYS} & set(keys):
                self.params = dict(pairs)


def parse_field(value: object) -> object:
    """A detail field as JSON data: text is parsed (twice, for JSON text inside a JSON string)."""
    for _ in range(2):
        if not isinstance(value, str):
            return value
        text = value
        try:
            value = json.loads(text.strip().lstrip("\ufeff"))
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json recurses
            return _Unparsed(text)
        if not isinstance(value, str) or not value.strip().startswith(("{", "[")):
            return value
    return value


def same_value(theirs: object, ours: object, *, opaque: bool = False) -> bool:
    """Equal as the platform may have rewritten them: "1" == 1 == 1.0; hex without case."""
    return compare(theirs, ours, kind=_OPAQUE if opaque else None) is True


def compare(theirs: object, ours: object, *, kind: object = None) -> bool | None:
    """True: the same value in another form; False: another value; None: cannot tell.

    ``kind`` is our element's ``type`` (1 Opaque, 2 Time) when comparing a write's value.
    """
    if kind == _OPAQUE and isinstance(ours, str):
        if not isinstance(theirs, str) or not _HEX.fullmatch(theirs.strip()):
            return None  # not hex: another encoding of the bytes (base64?) cannot be compared
        return theirs.strip().lower() == ours.strip().lower()
    if kind == _TIME and _scalar(theirs) != _scalar(ours):
        return _compare_time(theirs, ours)
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return _compare_flag(theirs, ours)
    if theirs is None or ours is None:
        return None if theirs is not ours else True
    a, b = _scalar(theirs), _scalar(ours)
    if a == b:
        return True
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        scale = max(abs(a), abs(b))
        try:
            close = abs(a - b) <= scale * _FLOAT_CLOSE
        except ArithmeticError:  # the difference overflows the context: far apart
            return False
        return None if close and (_inexact(theirs) or _inexact(ours)) else False
    if isinstance(a, str) and isinstance(b, str) and a.strip() == b.strip():
        return None  # white space a server may have trimmed or padded
    return False


def _scalar(value: object) -> object:
    if isinstance(value, bool):
        return ("bool", value)  # True == 1 in Python; not on the wire
    if value is None:
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            try:
                return Decimal(text)
            except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
                return value
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _inexact(value: object) -> bool:
    """Was this number (or its text) possibly carried by a float: a fraction or an exponent?"""
    if isinstance(value, float):
        return True
    if isinstance(value, int):
        return abs(value) > 2**53  # beyond a double's exact integers
    return isinstance(value, str) and any(c in value for c in ".eE")


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _compare_flag(theirs: object, ours: object) -> bool | None:
    """A boolean beside another form: equal to its JSON text, unsure beside 1/0."""
    a, b = _flag(theirs), _flag(ours)
    if a is not None and b is not None:
        return a == b
    other, flag = (ours, a) if a is not None else (theirs, b)
    assert flag is not None
    number = count(other) if not isinstance(other, bool) else None
    if number in (0, 1):
        # 1 may be true rewritten, or a number another application sent: not evidence.
        return None if number == int(flag) else False
    return False if number is not None else None


def _compare_time(theirs: object, ours: object) -> bool | None:
    """A Time value (Unix seconds) beside a number, milliseconds or a written date."""
    ours_s = _scalar(ours)
    if not isinstance(ours_s, Decimal):
        return None
    theirs_s = _scalar(theirs)
    if isinstance(theirs_s, Decimal):
        return theirs_s == ours_s * 1000  # the same instant in milliseconds, or another
    when = answer_time(theirs)
    if when is None:
        return None
    # A date written without a zone is read as the platform's; equal is evidence, a
    # difference may be a zone we guessed wrong.
    return True if Decimal(int(when.timestamp())) == ours_s else None


def _key(value: object) -> str:
    """A res_id as a dict key: "5850", 5850 and 5850.0 are one resource."""
    scalar = _scalar(value)
    # adjusted(): its digits before the point. "1e999999999" as an int would take
    # gigabytes (and one over 4300 digits does not print): no resource has such an id.
    if (
        isinstance(scalar, Decimal)
        and scalar.adjusted() < 20
        and scalar == scalar.to_integral_value()
    ):
        return str(int(scalar))
    return str(scalar)


def _both(results: list[bool | None]) -> bool | None:
    """Every comparison of one command together: any difference decides; then any doubt."""
    if False in results:
        return False
    return None if None in results else True


class _Tally:
    """What the comparisons of one candidate found."""

    def __init__(self) -> None:
        self.differs: list[str] = []
        self.body_agrees: list[str] = []
        self.ids_agree: set[str] = set()
        self.unreadable: list[str] = []


def judge(detail: Mapping[str, Any], request: Request) -> Judgement:
    """Compare one command's detail with the request we sent."""
    tally = _Tally()
    ours_ids = {k: v for k, v in request.head if k in ID_KEYS}
    if _other_device(detail.get("imei"), request.imei):
        tally.differs.append("imei")
    body = json.loads(request.body) if request.body is not None else None
    for name in ("args", "content"):
        raw = detail.get(name)
        if raw is None or raw == "":
            continue
        value = parse_field(raw)
        if isinstance(value, _Unparsed):
            tally.unreadable.append(f"{name} does not parse")
        _compare_ids(name, value, ours_ids, request.imei, tally)
        if request.op == "write" and isinstance(body, dict):
            _compare_write(name, value, body.get("data"), tally)
        if request.op == "execute":
            _compare_execute(name, value, body, tally)
    if tally.differs:
        return Judgement(
            Verdict.DIFFERS, f"differs from what was sent ({', '.join(tally.differs)})"
        )
    if isinstance(body, dict):  # a write's data, an execute's args: the body is the command
        if tally.body_agrees:
            return Judgement(Verdict.AGREES, f"agrees ({', '.join(tally.body_agrees)})")
    elif ours_ids and set(ours_ids) <= tally.ids_agree:
        return Judgement(Verdict.AGREES, f"agrees ({', '.join(sorted(tally.ids_agree))})")
    why = "; ".join(tally.unreadable) or "args and content give nothing to compare"
    return Judgement(Verdict.NO_EVIDENCE, f"no comparable evidence ({why})")


def _other_device(given: object, imei: str) -> bool:
    """Does an imei field plainly name another device? (text or number; absent says nothing)"""
    if isinstance(given, bool) or not isinstance(given, str | int) or not str(given).strip():
        return False
    return compare(given, imei) is False


def _compare_ids(
    name: str, value: object, ours: Mapping[str, str], imei: str, tally: _Tally
) -> None:
    params = value.params if isinstance(value, _Unparsed) else value
    if not isinstance(params, dict):
        return
    if _other_device(params.get("imei"), imei):
        tally.differs.append(f"{name} imei")
    for key, mine in ours.items():
        given = params.get(key)
        if given is None or given == "":
            continue  # absent (or null) is no evidence: the platform may leave out a default
        same = compare(given, mine)
        if same is True:
            tally.ids_agree.add(key)
        elif same is False:
            tally.differs.append(f"{name} {key}")


def _compare_write(name: str, value: object, data: object, tally: _Tally) -> None:
    if not isinstance(data, list):
        return
    if isinstance(value, dict) and "data" in value:
        inner = parse_field(value["data"])
        form = "body"
    else:
        inner, form = value, "data list"
    if (
        isinstance(inner, list)
        and inner
        and all(isinstance(e, dict) and "res_id" in e for e in inner)
    ):
        equal = _data_equal(inner, data)
    else:
        pairs = _pairs(inner)
        if pairs is None:
            return
        form, equal = "res_id→val pairs", _pairs_equal(pairs, data)
    if equal is None:
        return
    if equal:
        tally.body_agrees.append(f"{name} as {form}")
    else:
        tally.differs.append(f"{name} as {form}")


def _data_equal(theirs: list[dict[str, Any]], ours: list[Any]) -> bool | None:
    if any("val" not in e for e in theirs):
        return None
    if len(theirs) != len(ours):
        return False
    mine = {_key(e.get("res_id")): e for e in ours if isinstance(e, dict)}
    given = {_key(e["res_id"]): e for e in theirs}
    # Keyed by res_id when both sides name each resource once; in order otherwise.
    if len(mine) == len(ours) and len(given) == len(theirs):
        if mine.keys() != given.keys():
            return False
        pairs = [(given[k], mine[k]) for k in mine]
    else:
        pairs = list(zip(theirs, ours, strict=True))
    results: list[bool | None] = []
    for t, o in pairs:
        if not isinstance(o, dict) or _key(t["res_id"]) != _key(o.get("res_id")):
            return False
        if t.get("type") is not None and "type" in o:
            results.append(_compare_type(t["type"], o["type"]))
        results.append(compare(t["val"], o.get("val"), kind=o.get("type")))
    return _both(results)


def _compare_type(theirs: object, ours: object) -> bool | None:
    """A resource type as a number ("1", 1) or a name ("Opaque"); another name cannot be told."""
    number = count(theirs)
    if number is None and isinstance(theirs, str):
        number = _TYPE_NAMES.get(theirs.strip().lower())
    return None if number is None else number == count(ours)


def _pairs(value: object) -> dict[str, object] | None:
    """res_id→val pairs: {"5850": 1}, or a list of such objects; None for any other shape."""
    items = value if isinstance(value, list) else [value]
    merged: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict) or not item:
            return None
        for key, val in item.items():
            if not _NUMBER.fullmatch(key.strip()) or _key(key) in merged:
                return None
            merged[_key(key)] = val
    return merged or None


def _pairs_equal(pairs: Mapping[str, object], ours: list[Any]) -> bool | None:
    mine: dict[str, dict[str, Any]] = {}
    for element in ours:
        if not isinstance(element, dict):
            return None
        key = _key(element.get("res_id"))
        if key in mine:
            return None  # the same resource twice: pairs cannot say which value is which
        mine[key] = element
    if pairs.keys() != mine.keys():
        return False
    return _both(
        [compare(v, mine[k].get("val"), kind=mine[k].get("type")) for k, v in pairs.items()]
    )


def _compare_execute(name: str, value: object, body: object, tally: _Tally) -> None:
    ours = body.get("args") if isinstance(body, dict) else None
    if isinstance(value, dict) and "args" in value and not any(k in value for k in ID_KEYS):
        same = None if ours is None else _same_args(value["args"], ours)
        if ours is None:
            tally.differs.append(f"{name} has execute args, none were sent")
        elif same is True:
            tally.body_agrees.append(f"{name} as the execute body")
        elif same is False:
            tally.differs.append(f"{name} execute args")
        return
    # A bare text may be the args text, or anything: only equality is evidence.
    text = value.text.strip() if isinstance(value, _Unparsed) else value
    if ours is not None and _same_args(text, ours) is True:
        tally.body_agrees.append(f"{name} as the execute args text")


def _same_args(theirs: object, ours: object) -> bool | None:
    """An execute's args text beside what the detail shows: the text itself, or the JSON
    that text holds, parsed (a server may store ``{"a":1}`` as an object)."""
    if isinstance(theirs, dict | list) and isinstance(ours, str):
        parsed = parse_field(ours)
        if isinstance(parsed, dict | list):
            return compare(theirs, parsed)
        return None
    if isinstance(theirs, str | int | float):
        return compare(theirs, ours)
    return None
