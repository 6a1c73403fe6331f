"""The validity window: ``now``, relative and ISO times, and the platform's UTC+8 wire format."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dispatcher.check import check_job
from dispatcher.errors import InputError, TimeSpecError
from dispatcher.show import both_zones
from dispatcher.timewindow import (
    MAX_RELATIVE,
    PLATFORM_TZ,
    TimeSpec,
    load_zone,
    parse_duration,
    parse_time_spec,
    resolve_window,
    wire_time,
)
from tests.jobtools import BASE_JOB, write

SHANGHAI = ZoneInfo("Asia/Shanghai")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
ZONES: list[tzinfo] = [
    UTC,
    SHANGHAI,
    ZoneInfo("America/New_York"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("Asia/Kolkata"),
    timezone(timedelta(hours=-9, minutes=-30)),
    timezone(timedelta(hours=14)),
]
LOCAL_ZONES = ["UTC", "America/New_York", "Asia/Shanghai"]
# Instants a rollout may name; datetime's own range ends are a separate test.
INSTANTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    """Run the block with the process's local zone set through TZ, as on a CI runner."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def expected_wire(instant: datetime) -> str:
    """UTC+8 computed by hand from the UTC instant, as the contract states it."""
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return (utc + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S")


# --- relative times ------------------------------------------------------------------


@given(
    parts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.sampled_from(list(UNITS))),
        min_size=1,
        max_size=5,
    )
)
def test_relative_offsets_add_up(parts: list[tuple[int, str]]) -> None:
    """Every part of +1d12h30m counts; the sum is the offset, or a clear error outside (0, 366d]."""
    text = "+" + "".join(f"{n}{unit}" for n, unit in parts)
    seconds = sum(n * UNITS[unit] for n, unit in parts)
    if 0 < seconds <= MAX_RELATIVE.total_seconds():
        assert TimeSpec("relative", offset=timedelta(seconds=seconds)) == parse_time_spec(text, UTC)
    else:
        with pytest.raises(TimeSpecError):
            parse_time_spec(text, UTC)


@given(
    start=INSTANTS.map(lambda d: d.replace(tzinfo=UTC)),
    minutes=st.integers(min_value=1, max_value=60 * 24 * 366),
)
def test_relative_times_count_from_the_start(start: datetime, minutes: int) -> None:
    """A relative time resolves to the run's start plus its offset, whatever the start."""
    spec = parse_time_spec(f"+{minutes}m", SHANGHAI)
    assert start + timedelta(minutes=minutes) == spec.resolve(start)


def test_relative_examples() -> None:
    """The forms the docs show parse to the offsets they say."""
    assert timedelta(minutes=30) == parse_time_spec("+30m", UTC).offset
    assert timedelta(days=1, hours=12) == parse_time_spec("+1d12h", UTC).offset
    assert timedelta(weeks=2) == parse_time_spec(" +2w ", UTC).offset
    assert TimeSpec("now") == parse_time_spec("NOW", UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("+0h", '"+0h": a relative time must be later than now'),
        ("+367d", '"+367d": more than 366 days ahead'),
        ("+9999999999999999999999w", '"+9999999999999999999999w": more than 366 days ahead'),
        ("+2H", '"+2H": relative times are written +30m, +2h, +1d or +1d12h (units s m h d w)'),
        ("-1h", '"-1h": relative times are written +30m, +2h, +1d or +1d12h (units s m h d w)'),
        ("+1.5h", '"+1.5h": relative times are written +30m, +2h, +1d or +1d12h (units s m h d w)'),
        (
            "tomorrow",
            '"tomorrow": expected now, +30m / +2h / +1d, or an ISO time such as 2026-11-22T10:00:00',
        ),
        ("0001-01-01T00:00:00+14:00", '"0001-01-01T00:00:00+14:00": out of range'),
        ("9999-12-31T23:59:59-12:00", '"9999-12-31T23:59:59-12:00": out of range'),
    ],
)
def test_bad_time_texts(text: str, message: str) -> None:
    """A time that cannot be understood says what to write instead."""
    with pytest.raises(TimeSpecError) as caught:
        parse_time_spec(text, SHANGHAI)
    assert message == str(caught.value)


@given(text=st.text(max_size=40))
def test_the_parser_never_crashes(text: str) -> None:
    """Any text either parses or raises TimeSpecError, never another exception."""
    try:
        spec = parse_time_spec(text, SHANGHAI)
    except TimeSpecError:
        return
    if spec.kind == "absolute":
        assert spec.instant is not None
        wire_time(spec.instant)


@given(text=st.from_regex(r"\+[0-9]{1,30}[smhdw]([0-9]{1,30}[smhdw])?", fullmatch=True))
def test_huge_relative_times_are_errors_not_crashes(text: str) -> None:
    """Long runs of digits give TimeSpecError, never an overflow."""
    with contextlib.suppress(TimeSpecError):
        parse_time_spec(text, UTC)


# --- ISO times -------------------------------------------------------------------------


def same_instant(a: datetime | None, b: datetime | None) -> bool:
    """The same point in time, compared as such.

    ``==`` between aware datetimes of different zones is not that: under PEP 495 a wall time
    in a DST gap or fold (2000-03-26 02:00 in Berlin does not exist) never equals an instant
    in another zone, although both name the same second. Timestamps do not care.
    """
    assert a is not None and b is not None
    return a.timestamp() == b.timestamp()


# A wall time the clocks skip (Berlin, spring forward): once a random draw that failed.
DST_GAP = {"naive": datetime(2000, 3, 26, 2, 0), "zone": ZoneInfo("Europe/Berlin")}
# A wall time that happens twice (New York, fall back).
DST_FOLD = {"naive": datetime(2026, 11, 1, 1, 30), "zone": ZoneInfo("America/New_York")}


@given(naive=INSTANTS, zone=st.sampled_from(ZONES))
@example(**DST_GAP)
@example(**DST_FOLD)
def test_iso_times_round_trip(naive: datetime, zone: tzinfo) -> None:
    """An ISO time with its offset is the same instant after parsing, whatever zone is the default."""
    instant = naive.replace(tzinfo=zone)
    for text, default in ((instant.isoformat(), SHANGHAI), (instant.isoformat(sep=" "), UTC)):
        parsed = parse_time_spec(text, default).instant
        assert same_instant(instant, parsed)
        assert parsed is not None and instant.utcoffset() == parsed.utcoffset()


@given(naive=INSTANTS.map(lambda d: d.replace(microsecond=0)), zone=st.sampled_from(ZONES))
@example(**DST_GAP)
@example(**DST_FOLD)
def test_wire_time_round_trips(naive: datetime, zone: tzinfo) -> None:
    """wire_time's text read back in UTC+8 is the same instant (to the second)."""
    instant = naive.replace(tzinfo=zone)
    assert same_instant(instant, parse_time_spec(wire_time(instant), PLATFORM_TZ).instant)


@given(naive=INSTANTS.map(lambda d: d.replace(microsecond=0)), zone=st.sampled_from(ZONES))
@example(**DST_GAP)
@example(**DST_FOLD)
def test_naive_iso_times_are_read_in_the_given_zone(naive: datetime, zone: tzinfo) -> None:
    """An ISO time without an offset is read in the job's zone, not the machine's.

    A wall time in a gap or fold takes the offset in force before the change (PEP 495's
    fold=0), as the zone itself reports it.
    """
    spec = parse_time_spec(naive.isoformat(), zone)
    assert spec.instant is not None
    offset = zone.utcoffset(naive)
    assert offset is not None
    assert same_instant((naive - offset).replace(tzinfo=UTC), spec.instant)
    assert expected_wire(naive.replace(tzinfo=zone)) == wire_time(spec.instant)


def test_naive_examples() -> None:
    """2026-11-22 10:00 in Shanghai is 10:00 on the wire; in New York it is 23:00 the same day."""
    shanghai = parse_time_spec("2026-11-22T10:00:00", SHANGHAI).instant
    new_york = parse_time_spec("2026-11-22 10:00", ZoneInfo("America/New_York")).instant
    zulu = parse_time_spec("2026-11-22T02:00:00Z", ZoneInfo("America/New_York")).instant
    assert shanghai is not None and new_york is not None and zulu is not None
    assert "2026-11-22T10:00:00" == wire_time(shanghai)
    assert "2026-11-22T23:00:00" == wire_time(new_york)
    assert "2026-11-22T10:00:00" == wire_time(zulu)


# --- the wire format whatever the machine's zone -------------------------------------


@pytest.mark.parametrize("local", LOCAL_ZONES)
@given(naive=INSTANTS, zone=st.sampled_from(ZONES))
@example(**DST_GAP)
@example(**DST_FOLD)
def test_wire_time_is_utc_plus_8_whatever_the_local_zone(
    local: str, naive: datetime, zone: tzinfo
) -> None:
    """wire_time gives the instant in UTC+8 under TZ=UTC, America/New_York and Asia/Shanghai alike."""
    instant = naive.replace(tzinfo=zone)
    with local_zone(local):
        assert expected_wire(instant) == wire_time(instant)


@pytest.mark.parametrize("local", LOCAL_ZONES)
@given(hours=st.integers(min_value=1, max_value=24 * 366))
def test_relative_window_is_the_same_on_the_wire_whatever_the_local_zone(
    local: str, hours: int
) -> None:
    """+Nh from a start gives the same UTC+8 text on a UTC runner as on a Shanghai one."""
    start = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    with local_zone(local):
        window = resolve_window(TimeSpec("now"), parse_time_spec(f"+{hours}h", SHANGHAI), start)
        assert expected_wire(start + timedelta(hours=hours)) == wire_time(window.expired)


def test_local_zone_really_changes_the_process_zone() -> None:
    """The TZ switch used above does change what the process calls local time."""
    instant = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    with local_zone("America/New_York"):
        assert "07:00 EST" == instant.astimezone().strftime("%H:%M %Z")
        assert "2026-01-15 20:00:00 UTC+8 (2026-01-15 07:00:00 EST local)" == both_zones(instant)
    with local_zone("UTC"):
        assert "2026-01-15 20:00:00 UTC+8 (2026-01-15 12:00:00 UTC local)" == both_zones(instant)


# --- the window's order -------------------------------------------------------------

START = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 in UTC+8


def spec(text: str) -> TimeSpec:
    return parse_time_spec(text, SHANGHAI)


def test_window_now_sends_no_valid_time() -> None:
    """A window that starts now resolves to valid=None (the platform's own now)."""
    window = resolve_window(spec("now"), spec("+48h"), START)
    assert (None, "2026-11-24T10:00:00") == (window.valid, wire_time(window.expired))


@pytest.mark.parametrize(
    ("valid", "expired", "message"),
    [
        (
            "+2h",
            "+1h30m",
            "expired_time 2026-11-22T11:30:00 must be later than valid_time 2026-11-22T12:00:00 (UTC+8)",
        ),
        (
            "2026-11-22T12:00:00",
            "2026-11-22T12:00:00",
            "expired_time 2026-11-22T12:00:00 must be later than valid_time 2026-11-22T12:00:00 (UTC+8)",
        ),
        (
            "now",
            "2026-11-22T09:59:59",
            "expired_time 2026-11-22T09:59:59 (UTC+8) has already passed",
        ),
        (
            "now",
            "2026-11-22T02:00:00Z",
            "expired_time 2026-11-22T10:00:00 (UTC+8) has already passed",
        ),
        ("now", "now", "expired_time cannot be now: a command must stay valid for some time"),
    ],
)
def test_window_order(valid: str, expired: str, message: str) -> None:
    """expired_time must be later than valid_time and than now."""
    with pytest.raises(TimeSpecError) as caught:
        resolve_window(spec(valid), spec(expired), START)
    assert message == str(caught.value)


@given(
    valid=st.integers(min_value=1, max_value=10_000),
    expired=st.integers(min_value=1, max_value=10_000),
)
def test_window_order_property(valid: int, expired: int) -> None:
    """Two relative ends make a window exactly when expired comes after valid."""
    if expired > valid:
        window = resolve_window(spec(f"+{valid}m"), spec(f"+{expired}m"), START)
        assert (START + timedelta(minutes=valid), START + timedelta(minutes=expired)) == (
            window.valid,
            window.expired,
        )
    else:
        with pytest.raises(TimeSpecError):
            resolve_window(spec(f"+{valid}m"), spec(f"+{expired}m"), START)


def test_window_problems_in_the_job(workdir: Path) -> None:
    """check_job reports a window in the wrong order at the expired_time line, with both instants."""
    job = BASE_JOB.replace("  expired_time: +1h", "  valid_time: +2h\n  expired_time: +1h30m")
    path = write(workdir, "job.yaml", job)
    with pytest.raises(InputError) as caught:
        check_job(path, now=START)
    assert [
        "job.yaml:8: window.expired_time: expired_time 2026-11-22T11:30:00 must be later than valid_time 2026-11-22T12:00:00 (UTC+8)"
    ] == caught.value.lines()


def test_expired_in_the_past_in_the_job(workdir: Path) -> None:
    """An expired_time already past when the job is checked is an error."""
    job = BASE_JOB.replace("expired_time: +1h", 'expired_time: "2026-11-22T09:00:00"')
    path = write(workdir, "job.yaml", job)
    with pytest.raises(InputError) as caught:
        check_job(path, now=START)
    assert [
        "job.yaml:7: window.expired_time: expired_time 2026-11-22T09:00:00 (UTC+8) has already passed"
    ] == caught.value.lines()


def test_past_valid_time_is_dropped_with_a_warning(workdir: Path) -> None:
    """A valid_time already past is a warning: commands go without it (valid from the platform's now)."""
    job = BASE_JOB.replace(
        "  expired_time: +1h", "  valid_time: 2026-11-22 09:00:00\n  expired_time: +1h"
    )
    checked = check_job(write(workdir, "job.yaml", job), now=START)
    assert [
        "job.yaml:7: window.valid_time: warning: already passed; commands are sent without valid_time (valid from the platform's now)"
    ] == [p.render() for p in checked.problems.shown]
    [work] = list(checked.plan.devices(checked.problems))
    names = [name for name, _ in work.requests[0].query(checked.window, START)]
    assert ["imei", "obj_id", "expired_time"] == names


def test_resumed_run_counts_from_its_first_start(workdir: Path) -> None:
    """Relative times count from the run's first start, not from a later resume."""
    path = write(workdir, "job.yaml", BASE_JOB.replace("+1h", "+48h"))
    checked = check_job(path, now=START + timedelta(hours=5), start=START)
    assert "2026-11-24T10:00:00" == wire_time(checked.window.expired)


def test_timezone_names() -> None:
    """IANA names load; anything else is a TimeSpecError naming the default."""
    assert SHANGHAI == load_zone("Asia/Shanghai")
    for bad in ("Asia/Beijing", "CST", "../etc/passwd", ""):
        with pytest.raises(TimeSpecError):
            load_zone(bad)


def test_parse_duration() -> None:
    """Plain durations combine units; a huge one is an error, not an overflow."""
    assert timedelta(hours=1, minutes=30) == parse_duration("1h30m")
    for bad in ("+1h", "1.5h", "99999999999999999999w"):
        with pytest.raises(TimeSpecError):
            parse_duration(bad)
