"""The readers of fields whose form the pages leave open: every form read, the rest None."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.answerforms import (
    answer_time,
    count,
    send_state,
    uuid_key,
    uuid_text,
    zone_written,
)

# 2017-09-08 16:55:14 in UTC+8 (the platform's zone)
MOMENT = datetime(2017, 9, 8, 8, 55, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, 3),
        ("3", 3),
        (" 12 ", 12),
        (3.0, 3),
        ("3.0", 3),
        ("-1", -1),
        (3.5, None),
        ("three", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        ([3], None),
        ("9" * 5000, None),  # more digits than Python reads as an int: not a count we can use
    ],
)
def test_a_count_is_read_as_a_number_or_text(value: object, number: int | None) -> None:
    assert number == count(value)


@pytest.mark.parametrize(
    "value",
    [
        "2017-09-08 16:55:14",  # the pages' form
        " 2017-09-08 16:55:14 ",
        "2017-09-08T16:55:14",
        "2017-09-08T16:55:14.000",
        "2017-09-08 16:55:14.000+08:00",
        "2017-09-08T08:55:14Z",
        "2017-09-08T10:55:14+02:00",
        1504860914,
        1504860914000,
        "1504860914000",
        1504860914.0,
    ],
)
def test_an_answer_time_is_read_in_every_form(value: object) -> None:
    assert MOMENT == answer_time(value)


def test_fractions_of_a_second_are_kept() -> None:
    assert MOMENT.replace(microsecond=250000) == answer_time("2017-09-08T16:55:14.250")


@pytest.mark.parametrize(
    "value",
    [
        "2017-9-8 16:55:14",  # a shape half-read would move the time
        "08/09/2017 16:55:14",
        "yesterday",
        "",
        None,
        True,
        12345,  # neither seconds nor milliseconds of this century
        10**16,
        float("inf"),
    ],
)
def test_a_time_that_cannot_be_read_with_certainty_is_none(value: object) -> None:
    assert answer_time(value) is None


def test_uuids_compare_without_case_dashes_or_padding() -> None:
    issued = "42742677-adc3-54ca-83a1-5aaaf71482f8"
    for form in (issued, issued.upper(), issued.replace("-", ""), issued + " ", f"{{{issued}}}"):
        assert uuid_key(issued) == uuid_key(form)
    assert uuid_key(issued) != uuid_key(issued.replace("8", "9"))
    assert uuid_key(" - ") is None
    assert uuid_key(None) is None
    assert "abc" == uuid_text(" abc ")
    assert uuid_text("  ") is None


@pytest.mark.parametrize(
    ("value", "state"),
    [
        (5, "success"),
        ("5", "success"),
        ("SUCCESS", "success"),
        ("cmd_success", "success"),
        ("Wait", "waiting"),
        ("canceled", "cancelled"),
        ("SENT", "sent"),
        ("time_out", "timeout"),
        (9, "code 9"),
        ("delivered?", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_a_send_status_is_read_as_a_code_or_a_name(value: object, state: str | None) -> None:
    assert state == send_state(value)


@pytest.mark.parametrize(
    ("value", "zoned"),
    [
        ("2017-09-08 16:55:14", False),
        ("2017-09-08T16:55:14.250", False),
        ("2017-09-08T08:55:14Z", True),
        ("2017-09-08 16:55:14+08:00", True),
        ("2017-09-08T16:55:14.250+0800", True),
        (1504860914000, True),
        ("1504860914", True),
        (None, False),
    ],
)
def test_a_time_says_its_instant_only_with_a_zone_or_as_a_unix_time(
    value: object, zoned: bool
) -> None:
    assert zoned is zone_written(value)
