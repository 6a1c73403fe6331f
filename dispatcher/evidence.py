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
compares without case. A field that does not parse, or parses to a shape none of
these forms has, is no evidence either way. One comparable difference rules the
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

from dispatcher.plan import Request

ID_KEYS = ("obj_id", "obj_inst_id", "res_id", "mode")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPAQUE = 1


class Verdict(StrEnum):
    AGREES = "agrees"
    DIFFERS = "differs"
    NO_EVIDENCE = "no evidence"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    why: str


class _Unparsed:
    """A text that is not JSON: comparable only as an execute's args text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def parse_field(value: object) -> object:
    """A detail field as JSON data: text is parsed (twice, for JSON text inside a JSON string)."""
    for _ in range(2):
        if not isinstance(value, str):
            return value
        text = value
        try:
            value = json.loads(text.strip())
        except ValueError:
            return _Unparsed(text)
        if not isinstance(value, str) or not value.strip().startswith(("{", "[")):
            return value
    return value


def same_value(theirs: object, ours: object, *, opaque: bool = False) -> bool:
    """Equal as the platform may have rewritten them: "1" == 1 == 1.0; hex without case."""
    a, b = _scalar(theirs), _scalar(ours)
    if opaque and isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b


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
    imei = detail.get("imei")
    if isinstance(imei, str | int) and str(imei).strip() and str(imei).strip() != request.imei:
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


def _compare_ids(
    name: str, value: object, ours: Mapping[str, str], imei: str, tally: _Tally
) -> None:
    if not isinstance(value, dict):
        return
    given = value.get("imei")
    if isinstance(given, str | int) and str(given).strip() and str(given).strip() != imei:
        tally.differs.append(f"{name} imei")
    for key, mine in ours.items():
        if key not in value:
            continue  # absent is no evidence: the platform may leave out what it defaulted
        if same_value(value[key], mine):
            tally.ids_agree.add(key)
        else:
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
    mine = {str(_scalar(e.get("res_id"))): e for e in ours if isinstance(e, dict)}
    given = {str(_scalar(e["res_id"])): e for e in theirs}
    # Keyed by res_id when both sides name each resource once; in order otherwise.
    if len(mine) == len(ours) and len(given) == len(theirs):
        if mine.keys() != given.keys():
            return False
        pairs = [(given[k], mine[k]) for k in mine]
    else:
        pairs = list(zip(theirs, ours, strict=True))
    for t, o in pairs:
        if not isinstance(o, dict) or not same_value(t["res_id"], o.get("res_id")):
            return False
        if "type" in t and "type" in o and not same_value(t["type"], o["type"]):
            return False
        if not same_value(t["val"], o.get("val"), opaque=o.get("type") == _OPAQUE):
            return False
    return True


def _pairs(value: object) -> dict[str, object] | None:
    """res_id→val pairs: {"5850": 1}, or a list of such objects; None for any other shape."""
    items = value if isinstance(value, list) else [value]
    merged: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict) or not item:
            return None
        for key, val in item.items():
            if not _NUMBER.fullmatch(key.strip()) or key.strip() in merged:
                return None
            merged[key.strip()] = val
    return merged or None


def _pairs_equal(pairs: Mapping[str, object], ours: list[Any]) -> bool | None:
    mine: dict[str, dict[str, Any]] = {}
    for element in ours:
        if not isinstance(element, dict):
            return None
        key = str(_scalar(element.get("res_id")))
        if key in mine:
            return None  # the same resource twice: pairs cannot say which value is which
        mine[key] = element
    given = {str(_scalar(k)): v for k, v in pairs.items()}
    if given.keys() != mine.keys():
        return False
    return all(
        same_value(v, mine[k].get("val"), opaque=mine[k].get("type") == _OPAQUE)
        for k, v in given.items()
    )


def _compare_execute(name: str, value: object, body: object, tally: _Tally) -> None:
    ours = body.get("args") if isinstance(body, dict) else None
    if isinstance(value, dict) and "args" in value and not any(k in value for k in ID_KEYS):
        if ours is None:
            tally.differs.append(f"{name} has execute args, none were sent")
        elif same_value(value["args"], ours):
            tally.body_agrees.append(f"{name} as the execute body")
        else:
            tally.differs.append(f"{name} execute args")
        return
    # A bare text may be the args text, or anything: only equality is evidence.
    text = value.text.strip() if isinstance(value, _Unparsed) else value
    if ours is not None and isinstance(text, str | int | float) and same_value(text, ours):
        tally.body_agrees.append(f"{name} as the execute args text")


def count(value: object) -> int | None:
    """A count the platform may write as a number or as text ("3")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
