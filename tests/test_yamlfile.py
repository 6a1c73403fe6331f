"""The YAML loader: lines of every key, and hostile or broken files refused with a located message."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.errors import InputError
from dispatcher.yamlfile import format_path, load_yaml
from tests.jobtools import BASE_JOB, validate, write

# (id, file content, the one expected problem line)
BAD_FILES: list[tuple[str, str | bytes, str]] = [
    (
        "alias",
        "version: 1\nname: &n t\nalias: *n\n",
        "job.yaml:2: invalid YAML: anchors and aliases (&, *) are not allowed in job files",
    ),
    (
        "billion-laughs",
        'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n',
        "job.yaml:1: invalid YAML: anchors and aliases (&, *) are not allowed in job files",
    ),
    (
        "python-object",
        "version: 1\nname: !!python/object/apply:os.system [echo hi]\n",
        "job.yaml:2: YAML tag !!python/object/apply:os.system is not allowed",
    ),
    (
        "python-object-mapping",
        "version: 1\nwindow: !!python/object:datetime.timedelta {}\n",
        "job.yaml:2: YAML tag !!python/object:datetime.timedelta is not allowed",
    ),
    (
        "binary-tag",
        "version: 1\nname: !!binary aGVsbG8=\n",
        "job.yaml:2: YAML tag !!binary is not allowed",
    ),
    (
        "malformed-flow",
        "version: 1\nname: [t\n",
        "job.yaml:3: invalid YAML: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'",
    ),
    (
        "malformed-indent",
        "version: 1\n  name: t\n",
        "job.yaml:2: invalid YAML: mapping values are not allowed here",
    ),
    (
        "tab-indent",
        "version: 1\nwindow:\n\texpired_time: +1h\n",
        "job.yaml:3: invalid YAML: while scanning for the next token, found character '\\t' that cannot start any token",
    ),
    (
        "two-documents",
        "version: 1\n---\nname: t\n",
        "job.yaml:2: invalid YAML: expected a single document in the stream, but found another document",
    ),
    (
        "duplicate-key",
        "version: 1\nname: t\nname: u\n",
        'job.yaml:3: duplicate key "name"',
    ),
    (
        "duplicate-nested-key",
        "version: 1\nwindow:\n  expired_time: +1h\n  expired_time: +2h\n",
        'job.yaml:4: window: duplicate key "expired_time"',
    ),
    (
        "not-utf8",
        b"version: 1\nname: t\ndescription: caf\xe9\n",
        "job.yaml:3: not UTF-8 text",
    ),
    (
        "utf16",
        "version: 1\n".encode("utf-16"),
        "job.yaml:1: not UTF-8 text",
    ),
    (
        "nul-byte",
        b"version: 1\nname: t\x00\n",
        "job.yaml:2: control character U+0000 in the text; is it really YAML?",
    ),
    (
        "empty",
        "",
        "job.yaml:1: the file is empty",
    ),
    (
        "only-comments",
        "# nothing here yet\n",
        "job.yaml:1: the file is empty",
    ),
    (
        "mapping-key",
        "version: 1\n? [a, b]\n: c\n",
        "job.yaml:2: keys must be plain text",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"),
    [pytest.param(content, line, id=name) for name, content, line in BAD_FILES],
)
def test_bad_yaml_is_one_located_problem(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, expected: str
) -> None:
    """A file the loader refuses exits 2 with one message at the offending line, and no traceback."""
    write(workdir, "job.yaml", content)
    result = validate(capsys, "job.yaml")
    assert (2, "", [expected]) == (result.code, result.out, result.problems)
    assert "invalid: 1 problem(s); nothing was sent" == result.summary


def test_missing_job_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job file that does not exist is an input error, not a traceback."""
    result = validate(capsys, "nope.yaml")
    assert (2, ["nope.yaml: file not found"]) == (result.code, result.problems)


def test_a_job_with_a_bom_and_crlf_validates(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job saved by a Windows editor (UTF-8 BOM, CRLF line ends) is read as any other."""
    write(workdir, "job.yaml", b"\xef\xbb\xbf" + BASE_JOB.replace("\n", "\r\n").encode())
    assert 0 == validate(capsys, "job.yaml").code


def test_lines_of_keys_and_items(tmp_path: Path) -> None:
    """Every key and list item remembers the line it was written on."""
    path = write(
        tmp_path,
        "doc.yaml",
        """\
        a: 1
        b:
          c: [x, y]
          d:
            - e: 2
              f: 3
        """,
    )
    doc = load_yaml(path, "doc.yaml")
    assert {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 2, "f": 3}]}} == doc.data
    assert 1 == doc.line_of(("a",))
    assert 3 == doc.line_of(("b", "c", 1))
    assert 5 == doc.line_of(("b", "d", 0))
    assert 6 == doc.line_of(("b", "d", 0, "f"))
    assert 6 == doc.line_of(("b", "d", 0, "f", "not-written"))


def test_timestamps_stay_text(tmp_path: Path) -> None:
    """YAML timestamps are kept as written, for the window's own zone rules."""
    path = write(tmp_path, "doc.yaml", "t: 2026-11-22 10:00:00\nd: 2026-11-22\n")
    assert {"t": "2026-11-22 10:00:00", "d": "2026-11-22"} == load_yaml(path, "doc.yaml").data


def test_number_text_is_kept(tmp_path: Path) -> None:
    """The source text of number scalars is kept, so 0123 and 8.65820E+14 are reported as written."""
    path = write(tmp_path, "doc.yaml", "a: 0123\nb: 8.65820E+14\nc: text\n")
    doc = load_yaml(path, "doc.yaml")
    assert {("a",): "0123", ("b",): "8.65820E+14"} == doc.raw


def test_load_yaml_raises_input_error(tmp_path: Path) -> None:
    """The library raises InputError naming the display path it was given."""
    path = write(tmp_path, "doc.yaml", "a: *nowhere\n")
    with pytest.raises(InputError) as caught:
        load_yaml(path, "shown/as.yaml")
    assert [
        "shown/as.yaml:1: invalid YAML: anchors and aliases (&, *) are not allowed in job files"
    ] == (caught.value.lines())


def test_a_surrogate_escape_is_joined_or_a_located_problem(tmp_path: Path) -> None:
    """YAML's "\\uD83D\\uDE00" is two halves of one character: joined. A lone half is no
    text at all (it cannot be sent as UTF-8): a located problem, never a traceback."""
    path = write(tmp_path, "doc.yaml", 'a: "\\ud83d\\ude00"\nb:\n  - "x\\ud800"\n')
    with pytest.raises(InputError) as caught:
        load_yaml(path, "doc.yaml")
    assert ["doc.yaml:3: b[0]: a \\u escape of half a character (a lone surrogate)"] == (
        caught.value.lines()
    )
    path = write(tmp_path, "doc.yaml", 'a: "\\ud83d\\ude00"\n"k\\udc00": 1\n')
    with pytest.raises(InputError) as caught:
        load_yaml(path, "doc.yaml")
    assert ["doc.yaml:2: a \\u escape of half a character (a lone surrogate)"] == (
        caught.value.lines()
    )
    path = write(tmp_path, "doc.yaml", 'a: "\\ud83d\\ude00"\n')
    assert {"a": "\U0001f600"} == load_yaml(path, "doc.yaml").data


def test_format_path() -> None:
    """A path into the document reads as written in messages."""
    assert "commands[0].write.data[1].val" == format_path(
        ("commands", 0, "write", "data", 1, "val")
    )
    assert "" == format_path(())
