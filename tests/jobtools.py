"""Helpers for the job-file tests: write a job and its fleets, run ``validate`` as a user does."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispatcher.cli import main

# IMEIs with a correct Luhn check digit.
IMEI_A = "865820031234565"
IMEI_B = "865820031234573"
IMEI_C = "865820031234581"
IMEI_D = "865820031234599"

# The smallest valid job; cases below change one thing in it. Lines are numbered
# so that expected messages can be read against it.
BASE_JOB = f"""\
version: 1
name: t
fleets:
  - name: a
    imeis: ["{IMEI_A}"]
window:
  expired_time: +1h
commands:
  - read: {{obj_id: 3300}}
"""


FULLWIDTH_ZERO = 0xFF10
ARABIC_INDIC_ZERO = 0x0660


def other_digits(digits: str, zero: int) -> str:
    """``digits`` written with another script's digits (built from code points, not pasted)."""
    return "".join(chr(zero + int(ch)) for ch in digits)


@dataclass(frozen=True)
class Result:
    """What one ``onenet-dispatch`` run returned and printed."""

    code: int
    out: str
    err: str

    @property
    def problems(self) -> list[str]:
        """The problem lines on stderr, without the closing summary."""
        return [line for line in self.err.splitlines() if not line.startswith("invalid: ")]

    @property
    def summary(self) -> str:
        """The last line on stderr."""
        return self.err.splitlines()[-1]


def write(directory: Path, name: str, content: str | bytes) -> Path:
    """Write ``content`` (text is dedented, bytes are written as they are) to ``directory/name``."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(textwrap.dedent(content).encode("utf-8"))
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``onenet-dispatch validate ARGS`` in-process and capture what it printed."""
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
