"""Fleets: CSV files as spreadsheets export them, IMEIs, duplicates, and the problem cap."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dispatcher.fleets import Device, iter_fleet
from dispatcher.jobfile import load_job
from dispatcher.problems import SHOWN_PER_FILE, Problems
from tests.jobtools import (
    ARABIC_INDIC_ZERO,
    BASE_JOB,
    FULLWIDTH_ZERO,
    IMEI_A,
    IMEI_B,
    IMEI_C,
    IMEI_D,
    other_digits,
    validate,
    write,
)

WIDE = other_digits(IMEI_A, FULLWIDTH_ZERO)
ARABIC = other_digits(IMEI_A, ARABIC_INDIC_ZERO)

CSV_JOB = """\
version: 1
name: t
fleets:
  - name: zone
    csv: zone.csv
window:
  expired_time: +1h
commands:
  - read: {obj_id: 3300}
"""

# (id, CSV bytes, expected problem lines) for CSV_JOB
BAD_CSVS: list[tuple[str, bytes, list[str]]] = [
    (
        "no-header",
        f"{IMEI_A},10.0.0.1\n{IMEI_B},10.0.0.2\n".encode(),
        [
            'zone.csv:1: the first row holds an IMEI, not column names; add a header row (such as "imei") above the devices'
        ],
    ),
    (
        "no-header-after-comments",
        f"# zone A\n\n{IMEI_A}\n".encode(),
        [
            'zone.csv:3: the first row holds an IMEI, not column names; add a header row (such as "imei") above the devices'
        ],
    ),
    (
        "empty-file",
        b"",
        ["zone.csv: no header row (the first row names the columns)"],
    ),
    (
        "only-comments",
        b"# nothing yet\r\n\r\n",
        ["zone.csv: no header row (the first row names the columns)"],
    ),
    (
        "no-imei-column",
        f"id,server_ip\n{IMEI_A},10.0.0.1\n".encode(),
        [
            'zone.csv:1: no "imei" column in the header (columns: id, server_ip); set imei_column in the job'
        ],
    ),
    (
        "column-twice",
        f"imei,ip,ip\n{IMEI_A},1,2\n".encode(),
        ['zone.csv:1: column "ip" appears twice in the header'],
    ),
    (
        "column-without-name",
        f"imei,,ip\n{IMEI_A},1,2\n".encode(),
        ["zone.csv:1: a column without a name in the header"],
    ),
    (
        "wrong-field-count",
        f"imei,ip\n{IMEI_A},1\n{IMEI_B},2,3\n{IMEI_C}\n".encode(),
        ["zone.csv:3: 3 fields, the header has 2", "zone.csv:4: 1 fields, the header has 2"],
    ),
    (
        "nul-byte",
        f"imei,ip\n{IMEI_A},1\n{IMEI_B},\x002\n{IMEI_C},3\n".encode(),
        ["zone.csv:3: binary data (NUL byte) in the file; is it really a CSV?"],
    ),
    (
        "binary-file",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        ["zone.csv:1: not UTF-8 text (save the file as UTF-8)"],
    ),
    (
        "field-over-the-csv-limit",
        f"imei,ip\n{IMEI_A},1\n{IMEI_B},{'x' * (csv.field_size_limit() + 1)}\n".encode(),
        [f"zone.csv:3: unreadable CSV: a field longer than {csv.field_size_limit()} characters"],
    ),
    (
        "quote-never-closed",
        f'imei,ip\n{IMEI_A},"1\n{IMEI_B},2\n'.encode(),
        ['zone.csv:2: unreadable CSV: a quoted field is never closed (a " without its pair)'],
    ),
    (
        "latin-1",
        f"imei,site\n{IMEI_A},Pudong\n{IMEI_B},Xuhui\n{IMEI_C},Caf\xe9\n".encode("latin-1"),
        ["zone.csv:4: not UTF-8 text (save the file as UTF-8)"],
    ),
    (
        "imei-too-short",
        b"imei\n86582003123456\n",
        ['zone.csv:2: imei "86582003123456": must be 15 digits'],
    ),
    (
        "imei-with-letters",
        b"imei\n86582003123456X\n",
        ['zone.csv:2: imei "86582003123456X": must be digits only (found "X")'],
    ),
    (
        "imei-empty",
        b"imei,ip\n,10.0.0.1\n",
        ["zone.csv:2: imei is empty"],
    ),
    (
        "imei-scientific",
        b"imei\n8.65820E+14\n",
        [
            'zone.csv:2: imei "8.65820E+14": looks like a spreadsheet turned it into scientific notation; format the column as text and export again'
        ],
    ),
    (
        "imei-fullwidth-digits",
        f"imei\n{WIDE}\n".encode(),
        [f'zone.csv:2: imei "{WIDE}": must be ASCII digits 0-9 (found other digits)'],
    ),
    (
        "imei-arabic-indic-digits",
        f"imei\n{ARABIC}\n".encode(),
        [f'zone.csv:2: imei "{ARABIC}": must be ASCII digits 0-9 (found other digits)'],
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [pytest.param(content, lines, id=name) for name, content, lines in BAD_CSVS],
)
def test_each_csv_rule_is_reported_with_its_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: list[str]
) -> None:
    """A CSV fleet breaking one rule exits 2 with exactly that message at the CSV's line."""
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", content)
    result = validate(capsys, "job.yaml")
    assert (2, "") == (result.code, result.out)
    assert expected == result.problems


def test_non_utf8_far_into_a_file_names_its_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad byte past the decoder's first block is reported at its own line, not the block's."""
    rows = "".join(f"{IMEI_A[:9]}{n:05d}{_luhn(f'{IMEI_A[:9]}{n:05d}')},{n}\n" for n in range(4998))
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", b"imei,n\n" + rows.encode() + b"\xff\xfe,x\n")
    result = validate(capsys, "job.yaml")
    assert ["zone.csv:5000: not UTF-8 text (save the file as UTF-8)"] == result.problems


def test_csv_as_windows_exports_it(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A BOM, CRLF line ends, blank lines, comments and padded cells are all read."""
    content = (
        "\ufeff# zone A meters, exported 2026-11-20\r\n"
        "\r\n"
        " imei , server_ip \r\n"
        f"{IMEI_A},10.0.0.1\r\n"
        "   \r\n"
        "# decommissioned below\r\n"
        f" {IMEI_B} ,10.0.0.2\r\n"
    ).encode()
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", content)
    result = validate(capsys, "job.yaml")
    assert (0, "") == (result.code, result.err)
    assert "devices:             2 (0 duplicates dropped)" in result.out


def test_csv_with_old_mac_line_ends(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV with CR-only line ends (Excel's "CSV (Macintosh)") is read row by row too."""
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", f"imei,ip\r{IMEI_A},1\r{IMEI_B},2\r86582003123,3\r".encode())
    result = validate(capsys, "job.yaml")
    assert ['zone.csv:4: imei "86582003123": must be 15 digits'] == result.problems


def test_devices_keep_the_csv_line(workdir: Path) -> None:
    """Each CSV device carries its variables and the physical line it came from."""
    write(workdir, "job.yaml", CSV_JOB)
    write(
        workdir,
        "zone.csv",
        f'# head\nimei,ip,note\n{IMEI_A},10.0.0.1,"two\nlines"\n\n{IMEI_B},10.0.0.2,\n'.encode(),
    )
    loaded = load_job(workdir / "job.yaml")
    problems = Problems()
    devices = list(
        iter_fleet(loaded.job.fleets[0], 0, loaded.path, loaded.doc, problems, strict=False)
    )
    assert [
        Device(IMEI_A, "zone", {"ip": "10.0.0.1", "note": "two\nlines"}, "zone.csv", 4, True),
        Device(IMEI_B, "zone", {"ip": "10.0.0.2", "note": ""}, "zone.csv", 6, True),
    ] == devices
    assert [] == problems.shown


def test_imei_column_and_delimiter(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """imei_column and delimiter read a semicolon export whose IMEI column has another name."""
    job = CSV_JOB.replace(
        "    csv: zone.csv", "    csv: zone.csv\n    imei_column: IMEI\n    delimiter: ';'"
    )
    write(workdir, "job.yaml", job)
    write(workdir, "zone.csv", f"IMEI;ip\n{IMEI_A};10.0.0.1\n{IMEI_B};10.0.0.2\n".encode())
    result = validate(capsys, "job.yaml")
    assert 0 == result.code
    assert "devices:             2 (0 duplicates dropped)" in result.out


def test_scientific_notation_with_a_decimal_comma(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A European spreadsheet's 8,65820E+14 is recognised as scientific notation too."""
    job = CSV_JOB.replace("    csv: zone.csv", "    csv: zone.csv\n    delimiter: ';'")
    write(workdir, "job.yaml", job)
    write(workdir, "zone.csv", b'imei;ip\n"8,65820E+14";1\n')
    result = validate(capsys, "job.yaml")
    assert [
        'zone.csv:2: imei "8,65820E+14": looks like a spreadsheet turned it into scientific notation; format the column as text and export again'
    ] == result.problems


def test_csv_not_found(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet naming a missing CSV is reported at the job's line, with the path as written."""
    write(workdir, "job.yaml", CSV_JOB)
    result = validate(capsys, "job.yaml")
    looked = (workdir / "zone.csv").resolve()
    assert [
        f'job.yaml:5: fleets[0].csv: fleet file "zone.csv" not found (looked for {looked};'
        " relative to the job file)"
    ] == result.problems


def test_csv_not_found_names_the_full_path_beside_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from elsewhere, the message shows where the file was looked for: beside the job."""
    write(tmp_path, "jobs/job.yaml", CSV_JOB.replace("csv: zone.csv", "csv: fleets/zone.csv"))
    write(tmp_path, "zone.csv", f"imei\n{IMEI_A}\n".encode())  # beside the caller: not used
    monkeypatch.chdir(tmp_path)
    result = validate(capsys, "jobs/job.yaml")
    looked = (tmp_path / "jobs" / "fleets" / "zone.csv").resolve()
    assert [
        f'jobs/job.yaml:5: fleets[0].csv: fleet file "fleets/zone.csv" not found (looked for {looked};'
        " relative to the job file)"
    ] == result.problems


def test_csv_path_is_relative_to_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fleet's csv path is read from the job file's folder, not the working directory."""
    write(tmp_path, "jobs/job.yaml", CSV_JOB.replace("csv: zone.csv", "csv: fleets/zone.csv"))
    write(tmp_path, "jobs/fleets/zone.csv", f"imei\n{IMEI_A}\n86582003123456\n".encode())
    monkeypatch.chdir(tmp_path)
    result = validate(capsys, "jobs/job.yaml")
    assert ['jobs/fleets/zone.csv:3: imei "86582003123456": must be 15 digits'] == result.problems


def test_inline_imeis_as_numbers_and_strings(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inline IMEIs may be YAML numbers or strings; bad ones are named as written, at their line."""
    job = BASE_JOB.replace(
        '    imeis: ["865820031234565"]',
        f'    imeis:\n      - {IMEI_A}\n      - "{IMEI_B}"\n      - 8.65820E+14\n      - 86582003123\n      - " {IMEI_C} "',
    )
    write(workdir, "job.yaml", job)
    result = validate(capsys, "job.yaml")
    assert [
        'job.yaml:8: fleets[0].imeis[2]: imei "8.65820E+14": looks like a spreadsheet turned it into scientific notation; format the column as text and export again',
        'job.yaml:9: fleets[0].imeis[3]: imei "86582003123": must be 15 digits',
    ] == result.problems


def test_inline_device_without_imei(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An inline device with no imei key is an error at that device's line."""
    job = BASE_JOB.replace(
        '    imeis: ["865820031234565"]',
        f'    devices:\n      - {{imei: "{IMEI_A}"}}\n      - {{ip: 10.0.0.1}}\n      - {{imei: 12345}}',
    )
    write(workdir, "job.yaml", job)
    result = validate(capsys, "job.yaml")
    assert [
        "job.yaml:7: fleets[0].devices[1]: device without an imei",
        'job.yaml:8: fleets[0].devices[2]: imei "12345": must be 15 digits',
    ] == result.problems


def test_wrong_check_digit_is_a_warning(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong Luhn check digit validates with a warning naming the expected digit."""
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", f"imei\n{IMEI_A}\n865820031234566\n".encode())
    result = validate(capsys, "job.yaml")
    assert 0 == result.code
    assert [
        'zone.csv:3: warning: imei "865820031234566": check digit should be 5 (Luhn); is the IMEI mistyped?'
    ] == result.problems
    assert "devices:             2 (0 duplicates dropped)" in result.out


def test_wrong_check_digit_with_strict_is_an_error(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --strict a wrong Luhn check digit is an error and nothing is sent."""
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", f"imei\n{IMEI_A}\n865820031234566\n".encode())
    result = validate(capsys, "job.yaml", "--strict")
    assert (2, "") == (result.code, result.out)
    assert [
        'zone.csv:3: imei "865820031234566": check digit should be 5 (Luhn); is the IMEI mistyped? (--strict)'
    ] == result.problems


def test_duplicates_within_and_across_fleets(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device listed twice is sent once; each repeat is a warning naming the first place, and counted."""
    job = CSV_JOB.replace(
        "    csv: zone.csv",
        f'    csv: zone.csv\n  - name: pilot\n    imeis: ["{IMEI_C}", "{IMEI_A}", "{IMEI_D}"]',
    )
    write(workdir, "job.yaml", job)
    write(workdir, "zone.csv", f"imei\n{IMEI_A}\n{IMEI_B}\n{IMEI_A}\n".encode())
    result = validate(capsys, "job.yaml")
    assert 0 == result.code
    assert [
        f'zone.csv:4: warning: imei "{IMEI_A}" already listed at zone.csv:2 (fleet zone); sent once',
        f'job.yaml:7: warning: imei "{IMEI_A}" already listed at zone.csv:2 (fleet zone); sent once',
    ] == result.problems
    table = [line.split() for line in result.out.splitlines()[1:4]]
    assert [
        ["fleet", "devices", "duplicates", "dropped"],
        ["zone", "2", "1"],
        ["pilot", "2", "1"],
    ] == table
    assert "devices:             4 (2 duplicates dropped)" in result.out
    assert "requests:            4\n" in result.out


def test_problems_are_capped_per_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file with many bad rows shows the first 50 errors and counts the rest."""
    rows = "".join(f"{n:014d}\n" for n in range(SHOWN_PER_FILE + 10))
    write(workdir, "job.yaml", CSV_JOB)
    write(workdir, "zone.csv", ("imei\n" + rows).encode())
    result = validate(capsys, "job.yaml")
    lines = result.err.splitlines()
    assert 'zone.csv:2: imei "00000000000000": must be 15 digits' == lines[0]
    assert 'zone.csv:51: imei "00000000000049": must be 15 digits' == lines[SHOWN_PER_FILE - 1]
    assert "zone.csv: ... and 10 more errors not shown" == lines[SHOWN_PER_FILE]
    assert SHOWN_PER_FILE + 2 == len(lines)


def test_warnings_are_capped_apart_from_errors(tmp_path: Path) -> None:
    """The cap counts a file's warnings and errors apart, so errors are never hidden by warnings."""
    problems = Problems()
    for n in range(SHOWN_PER_FILE + 5):
        problems.warning("a.csv", n + 2, None, "luhn")
    problems.error("a.csv", 999, None, "bad")
    assert SHOWN_PER_FILE + 1 == len(problems.shown)
    assert "a.csv:999: bad" == problems.shown[-1].render()
    assert ["a.csv: ... and 5 more warnings not shown"] == problems.notes()
    assert (1, SHOWN_PER_FILE + 5) == (problems.errors, problems.warnings)


def _luhn(first14: str) -> int:
    from dispatcher.imei import luhn_check_digit

    return luhn_check_digit(first14)
