"""The platform's two time formats, both on China Standard Time.

Queries carry `YYYY-MM-DDTHH:MM:SS` with no zone; answers write
`YYYY-MM-DD HH:MM:SS`. Both mean UTC+8 whatever the machine's zone is, so every
conversion here goes through an explicit fixed offset, never the local zone.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone

PLATFORM_TZ = timezone(timedelta(hours=8), "UTC+08:00")

# strptime alone would accept "2018-3-8T1:2:3"; the contract names one exact shape.
_QUERY_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})", re.ASCII
)


# A rollout sends one window to every device: 100,000 commands, a handful of strings.
@functools.lru_cache(maxsize=4096)
def parse_query_time(text: str) -> float | None:
    """Unix time of a query time string, or None when it is not exactly the contract's shape."""
    match = _QUERY_TIME.fullmatch(text)
    if match is None:
        return None
    try:
        # The fields by hand rather than strptime: a delivery pass parses 100,000 of them.
        year, month, day, hour, minute, second = map(int, match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=PLATFORM_TZ)
    except ValueError:  # shape right, calendar wrong: month 13, Feb 30, hour 24
        return None
    return moment.timestamp()


def format_answer_time(unix: float) -> str:
    """An answer's time: the platform writes a space and drops sub-seconds."""
    return datetime.fromtimestamp(unix, PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")


def format_query_time(unix: float) -> str:
    """The query form of a unix time (for tests and examples)."""
    return datetime.fromtimestamp(unix, PLATFORM_TZ).strftime("%Y-%m-%dT%H:%M:%S")
