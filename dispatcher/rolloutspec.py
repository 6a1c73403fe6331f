"""The job file's rollout controls: waves, abort rules, dispatch windows, rate ramp.

Models only (they are part of the job file's schema); what they mean at run time
is in ``rollout`` (waves, abort, ramp) and ``schedule`` (dispatch windows).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from dispatcher.errors import TimeSpecError
from dispatcher.timewindow import DEFAULT_ZONE, load_zone, parse_duration

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*%", re.ASCII)
_RANGE = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})", re.ASCII)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def parse_percent(value: Any) -> float:
    """``"5%"`` → 0.05; raises PydanticCustomError with what to write instead."""
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match:
            share = float(match.group(1)) / 100
            if 0 < share <= 1:
                return share
    raise PydanticCustomError(
        "percent", "must be a percentage such as 5%, got {value}", {"value": repr(value)}
    )


def _duration(value: str, what: str) -> timedelta:
    try:
        delta = parse_duration(value)
    except TimeSpecError as exc:
        raise PydanticCustomError("duration", "{msg}", {"msg": str(exc)}) from None
    if delta <= timedelta(0):
        raise PydanticCustomError("duration", "{what} must be longer than 0s", {"what": what})
    return delta


class AbortSpec(_Model):
    """Stop the rollout when it goes wrong."""

    failure_rate: str | None = Field(
        None, description="abort when failed / answered reaches this, e.g. 5%"
    )
    min_answered: StrictInt = Field(
        50, ge=1, description="... once at least this many rows were answered"
    )
    errnos: list[StrictInt] = Field(
        default_factory=list, description="abort on the first answer with one of these errnos"
    )

    @field_validator("failure_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if value is not None:
            parse_percent(value)
        return value

    @property
    def failure_share(self) -> float | None:
        return None if self.failure_rate is None else parse_percent(self.failure_rate)


Wave = StrictInt | str


def _whole_fleet() -> list[Wave]:
    return ["100%"]


class RolloutSpec(_Model):
    """Canary waves: cumulative shares of the fleet, sent one after the other."""

    waves: list[Wave] = Field(
        default_factory=_whole_fleet,
        min_length=1,
        description="cumulative share of the fleet per wave: a count (10) or a percentage (1%); the last is 100%",
    )
    pause_between_waves: str = Field(
        "0s",
        description='a duration (10m) or "confirm": wait for `onenet-dispatch confirm-wave` or a yes on the terminal',
    )
    abort: AbortSpec | None = Field(None, description="when to stop the rollout")
    order: Literal["csv", "shuffle"] = Field(
        "csv", description="csv: in fleet order; shuffle: a random order seeded by the run id"
    )

    @field_validator("waves")
    @classmethod
    def _waves(cls, value: list[Wave]) -> list[Wave]:
        last_share = 0.0
        last_count = 0
        for i, wave in enumerate(value):
            if isinstance(wave, int):
                if wave < 1:
                    raise PydanticCustomError(
                        "wave",
                        "waves[{i}]: a count must be 1 or more, got {w}",
                        {"i": i, "w": wave},
                    )
                if wave <= last_count:
                    raise PydanticCustomError(
                        "wave",
                        "waves[{i}]: waves are cumulative and must grow, got {w} after {p}",
                        {"i": i, "w": wave, "p": last_count},
                    )
                last_count = wave
            else:
                share = parse_percent(wave)
                if share <= last_share:
                    raise PydanticCustomError(
                        "wave",
                        "waves[{i}]: waves are cumulative and must grow, got {w}",
                        {"i": i, "w": wave},
                    )
                last_share = share
        final = value[-1]
        if not (isinstance(final, str) and parse_percent(final) == 1.0):
            raise PydanticCustomError(
                "wave",
                'the last wave must be "100%" (the whole fleet); use run --limit for a partial run',
            )
        return value

    @field_validator("pause_between_waves")
    @classmethod
    def _pause(cls, value: str) -> str:
        if value != "confirm" and value.strip() != "0s":
            _duration(value, "pause_between_waves")
        return value

    @property
    def confirm(self) -> bool:
        return self.pause_between_waves == "confirm"

    @property
    def pause(self) -> timedelta:
        if self.confirm or self.pause_between_waves.strip() == "0s":
            return timedelta(0)
        return parse_duration(self.pause_between_waves)


class DispatchWindowSpec(_Model):
    """Local times when sending is allowed; outside them the run pauses."""

    timezone: str = Field(DEFAULT_ZONE, description="the zone of the times below")
    daily: list[str] = Field(
        min_length=1, description='time ranges, e.g. "01:00-05:00"; "22:00-02:00" crosses midnight'
    )
    days: list[str] = Field(
        default_factory=lambda: list(DAYS), description="days a range may start on: mon..sun"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            load_zone(value)
        except TimeSpecError as exc:
            raise PydanticCustomError("zone", "{msg}", {"msg": str(exc)}) from None
        return value

    @field_validator("daily")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_range(text)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for day in value:
            if day.lower() not in DAYS:
                raise PydanticCustomError(
                    "day", "unknown day {d}; use {all}", {"d": repr(day), "all": ", ".join(DAYS)}
                )
        return [d.lower() for d in value]


def parse_range(text: str) -> tuple[int, int]:
    """``"01:00-05:00"`` → minutes of the day (60, 300); the end may be 24:00."""
    match = _RANGE.fullmatch(text.replace(" ", ""))
    if not match:
        raise PydanticCustomError(
            "range", 'time range {t}: write it as "HH:MM-HH:MM"', {"t": repr(text)}
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise PydanticCustomError("range", "time range {t}: not a time of day", {"t": repr(text)})
    if start == end:
        raise PydanticCustomError(
            "range", "time range {t}: start and end are the same", {"t": repr(text)}
        )
    return start, end


class RampSpec(_Model):
    """Start slower and grow the rate, like AWS IoT Jobs' exponential rollout rate."""

    start: float = Field(gt=0, description="requests per second at the start")
    factor: float = Field(gt=1, le=10, description="the rate is multiplied by this ...")
    every: str = Field(description="... this often (e.g. 1m), until rate.per_second")

    @field_validator("start", "factor", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PydanticCustomError(
                "number", "must be a number, got {value}", {"value": repr(value)}
            )
        return float(value)

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        _duration(value, "every")
        return value

    @property
    def period(self) -> timedelta:
        return parse_duration(self.every)
