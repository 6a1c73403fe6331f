"""How the platform may write the answer fields the product decides on.

The public pages name a field's type ("int", "string", "json") and show one example;
an independent, faithful server may still write a count as ``3`` or ``"3"``, a time
as ``2017-09-08 16:55:14`` or with a ``T``, milliseconds, a zone or as epoch
milliseconds, a uuid in capitals or without its dashes, a ``send_status`` as a code
or a name. Each reader here accepts every such form and answers None for a form it
cannot read with certainty: the caller treats None as "not said", never as a value.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from dispatcher.timewindow import PLATFORM_TZ

_DIGITS = re.compile(r"[+-]?\d+")
# Epoch numbers are read as seconds or milliseconds only inside these bounds (years
# 2001..2286): outside them a number is not a time we can read with certainty.
_EPOCH_S = (1e9, 1e10)
_EPOCH_MS = (1e12, 1e13)


def count(value: object) -> int | None:
    """A whole number written as a JSON number (``3``, ``3.0``) or as text (``"3"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            try:
                return int(text)
            except ValueError:
                return None  # more digits than Python converts (4300): no count we can use
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


def answer_time(value: object) -> datetime | None:
    """An answer's time, aware: ``YYYY-MM-DD HH:MM:SS`` (the pages' form), with a ``T``,
    fractions of a second or a zone, or a Unix time in seconds or milliseconds.

    A time without a zone is the platform's (UTC+8). Anything else is None: a time
    read wrong would rule a command in or out on the wrong side of a send.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _epoch(float(text))
    if len(text) < 19 or text[4] != "-" or text[7] != "-":
        return None  # "2017-9-8 ..." and other shapes fromisoformat would half-read
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=PLATFORM_TZ) if moment.tzinfo is None else moment


def zone_written(value: object) -> bool:
    """Does this time say its own instant (a Unix time, or text with a zone)? Text without
    a zone is the platform's UTC+8 by our reading of the pages, which do not say it."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    if not isinstance(value, str):
        return False
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return True
    return text.endswith(("Z", "z")) or re.search(r"[+-]\d\d:?\d\d$", text[19:]) is not None


def _epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    if _EPOCH_MS[0] <= number < _EPOCH_MS[1]:
        number /= 1000
    elif not _EPOCH_S[0] <= number < _EPOCH_S[1]:
        return None
    return datetime.fromtimestamp(number, UTC).astimezone(PLATFORM_TZ)


def uuid_key(value: object) -> str | None:
    """A uuid as compared: without spaces, braces, dashes or case (``"AB-12 "`` is ``"ab12"``).

    The pages' example ``cmd_uuid`` carries a trailing space; a server may write a uuid
    in capitals or without dashes in one answer and not in another.
    """
    if not isinstance(value, str):
        return None
    # str methods, not a regex: a resume keys every uuid of a million-row ledger
    key = value.strip().strip("{}").strip().replace("-", "").lower()
    return key or None


def uuid_text(value: object) -> str | None:
    """A uuid as the platform wrote it, stripped (for its paths and the ledger); None if none."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# send_status: the contract's codes, and the names a server may write instead.
SEND_STATUS = {
    1: "waiting",
    2: "cancelled",
    3: "sent",
    4: "expired",
    5: "success",
    6: "failed",
    7: "timeout",
    8: "undefined",
}
_STATUS_NAMES = {
    "wait": "waiting",
    "waiting": "waiting",
    "pending": "waiting",
    "cancel": "cancelled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "sent": "sent",
    "send": "sent",
    "sending": "sent",
    "expire": "expired",
    "expired": "expired",
    "success": "success",
    "succ": "success",
    "succeed": "success",
    "succeeded": "success",
    "fail": "failed",
    "failed": "failed",
    "failure": "failed",
    "timeout": "timeout",
    "time_out": "timeout",
    "undefined": "undefined",
}


def send_state(value: object) -> str | None:
    """A ``send_status`` as the ledger names it: from its code (``5``, ``"5"``) or its
    name (``"SUCCESS"``, ``"cmd_success"``); an unknown code is ``code N``; None when
    nothing is written or the text names no state we know."""
    code = count(value)
    if code is not None:
        return SEND_STATUS.get(code, f"code {code}")
    if not isinstance(value, str):
        return None
    name = value.strip().lower().replace("-", "_").replace(" ", "_")
    for prefix in ("cmd_", "send_", "status_"):
        if name.startswith(prefix) and name[len(prefix) :] in _STATUS_NAMES:
            name = name[len(prefix) :]
    return _STATUS_NAMES.get(name)
