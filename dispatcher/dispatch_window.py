"""Dispatch windows: the local times when a rollout may send (maintenance windows)."""

from __future__ import annotations

from datetime import datetime, timedelta

from dispatcher.rolloutspec import DAYS, DispatchWindowSpec, parse_range
from dispatcher.timewindow import load_zone


class DispatchWindow:
    """``is_open(t)`` and ``next_open(t)`` for a job's ``dispatch_window``.

    A range belongs to the day it starts on, so ``22:00-02:00`` on fri is open from
    Friday 22:00 to Saturday 02:00.
    """

    __slots__ = ("_days", "_ranges", "_zone")

    def __init__(self, spec: DispatchWindowSpec) -> None:
        self._zone = load_zone(spec.timezone)
        self._ranges = [parse_range(text) for text in spec.daily]
        self._days = {DAYS.index(day) for day in spec.days}

    def _spans(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """Open spans starting from the day before ``around`` to a week after it."""
        local = around.astimezone(self._zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        spans = []
        for offset in range(-1, 8):
            day = midnight + timedelta(days=offset)
            # re-anchor in the zone: DST days are not 24 h long
            day = datetime(day.year, day.month, day.day, tzinfo=self._zone)
            if day.weekday() not in self._days:
                continue
            for start, end in self._ranges:
                opens = day + timedelta(minutes=start)
                closes = day + timedelta(minutes=end if end > start else end + 24 * 60)
                spans.append((opens, closes))
        return sorted(spans)

    def is_open(self, at: datetime) -> bool:
        return any(opens <= at < closes for opens, closes in self._spans(at))

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when open, else the start of the next open span."""
        for opens, closes in self._spans(at):
            if opens <= at < closes:
                return at
            if opens > at:
                return opens
        raise ValueError(
            "dispatch window has no open time in the coming week"
        )  # days is never empty

    def closes_at(self, at: datetime) -> datetime | None:
        """When the span open at ``at`` closes (None when closed)."""
        for opens, closes in self._spans(at):
            if opens <= at < closes:
                return closes
        return None
