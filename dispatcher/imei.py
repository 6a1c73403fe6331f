"""IMEI rules: 15 ASCII digits, and the Luhn check digit (a warning unless --strict)."""

from __future__ import annotations

import re
from pathlib import Path

from dispatcher.errors import InputError
from dispatcher.problems import Problem

_DIGITS15 = re.compile(r"[0-9]{15}", re.ASCII)
# What a spreadsheet makes of a 15-digit number: 8.65820E+14.
_SCIENTIFIC = re.compile(r"[0-9](?:[.,][0-9]+)?[eE]\+?[0-9]+")


def imei_problem(imei: str) -> str | None:
    """Why ``imei`` is not a valid IMEI, or None when it is 15 ASCII digits."""
    if _DIGITS15.fullmatch(imei):
        return None
    if _SCIENTIFIC.fullmatch(imei):
        return (
            f'imei "{imei}": looks like a spreadsheet turned it into scientific notation; '
            "format the column as text and export again"
        )
    if any(ch.isdigit() and not ch.isascii() for ch in imei):
        return f'imei "{imei}": must be ASCII digits 0-9 (found other digits)'
    if not imei:
        return "imei is empty"
    other = next((ch for ch in imei if ch not in "0123456789"), None)
    if other is not None:
        # "must be 15 digits" would send the reader counting characters that are 15 already
        return f'imei "{imei}": must be digits only (found "{other}")'
    return f'imei "{imei}": must be 15 digits'


# A digit's byte to the digit doubled, its digits summed (Luhn's step), as a byte value.
_DOUBLED = bytes.maketrans(b"0123456789", bytes(2 * d if d < 5 else 2 * d - 9 for d in range(10)))


def luhn_check_digit(first14: str) -> int:
    """The Luhn check digit for the first 14 digits of an IMEI."""
    # Checked once per device of every fleet: the digits doubled by one table lookup
    # (bytes.translate) and summed in C, no Python step per digit.
    digits = first14.encode("ascii")
    doubled = digits[-1::-2]
    plain = digits[-2::-2]
    total = sum(doubled.translate(_DOUBLED)) + sum(plain) - 48 * len(plain)
    return (10 - total % 10) % 10


def luhn_problem(imei: str) -> str | None:
    """A message when the 15th digit is not the Luhn check digit of the first 14."""
    expected = luhn_check_digit(imei[:14])
    if ord(imei[14]) - 48 == expected:
        return None
    return f'imei "{imei}": check digit should be {expected} (Luhn); is the IMEI mistyped?'


def read_imei_file(path: Path) -> frozenset[str]:
    """IMEIs to target, one per line (blank lines and # comments skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    found: set[str] = set()
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        problem = imei_problem(value)
        if problem is not None:
            problems.append(Problem(str(path), number, None, problem))
        found.add(value)
    if problems:
        raise InputError(problems)
    return frozenset(found)
