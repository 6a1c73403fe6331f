"""IMEI rules: 15 ASCII digits, and the Luhn check digit."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dispatcher.imei import imei_problem, luhn_check_digit, luhn_problem
from tests.jobtools import FULLWIDTH_ZERO, other_digits

FOURTEEN = st.text(alphabet="0123456789", min_size=14, max_size=14)


def luhn_valid(number: str) -> bool:
    """The textbook Luhn test over a whole number, written independently of the module."""
    digits = [int(ch) for ch in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


@given(first14=FOURTEEN)
def test_fourteen_digits_and_their_check_digit_pass(first14: str) -> None:
    """Any 14 digits followed by their computed Luhn digit is a valid IMEI, without warning."""
    imei = first14 + str(luhn_check_digit(first14))
    assert luhn_valid(imei)
    assert (None, None) == (imei_problem(imei), luhn_problem(imei))


@given(first14=FOURTEEN, digit=st.sampled_from("0123456789"))
def test_another_check_digit_warns(first14: str, digit: str) -> None:
    """Any other 15th digit is still 15 digits, but the Luhn check names the right digit."""
    right = luhn_check_digit(first14)
    assume(int(digit) != right)
    imei = first14 + digit
    assert None is imei_problem(imei)
    assert (
        f'imei "{imei}": check digit should be {right} (Luhn); is the IMEI mistyped?'
        == luhn_problem(imei)
    )


@given(text=st.text(alphabet="0123456789", max_size=40).filter(lambda t: len(t) != 15))
def test_other_lengths_fail(text: str) -> None:
    """A run of ASCII digits of any length but 15 is refused."""
    expected = "imei is empty" if not text else f'imei "{text}": must be 15 digits'
    assert expected == imei_problem(text)


@given(text=st.text(min_size=15, max_size=15))
def test_fifteen_characters_pass_only_as_ascii_digits(text: str) -> None:
    """Fifteen characters are an IMEI only when each is an ASCII digit."""
    problem = imei_problem(text)
    assert (problem is None) == all(ch in "0123456789" for ch in text)
    # fifteen characters are never told to be fifteen digits: what is wrong is a character
    assert problem is None or "must be 15 digits" not in problem


@given(imei=FOURTEEN.map(lambda d: d + str(luhn_check_digit(d))))
def test_non_ascii_digits_are_named(imei: str) -> None:
    """A valid IMEI typed in full-width digits is refused with a message saying why."""
    wide = other_digits(imei, FULLWIDTH_ZERO)
    assert f'imei "{wide}": must be ASCII digits 0-9 (found other digits)' == imei_problem(wide)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("865820031234565", None),
        ("86582003123456", 'imei "86582003123456": must be 15 digits'),
        ("8658200312345650", 'imei "8658200312345650": must be 15 digits'),
        ("86582003123456a", 'imei "86582003123456a": must be digits only (found "a")'),
        ("86582003123457X", 'imei "86582003123457X": must be digits only (found "X")'),
        ("865 820031 234565", 'imei "865 820031 234565": must be digits only (found " ")'),
        ("-86582003123456", 'imei "-86582003123456": must be digits only (found "-")'),
        (
            "8.65820E+14",
            'imei "8.65820E+14": looks like a spreadsheet turned it into scientific notation; format the column as text and export again',
        ),
        (
            "8.6582003123457e14",
            'imei "8.6582003123457e14": looks like a spreadsheet turned it into scientific notation; format the column as text and export again',
        ),
        ("", "imei is empty"),
    ],
)
def test_imei_examples(text: str, expected: str | None) -> None:
    """What operators paste most often gets a message that says what went wrong."""
    assert expected == imei_problem(text)


def test_known_imei_check_digits() -> None:
    """Check digits of published example IMEIs."""
    assert 8 == luhn_check_digit("49015420323751")  # 490154203237518 is the textbook example
    assert 8 == luhn_check_digit("35345678901234")
