"""Per-device rules: variables filled in, Opaque values and the 2 KiB body checked for every device."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.check import check_job
from dispatcher.jobfile import MAX_BODY_BYTES
from dispatcher.problems import Problems
from tests.jobtools import IMEI_A, IMEI_B, IMEI_C, validate, write

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

# A write whose second value is filled in per device.
VAR_JOB = """\
version: 1
name: t
fleets:
  - name: zone
    csv: zone.csv
window:
  expired_time: +1h
commands:
  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1,
            data: [{res_id: 5700, val: 60}, {res_id: 5750, val: "{server_ip}"}]}
"""
WHERE = "commands[0].write.data[1].val"


def run(
    workdir: Path, capsys: pytest.CaptureFixture[str], job: str, csv: str | None = None
) -> tuple[int, list[str]]:
    write(workdir, "job.yaml", job)
    if csv is not None:
        write(workdir, "zone.csv", csv.encode())
    result = validate(capsys, "job.yaml")
    return result.code, result.problems


def bodies(path: Path) -> dict[str, bytes | None]:
    """The first request's body for every device of a valid job, by IMEI."""
    checked = check_job(path, now=NOW)
    return {work.device.imei: work.requests[0].body for work in checked.plan.devices(Problems())}


def test_missing_csv_column_is_reported_once(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A variable no CSV column provides is one problem at the fleet's csv line, not one per row."""
    csv = f"imei,ip\n{IMEI_A},1\n{IMEI_B},2\n{IMEI_C},3\n"
    assert (
        2,
        [
            f'job.yaml:5: fleets[0].csv: "zone.csv" has no column "server_ip" (used in {WHERE})',
        ],
    ) == run(workdir, capsys, VAR_JOB, csv)


def test_empty_csv_cell_names_the_row(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty cell for a used variable is an error at that row; the other rows are fine."""
    csv = f"imei,server_ip\n{IMEI_A},10.0.0.1\n{IMEI_B},\n{IMEI_C},10.0.0.3\n"
    assert (
        2,
        [f'zone.csv:3: {WHERE}: device {IMEI_B}: variable "server_ip" is empty'],
    ) == run(workdir, capsys, VAR_JOB, csv)


def test_inline_device_without_the_variable(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inline device lacking a used variable is an error at that device's line."""
    job = VAR_JOB.replace(
        "    csv: zone.csv",
        f'    devices:\n      - {{imei: "{IMEI_A}", server_ip: 10.0.0.1}}\n      - {{imei: "{IMEI_B}", serverip: 10.0.0.2}}',
    )
    assert (
        2,
        [f'job.yaml:7: {WHERE}: device {IMEI_B} has no variable "server_ip"'],
    ) == run(workdir, capsys, job)


def test_bare_imeis_need_fleet_variables(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bare IMEI list cannot fill variables unless the fleet's variables give them."""
    job = VAR_JOB.replace("    csv: zone.csv", f'    imeis: ["{IMEI_A}", "{IMEI_B}"]')
    assert (
        2,
        [
            'job.yaml:4: fleets[0]: fleet "zone" lists bare IMEIs, but the commands use variables '
            "{server_ip}; give them in the fleet's variables, or use devices or csv"
        ],
    ) == run(workdir, capsys, job)


def test_fleet_variables_fill_bare_imeis(workdir: Path) -> None:
    """A fleet's variables fill the placeholders of its bare IMEIs."""
    job = VAR_JOB.replace(
        "    csv: zone.csv",
        f'    imeis: ["{IMEI_A}"]\n    variables: {{server_ip: 10.0.0.9}}',
    )
    path = write(workdir, "job.yaml", job)
    expected = b'{"data":[{"res_id":5700,"val":60},{"res_id":5750,"val":"10.0.0.9"}]}'
    assert {IMEI_A: expected} == bodies(path)


def test_device_values_win_over_fleet_variables(workdir: Path) -> None:
    """A device's own value (CSV cell or inline key) wins over the fleet's variables."""
    job = VAR_JOB.replace(
        "    csv: zone.csv",
        "    csv: zone.csv\n    variables: {server_ip: 10.0.0.9, spare: x}",
    )
    path = write(workdir, "job.yaml", job)
    write(workdir, "zone.csv", f"imei,server_ip\n{IMEI_A},10.0.0.1\n".encode())
    assert {IMEI_A: b'{"data":[{"res_id":5700,"val":60},{"res_id":5750,"val":"10.0.0.1"}]}'} == (
        bodies(path)
    )


def test_placeholders_are_filled_as_text_in_write_strings_only(workdir: Path) -> None:
    """{name} is replaced inside string values only, always as text, and numbers stay numbers."""
    job = """\
    version: 1
    name: t
    fleets:
      - name: lab
        devices:
          - {imei: "IMEI", interval: 60, site: "Pudong {east}"}
    window:
      expired_time: +1h
    commands:
      - write: {obj_id: 3300, obj_inst_id: 0, mode: 2,
                data: [{res_id: 1, val: "{interval}"}, {res_id: 2, val: 60},
                       {res_id: 3, val: "site={site}; id={interval}{interval}"},
                       {res_id: 4, val: true}, {res_id: 5, val: 1.5}]}
      - read: {obj_id: 3300, res_id: 1}
    """.replace("IMEI", IMEI_A)
    path = write(workdir, "job.yaml", job)
    checked = check_job(path, now=NOW)
    [work] = list(checked.plan.devices(Problems()))
    write_req, read_req = work.requests
    assert [
        {"res_id": 1, "val": "60"},
        {"res_id": 2, "val": 60},
        {"res_id": 3, "val": "site=Pudong {east}; id=6060"},
        {"res_id": 4, "val": True},
        {"res_id": 5, "val": 1.5},
    ] == json.loads(write_req.body or b"")["data"]
    assert None is read_req.body
    assert (("imei", IMEI_A), ("obj_id", "3300"), ("res_id", "1")) == read_req.head


def test_opaque_checked_after_filling_in(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An Opaque value built from a variable must be even-length hex for every device."""
    job = VAR_JOB.replace(
        '{res_id: 5750, val: "{server_ip}"}', '{res_id: 5750, type: 1, val: "0A{key}"}'
    )
    csv = f"imei,key\n{IMEI_A},FF00\n{IMEI_B},ABC\n{IMEI_C},zz\n"
    assert (
        2,
        [
            f'zone.csv:3: {WHERE}: device {IMEI_B}: type 1 (Opaque) needs an even-length hex string, got "0AABC"',
            f'zone.csv:4: {WHERE}: device {IMEI_C}: type 1 (Opaque) needs an even-length hex string, got "0Azz"',
        ],
    ) == run(workdir, capsys, job, csv)


def _body_len(value: str) -> int:
    body = {"data": [{"res_id": 5700, "val": 60}, {"res_id": 5750, "val": value}]}
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())


def test_body_limit_is_checked_per_device(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the device whose filled-in body passes 2048 bytes is refused; 2048 exactly is fine."""
    fits = "x" * (MAX_BODY_BYTES - _body_len(""))
    over = fits + "x"
    csv = f"imei,server_ip\n{IMEI_A},{fits}\n{IMEI_B},{over}\n{IMEI_C},10.0.0.1\n"
    assert (MAX_BODY_BYTES, MAX_BODY_BYTES + 1) == (_body_len(fits), _body_len(over))
    assert (
        2,
        [
            f"zone.csv:3: commands[0].write.data: body is 2049 bytes for device {IMEI_B}; the platform takes at most 2048"
        ],
    ) == run(workdir, capsys, VAR_JOB, csv)


def test_body_limit_counts_utf8_bytes(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 2 KiB are bytes of UTF-8, not characters: Chinese text fills it three times faster."""
    value = "水" * ((MAX_BODY_BYTES - _body_len("")) // 3 + 1)
    assert len(value) < MAX_BODY_BYTES - _body_len("") < _body_len(value)
    csv = f"imei,server_ip\n{IMEI_A},{value}\n"
    code, problems = run(workdir, capsys, VAR_JOB, csv)
    assert (2, 1) == (code, len(problems))
    assert problems[0].startswith(
        f"zone.csv:2: commands[0].write.data: body is {_body_len(value)} bytes"
    )


def test_a_fixed_body_over_the_limit_is_reported_once(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A body without variables is too large for every device alike: one problem, at the command."""
    job = VAR_JOB.replace('"{server_ip}"', '"' + "x" * MAX_BODY_BYTES + '"')
    csv = f"imei\n{IMEI_A}\n{IMEI_B}\n{IMEI_C}\n"
    size = _body_len("x" * MAX_BODY_BYTES)
    assert (
        2,
        [
            f"job.yaml:10: commands[0].write.data: body is {size} bytes; the platform takes at most 2048"
        ],
    ) == run(workdir, capsys, job, csv)


def test_plan_counts_devices_and_requests(workdir: Path) -> None:
    """The checked plan counts devices once and requests as devices times commands."""
    job = VAR_JOB + "  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n"
    path = write(workdir, "job.yaml", job)
    write(workdir, "zone.csv", f"imei,server_ip\n{IMEI_A},1\n{IMEI_B},2\n{IMEI_A},1\n".encode())
    checked = check_job(path, now=NOW)
    assert (2, 1, 2, 4) == (
        checked.stats.devices,
        checked.stats.duplicates,
        checked.plan.commands_per_device,
        checked.total_requests,
    )
