"""Formatting shared by the report, the status view and the export: times, durations, shares."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ts: float | None, *, timespec: str = "seconds") -> str | None:
    """``2026-11-22T08:00:00Z``: a Unix time as ISO 8601 UTC (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def human_seconds(seconds: float, *, tenths: bool = True) -> str:
    """``8.2s``, ``3m05s``, ``2h10m``; whole seconds under a minute with ``tenths=False``."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if tenths else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def local_time(ts: float) -> str:
    """A Unix time in the machine's zone, for a person at its terminal."""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def share(n: int, total: int) -> str:
    """``n`` of ``total`` as a percentage; empty when there is no total."""
    return percent(n / total) if total else ""


def percent(ratio: float) -> str:
    return f"{ratio:.1%}"
