"""The job file's rules: one bad file per rule, with the exact message and line it gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from dispatcher.errors import InputError
from dispatcher.jobfile import (
    MAX_COMMANDS_PER_DEVICE,
    Command,
    ExecuteCommand,
    FleetSpec,
    Job,
    PlatformOptions,
    RateSpec,
    ReadCommand,
    WindowSpec,
    WriteCommand,
    WriteItem,
    load_job,
)
from dispatcher.rolloutspec import AbortSpec, DispatchWindowSpec, RampSpec, RolloutSpec
from tests.jobtools import BASE_JOB, IMEI_A, IMEI_B, validate, write

# (id, job file, expected problem lines): each job breaks one rule of the schema.
SCHEMA_CASES: list[tuple[str, str, list[str]]] = [
    (
        "required-top-level-keys",
        f"""\
        version: 1
        fleets:
          - name: a
            imeis: ["{IMEI_A}"]
        """,
        [
            "job.yaml:1: name: required key missing",
            "job.yaml:1: window: required key missing",
            "job.yaml:1: commands: required key missing",
        ],
    ),
    (
        "required-command-keys",
        f"""\
        version: 1
        name: t
        fleets:
          - name: a
            imeis: ["{IMEI_A}"]
        window:
          expired_time: +1h
        commands:
          - write: {{obj_id: 3300, obj_inst_id: 0}}
          - read: {{res_id: 5700}}
          - write: {{obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{{res_id: 5700}}]}}
        """,
        [
            "job.yaml:9: commands[0].write.mode: required key missing",
            "job.yaml:9: commands[0].write.data: required key missing",
            "job.yaml:10: commands[1].read.obj_id: required key missing",
            "job.yaml:11: commands[2].write.data[0].val: required key missing",
        ],
    ),
    (
        "required-window-expired-time",
        BASE_JOB.replace("  expired_time: +1h", "  valid_time: now"),
        ["job.yaml:6: window.expired_time: required key missing"],
    ),
    (
        "version",
        BASE_JOB.replace("version: 1", "version: 2"),
        ["job.yaml:1: version: must be 1, got 2"],
    ),
    (
        "unknown-key-did-you-mean",
        BASE_JOB + "rate: {per_secnd: 10}\n",
        ['job.yaml:10: rate.per_secnd: unknown key "per_secnd" (did you mean "per_second"?)'],
    ),
    (
        "unknown-key-top-level",
        BASE_JOB + "descripton: zone A\n",
        ['job.yaml:10: descripton: unknown key "descripton" (did you mean "description"?)'],
    ),
    (
        "unknown-key-in-fleet",
        BASE_JOB.replace(
            '    imeis: ["865820031234565"]', '    imeis: ["865820031234565"]\n    imei_colum: id'
        ),
        [
            'job.yaml:6: fleets[0].imei_colum: unknown key "imei_colum" (did you mean "imei_column"?)'
        ],
    ),
    (
        "unknown-key-in-command",
        BASE_JOB.replace("{obj_id: 3300}", "{obj_id: 3300, mdoe: 1}"),
        [
            'job.yaml:9: commands[0].read.mdoe: unknown key "mdoe"; expected one of: '
            "obj_id, obj_inst_id, res_id, retry, timeout, trigger_msg"
        ],
    ),
    (
        "unknown-command",
        BASE_JOB.replace("  - read: {obj_id: 3300}", "  - wirte: {obj_id: 3300}"),
        ['job.yaml:9: commands[0].wirte: unknown key "wirte" (did you mean "write"?)'],
    ),
    (
        "job-name-pattern",
        BASE_JOB.replace("name: t", "name: Zone A"),
        ['job.yaml:2: name: must use only a-z, 0-9, ".", "_" and "-", got "Zone A"'],
    ),
    (
        "fleet-name-pattern",
        BASE_JOB.replace("  - name: a", "  - name: zone/a"),
        ['job.yaml:4: fleets[0].name: must use only a-z, 0-9, ".", "_" and "-", got "zone/a"'],
    ),
    (
        "fleet-two-sources",
        BASE_JOB.replace(
            '    imeis: ["865820031234565"]', '    imeis: ["865820031234565"]\n    csv: a.csv'
        ),
        ["job.yaml:4: fleets[0]: give exactly one of imeis, devices or csv"],
    ),
    (
        "fleet-no-source",
        BASE_JOB.replace('    imeis: ["865820031234565"]\n', ""),
        ["job.yaml:4: fleets[0]: give exactly one of imeis, devices or csv"],
    ),
    (
        "fleet-name-twice",
        BASE_JOB.replace(
            '    imeis: ["865820031234565"]',
            f'    imeis: ["{IMEI_A}"]\n  - name: b\n    imeis: ["{IMEI_B}"]\n  - name: a\n    imeis: []',
        ),
        ['job.yaml:8: fleets[2].name: fleet name "a" used twice'],
    ),
    (
        "fleets-empty",
        BASE_JOB.replace('  - name: a\n    imeis: ["865820031234565"]\n', "").replace(
            "fleets:", "fleets: []"
        ),
        ["job.yaml:3: fleets: must not be empty"],
    ),
    (
        "platform-ranges",
        BASE_JOB + "platform: {retry: 11, timeout: 4, trigger_msg: 0}\n",
        [
            "job.yaml:10: platform.retry: must be 0..10, got 11",
            "job.yaml:10: platform.timeout: must be 5..40, got 4",
            "job.yaml:10: platform.trigger_msg: must be 1..7, got 0",
        ],
    ),
    (
        "platform-ranges-high-and-low",
        BASE_JOB + "platform:\n  retry: -1\n  timeout: 41\n  trigger_msg: 8\n",
        [
            "job.yaml:11: platform.retry: must be 0..10, got -1",
            "job.yaml:12: platform.timeout: must be 5..40, got 41",
            "job.yaml:13: platform.trigger_msg: must be 1..7, got 8",
        ],
    ),
    (
        "command-ranges",
        BASE_JOB.replace(
            "{obj_id: 3300}", "{obj_id: 3300, retry: 20, timeout: 60, trigger_msg: 9}"
        ),
        [
            "job.yaml:9: commands[0].read.retry: must be 0..10, got 20",
            "job.yaml:9: commands[0].read.timeout: must be 5..40, got 60",
            "job.yaml:9: commands[0].read.trigger_msg: must be 1..7, got 9",
        ],
    ),
    (
        "range-not-an-integer",
        BASE_JOB + 'platform: {retry: "3", timeout: 2.5}\n',
        [
            "job.yaml:10: platform.retry: must be an integer, got '3'",
            "job.yaml:10: platform.timeout: must be an integer, got 2.5",
        ],
    ),
    (
        "ids-not-negative",
        BASE_JOB.replace("{obj_id: 3300}", "{obj_id: -1, obj_inst_id: 0, res_id: -5}"),
        [
            "job.yaml:9: commands[0].read.obj_id: must be 0 or more, got -1",
            "job.yaml:9: commands[0].read.res_id: must be 0 or more, got -5",
        ],
    ),
    (
        "write-mode",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 3, data: [{res_id: 1, val: 1}]}",
        ),
        ["job.yaml:9: commands[0].write.mode: must be 1 or 2, got 3"],
    ),
    (
        "write-mode-as-text",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            '  - write: {obj_id: 3300, obj_inst_id: 0, mode: "1", data: [{res_id: 1, val: 1}]}',
        ),
        ["job.yaml:9: commands[0].write.mode: must be an integer, got '1'"],
    ),
    (
        "write-type",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write:\n      obj_id: 3300\n      obj_inst_id: 0\n      mode: 1\n"
            "      data:\n        - {res_id: 1, type: 3, val: 1}",
        ),
        ["job.yaml:14: commands[0].write.data[0].type: must be 1 or 2, got 3"],
    ),
    (
        "opaque-odd-length",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            '  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, type: 1, val: "ABC"}]}',
        ),
        [
            'job.yaml:9: commands[0].write.data[0].val: type 1 (Opaque) needs an even-length hex string, got "ABC"'
        ],
    ),
    (
        "opaque-not-hex",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            '  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, type: 1, val: "0x1A"}]}',
        ),
        [
            'job.yaml:9: commands[0].write.data[0].val: type 1 (Opaque) needs an even-length hex string, got "0x1A"'
        ],
    ),
    (
        "opaque-not-text",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, type: 1, val: 1234}]}",
        ),
        ["job.yaml:9: commands[0].write.data[0].val: type 1 (Opaque) needs a hex string"],
    ),
    (
        "time-as-text",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            '  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, type: 2, val: "1700000000"}]}',
        ),
        [
            "job.yaml:9: commands[0].write.data[0].val: type 2 (Time) needs a number (Unix seconds), got '1700000000'"
        ],
    ),
    (
        "time-as-boolean",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, type: 2, val: true}]}",
        ),
        [
            "job.yaml:9: commands[0].write.data[0].val: type 2 (Time) needs a number (Unix seconds), got True"
        ],
    ),
    (
        "value-null",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, val: null}]}",
        ),
        ["job.yaml:9: commands[0].write.data[0].val: must not be null"],
    ),
    (
        "value-a-list",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, val: [1, 2]}]}",
        ),
        ["job.yaml:9: commands[0].write.data[0].val: must be a boolean, string, integer or float"],
    ),
    (
        "value-not-a-number",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, val: .nan}]}",
        ),
        ["job.yaml:9: commands[0].write.data[0].val: must be a finite number, got nan"],
    ),
    (
        "write-data-empty",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: []}",
        ),
        ["job.yaml:9: commands[0].write.data: must not be empty"],
    ),
    (
        "command-write-and-read",
        BASE_JOB.replace(
            "  - read: {obj_id: 3300}",
            "  - read: {obj_id: 3300}\n    write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 1, val: 1}]}",
        ),
        ["job.yaml:9: commands[0]: give exactly one of write, read or execute"],
    ),
    (
        "commands-empty",
        BASE_JOB.replace("commands:\n  - read: {obj_id: 3300}\n", "commands: []\n"),
        ["job.yaml:8: commands: must not be empty"],
    ),
    (
        "more-than-ten-commands",
        BASE_JOB + "  - read: {obj_id: 3300}\n" * MAX_COMMANDS_PER_DEVICE,
        [
            "job.yaml:8: commands: 11 commands per device; the platform holds at most 10 cached commands per device"
        ],
    ),
    (
        "rate-zero",
        BASE_JOB + "rate: {per_second: 0}\n",
        ["job.yaml:10: rate.per_second: must be more than 0 and at most 1000, got 0"],
    ),
    (
        "rate-too-high",
        BASE_JOB + "rate: {per_second: 1000.5}\n",
        ["job.yaml:10: rate.per_second: must be more than 0 and at most 1000, got 1000.5"],
    ),
    (
        "rate-as-text",
        BASE_JOB + 'rate: {per_second: "50"}\n',
        ["job.yaml:10: rate.per_second: must be a number, got '50'"],
    ),
    (
        "concurrency-range",
        BASE_JOB + "rate:\n  concurrency: 0\n",
        ["job.yaml:11: rate.concurrency: must be 1..256, got 0"],
    ),
    (
        "concurrency-too-high",
        BASE_JOB + "rate:\n  concurrency: 257\n",
        ["job.yaml:11: rate.concurrency: must be 1..256, got 257"],
    ),
    (
        "delimiter-one-character",
        BASE_JOB.replace('    imeis: ["865820031234565"]', "    csv: a.csv\n    delimiter: ';;'"),
        ["job.yaml:6: fleets[0].delimiter: must be exactly one character, got ';;'"],
    ),
    (
        "device-variable-a-list",
        BASE_JOB.replace(
            '    imeis: ["865820031234565"]',
            f'    devices:\n      - {{imei: "{IMEI_A}", ports: [1, 2]}}',
        ),
        ["job.yaml:6: fleets[0].devices[0].ports: must be text, a number or a boolean, got a list"],
    ),
    (
        "fleet-variable-null",
        BASE_JOB.replace(
            '    imeis: ["865820031234565"]',
            '    imeis: ["865820031234565"]\n    variables: {server_ip: }',
        ),
        ["job.yaml:6: fleets[0].variables.server_ip: needs a value: text, a number or a boolean"],
    ),
    (
        "window-bad-relative",
        BASE_JOB.replace("expired_time: +1h", "expired_time: +1 hour"),
        [
            'job.yaml:7: window.expired_time: "+1 hour": relative times are written +30m, +2h, +1d or +1d12h (units s m h d w)'
        ],
    ),
    (
        "window-bad-iso",
        BASE_JOB.replace("expired_time: +1h", "expired_time: next tuesday"),
        [
            'job.yaml:7: window.expired_time: "next tuesday": expected now, +30m / +2h / +1d, or an ISO time such as 2026-11-22T10:00:00'
        ],
    ),
    (
        "window-relative-zero",
        BASE_JOB.replace("expired_time: +1h", "expired_time: +0m"),
        ['job.yaml:7: window.expired_time: "+0m": a relative time must be later than now'],
    ),
    (
        "window-relative-too-far",
        BASE_JOB.replace("expired_time: +1h", "expired_time: +53w"),
        ['job.yaml:7: window.expired_time: "+53w": more than 366 days ahead'],
    ),
    (
        "window-relative-overflow",
        BASE_JOB.replace("expired_time: +1h", "expired_time: +99999999999999999999d"),
        ['job.yaml:7: window.expired_time: "+99999999999999999999d": more than 366 days ahead'],
    ),
    (
        "window-iso-out-of-range",
        BASE_JOB.replace("expired_time: +1h", 'expired_time: "9999-12-31T23:59:59-12:00"'),
        ['job.yaml:7: window.expired_time: "9999-12-31T23:59:59-12:00": out of range'],
    ),
    (
        "window-unknown-zone",
        BASE_JOB.replace("expired_time: +1h", "expired_time: +1h\n  timezone: Asia/Beijing"),
        [
            'job.yaml:8: window.timezone: unknown time zone "Asia/Beijing" (use an IANA name such as Asia/Shanghai)'
        ],
    ),
    (
        "window-expired-before-valid",
        BASE_JOB.replace("expired_time: +1h", "valid_time: +2h\n  expired_time: +1h30m"),
        [],  # the instants depend on the clock: checked by a pattern below
    ),
    (
        "not-a-mapping",
        "- version: 1\n",
        ["job.yaml:1: a job file is a mapping (version, name, fleets, ...)"],
    ),
]


@pytest.mark.parametrize(
    ("job", "expected"),
    [pytest.param(text, lines, id=name) for name, text, lines in SCHEMA_CASES if lines],
)
def test_each_rule_is_reported_with_its_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], job: str, expected: list[str]
) -> None:
    """A job breaking one rule exits 2, prints exactly that rule's message at its line, and sends nothing."""
    write(workdir, "job.yaml", job)
    result = validate(capsys, "job.yaml")
    assert (2, "") == (result.code, result.out)
    assert expected == result.problems
    assert f"invalid: {len(expected)} problem(s); nothing was sent" == result.summary


def test_expired_before_valid_names_both_instants(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired_time earlier than valid_time is an error on the expired_time line naming both."""
    job = dict((name, text) for name, text, _ in SCHEMA_CASES)["window-expired-before-valid"]
    write(workdir, "job.yaml", job)
    result = validate(capsys, "job.yaml")
    assert 2 == result.code
    [line] = result.problems
    assert line.startswith("job.yaml:8: window.expired_time: expired_time 20")
    assert line.endswith("(UTC+8)")
    assert "must be later than valid_time" in line


def test_the_range_boundaries_are_accepted(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ends of every range are valid values."""
    job = BASE_JOB.replace("  - read: {obj_id: 3300}\n", "") + (
        "  - read: {obj_id: 0, retry: 0, timeout: 5, trigger_msg: 1}\n"
        "  - read: {obj_id: 0, retry: 10, timeout: 40, trigger_msg: 7}\n"
        "rate: {per_second: 0.5, concurrency: 256}\n"
    )
    write(workdir, "job.yaml", job)
    assert 0 == validate(capsys, "job.yaml").code


def test_ten_commands_are_allowed(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exactly ten commands per device is the platform's limit, not over it."""
    write(workdir, "job.yaml", BASE_JOB + "  - read: {obj_id: 3300}\n" * 9)
    result = validate(capsys, "job.yaml")
    assert 0 == result.code
    assert "commands per device: 10 (read," in result.out
    assert "requests:            10\n" in result.out


def test_rate_above_the_platform_limit_is_a_warning(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rate over the platform's public 300/s validates, with a warning at its line."""
    write(workdir, "job.yaml", BASE_JOB + "rate: {per_second: 500}\n")
    result = validate(capsys, "job.yaml")
    assert 0 == result.code
    assert [
        "job.yaml:10: rate.per_second: warning: 500/s is above the platform's public limit of 300 calls/s"
    ] == result.problems


def test_every_schema_problem_is_reported_in_one_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Problems in different parts of the job are all reported, in file order."""
    job = BASE_JOB.replace("name: t", "name: T").replace(
        "{obj_id: 3300}", "{obj_id: 3300, retry: 99}"
    ) + ("rate: {per_second: 0}\n")
    write(workdir, "job.yaml", job)
    result = validate(capsys, "job.yaml")
    assert [
        'job.yaml:2: name: must use only a-z, 0-9, ".", "_" and "-", got "T"',
        "job.yaml:9: commands[0].read.retry: must be 0..10, got 99",
        "job.yaml:10: rate.per_second: must be more than 0 and at most 1000, got 0",
    ] == result.problems


def test_load_job_reads_defaults(tmp_path: Path) -> None:
    """Keys left out take their documented defaults."""
    loaded = load_job(write(tmp_path, "job.yaml", BASE_JOB))
    job = loaded.job
    assert ("now", "Asia/Shanghai") == (job.window.valid_time, job.window.timezone)
    assert (50.0, 16) == (job.rate.per_second, job.rate.concurrency)
    assert (None, None, None) == (
        job.platform.retry,
        job.platform.timeout,
        job.platform.trigger_msg,
    )
    fleet = job.fleets[0]
    assert ("imei", ",", {}) == (fleet.imei_column, fleet.delimiter, fleet.variables)


def test_load_job_keeps_numbers_as_written(tmp_path: Path) -> None:
    """IMEIs and variables written as YAML numbers keep their digits as text (no octal, no float)."""
    job = BASE_JOB.replace(
        '    imeis: ["865820031234565"]',
        f"    imeis: [{IMEI_A}]\n    variables: {{port: 0123, ratio: 1.50}}",
    )
    fleet = load_job(write(tmp_path, "job.yaml", job)).job.fleets[0]
    assert [IMEI_A] == fleet.imeis
    assert {"port": "0123", "ratio": "1.50"} == fleet.variables


def test_load_job_raises_input_error_with_every_problem(tmp_path: Path) -> None:
    """The library raises one InputError carrying every problem of the schema."""
    path = write(tmp_path, "job.yaml", BASE_JOB.replace("version: 1", "version: 3") + "x: 1\n")
    with pytest.raises(InputError) as caught:
        load_job(path)
    assert [(1, "version"), (10, "x")] == [(p.line, p.where) for p in caught.value.problems]


def test_every_key_is_in_the_reference() -> None:
    """Every key the schema accepts is named in docs/job-file.md."""
    reference = (Path(__file__).resolve().parent.parent / "docs/job-file.md").read_text("utf-8")
    models: list[type[BaseModel]] = [
        Job,
        FleetSpec,
        WindowSpec,
        PlatformOptions,
        Command,
        WriteCommand,
        WriteItem,
        ReadCommand,
        ExecuteCommand,
        RateSpec,
        RampSpec,
        RolloutSpec,
        AbortSpec,
        DispatchWindowSpec,
    ]
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if f"`{name}`" not in reference
    ]
    assert [] == missing
