"""The validity window of a job: parsing ``now``, ``+48h`` and ISO times, and the wire format.

The platform's time strings carry no zone and are read in China Standard Time
(UTC+8) whatever the zone of the machine we run on, so every instant here is an
aware datetime, and only ``wire_time`` turns one into the platform's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatcher.errors import TimeSpecError

PLATFORM_TZ = timezone(timedelta(hours=8), "UTC+8")
DEFAULT_ZONE = "Asia/Shanghai"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"\+((?:[0-9]+[smhdw])+)", re.ASCII)
_RELATIVE_PART = re.compile(r"([0-9]+)([smhdw])", re.ASCII)
# The longest window that makes sense for a cached command; beyond it a typo is likelier.
MAX_RELATIVE = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """``now``, an offset from the run's start, or a fixed instant."""

    kind: str  # "now" | "relative" | "absolute"
    offset: timedelta = timedelta(0)
    instant: datetime | None = None

    def resolve(self, start: datetime) -> datetime:
        if self.kind == "absolute":
            assert self.instant is not None
            return self.instant
        return start + self.offset


def load_zone(name: str) -> tzinfo:
    """The named IANA zone; TimeSpecError when the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeSpecError(
            f'unknown time zone "{name}" (use an IANA name such as {DEFAULT_ZONE})'
        ) from None


def parse_time_spec(text: str, zone: tzinfo) -> TimeSpec:
    """Parse one window time; ISO times without a zone are read in ``zone``."""
    value = text.strip()
    if value.lower() == "now":
        return TimeSpec("now")
    match = _RELATIVE.fullmatch(value)
    if match:
        seconds = sum(int(n) * _UNITS[u] for n, u in _RELATIVE_PART.findall(match.group(1)))
        if seconds <= 0:
            raise TimeSpecError(f'"{text}": a relative time must be later than now')
        # Compared as a number first: timedelta overflows on a long run of digits.
        if seconds > MAX_RELATIVE.total_seconds():
            raise TimeSpecError(f'"{text}": more than {MAX_RELATIVE.days} days ahead')
        return TimeSpec("relative", offset=timedelta(seconds=seconds))
    if value.startswith(("+", "-")):
        raise TimeSpecError(
            f'"{text}": relative times are written +30m, +2h, +1d or +1d12h (units s m h d w)'
        )
    try:
        instant = datetime.fromisoformat(value.replace(" ", "T", 1) if " " in value else value)
    except ValueError:
        raise TimeSpecError(
            f'"{text}": expected now, +30m / +2h / +1d, or an ISO time such as 2026-11-22T10:00:00'
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone)
    try:
        # Near year 1 or 9999 the shift to UTC or UTC+8 leaves datetime's range.
        instant.astimezone(UTC)
        instant.astimezone(PLATFORM_TZ)
    except OverflowError:
        raise TimeSpecError(f'"{text}": out of range') from None
    return TimeSpec("absolute", instant=instant)


@dataclass(frozen=True, slots=True)
class Window:
    """A resolved window: ``valid`` is None when the command is valid from the platform's now."""

    valid: datetime | None
    expired: datetime


def resolve_window(valid: TimeSpec, expired: TimeSpec, start: datetime) -> Window:
    """Resolve both ends against the run's start; raise TimeSpecError when the order is wrong."""
    valid_at = None if valid.kind == "now" else valid.resolve(start)
    expired_at = expired.resolve(start)
    if expired.kind == "now":
        raise TimeSpecError("expired_time cannot be now: a command must stay valid for some time")
    if expired_at <= start:
        raise TimeSpecError(f"expired_time {wire_time(expired_at)} (UTC+8) has already passed")
    if valid_at is not None and expired_at <= valid_at:
        raise TimeSpecError(
            f"expired_time {wire_time(expired_at)} must be later than valid_time {wire_time(valid_at)} (UTC+8)"
        )
    return Window(valid=valid_at, expired=expired_at)


def wire_time(instant: datetime) -> str:
    """The platform's format: ``YYYY-MM-DDTHH:MM:SS`` in UTC+8, no zone."""
    return instant.astimezone(PLATFORM_TZ).strftime("%Y-%m-%dT%H:%M:%S")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``1h30m``: a plain duration (no leading +)."""
    match = re.fullmatch(r"(?:[0-9]+[smhdw])+", text.strip(), re.ASCII)
    if not match:
        raise TimeSpecError(f'"{text}": expected a duration such as 90s, 10m or 1h30m')
    try:
        return timedelta(
            seconds=sum(int(n) * _UNITS[u] for n, u in _RELATIVE_PART.findall(text.strip()))
        )
    except OverflowError:
        raise TimeSpecError(f'"{text}": too long') from None
