"""Per-device bodies: filling the pre-encoded body equals encoding the filled-in body."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.fleets import Device
from dispatcher.imei import luhn_check_digit
from dispatcher.jobfile import Command, PlatformOptions
from dispatcher.template import Template


def _reference_luhn(first14: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(first14)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_luhn_table_matches_the_textbook_loop(first14: str) -> None:
    """The table-driven check digit is the textbook algorithm's."""
    assert _reference_luhn(first14) == luhn_check_digit(first14)


@given(
    value=st.text(),
    prefix=st.text().filter(lambda t: "{" not in t),
    other=st.text(),
)
def test_filled_template_equals_encoding_the_filled_body(
    value: str, prefix: str, other: str
) -> None:
    """Any variable text (quotes, backslashes, control characters, non-ASCII) lands JSON-escaped."""
    command = Command.model_validate(
        {"write": {"obj_id": 1, "obj_inst_id": 0, "mode": 1, "data": [
            {"res_id": 1, "val": prefix + "{v}"},
            {"res_id": 2, "val": "{w}-{v}"},
        ]}}
    )  # fmt: skip
    template = Template(0, command, PlatformOptions())
    device = Device("865820031234565", "f", {"v": value, "w": other}, "f.csv", 2)
    expected = {
        "data": [{"res_id": 1, "val": prefix + value}, {"res_id": 2, "val": f"{other}-{value}"}]
    }
    body = template.render(device)
    assert body is not None
    assert expected == json.loads(body)
    assert json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode() == body
