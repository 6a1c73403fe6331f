"""Fleets: streaming the devices of a job's fleets, with the row each came from.

A fleet is an inline IMEI list, inline devices with variables, or a CSV file. CSV
files are read row by row (never loaded whole), so a million-row fleet validates in
memory that does not grow with it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from dispatcher.imei import imei_problem, luhn_problem
from dispatcher.jobfile import FleetSpec
from dispatcher.problems import Problems
from dispatcher.yamlfile import YamlDoc, display_path

# Python's csv default is 128 KiB a field; we keep it, and report a longer one as an error.
_EMPTY: Mapping[str, str] = {}
# The variables of a CSV row a resume found settled (``iter_fleet(settled=...)``): not
# read. Its own object, so that the plan knows the row by identity without asking again.
SETTLED_ROW: Mapping[str, str] = MappingProxyType({})
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that surrogateescape could not decode
_NUL_MESSAGE = "binary data (NUL byte) in the file; is it really a CSV?"


class _BadLine(Exception):
    """A line of a CSV file that is not text; reading the file stops there."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(what)
        self.line = line
        self.what = what


@dataclass(frozen=True, slots=True)
class Device:
    """One device of a fleet, its variables, and where it was written (for messages)."""

    imei: str
    fleet: str
    variables: Mapping[str, str]
    file: str
    line: int
    from_csv: bool = False


def iter_fleet(
    spec: FleetSpec,
    index: int,
    job_path: Path,
    doc: YamlDoc,
    problems: Problems,
    *,
    strict: bool = False,
    settled: Callable[[int, str], bool] | None = None,
) -> Iterator[Device]:
    """Every device of fleet ``index`` with a valid IMEI; problems go to ``problems``.

    ``settled(position, imei)``, for a CSV fleet on a pass after a check that found every
    row sound: True for a row (the position-th device) that needs no checks and no
    variables; it is yielded as its IMEI alone. A resume over a million settled rows
    builds nothing more for each.
    """
    if spec.csv is not None:
        defaults_csv = {k: _text(v) for k, v in spec.variables.items()}
        yield from _csv_devices(job_path, doc, index, spec, problems, strict, defaults_csv, settled)
        return
    defaults = {k: _text(v) for k, v in spec.variables.items()} if spec.variables else _EMPTY
    if spec.imeis is not None:
        for j, raw in enumerate(spec.imeis):
            line = doc.line_of(("fleets", index, "imeis", j))
            imei = _checked(
                raw.strip(), doc.file, line, f"fleets[{index}].imeis[{j}]", problems, strict
            )
            if imei is not None:
                yield Device(imei, spec.name, defaults, doc.file, line)
        return
    assert spec.devices is not None
    for j, entry in enumerate(spec.devices):
        line = doc.line_of(("fleets", index, "devices", j))
        where = f"fleets[{index}].devices[{j}]"
        given = entry.get("imei")
        if given is None:
            problems.error(doc.file, line, where, "device without an imei")
            continue
        imei = _checked(str(given).strip(), doc.file, line, where, problems, strict)
        if imei is None:
            continue
        variables = {**defaults, **{k: _text(v) for k, v in entry.items() if k != "imei"}}
        yield Device(imei, spec.name, variables, doc.file, line)


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _checked(
    imei: str, file: str, line: int, where: str | None, problems: Problems, strict: bool
) -> str | None:
    problem = imei_problem(imei)
    if problem is not None:
        problems.error(file, line, where, problem)
        return None
    luhn = luhn_problem(imei)
    if luhn is not None:
        if strict:
            problems.error(file, line, where, luhn + " (--strict)")
            return None
        problems.warning(file, line, where, luhn)
    return imei


def csv_path(job_path: Path, spec: FleetSpec) -> Path:
    assert spec.csv is not None
    return (job_path.parent / spec.csv).resolve()


def _csv_devices(
    job_path: Path,
    doc: YamlDoc,
    index: int,
    spec: FleetSpec,
    problems: Problems,
    strict: bool,
    defaults: dict[str, str],
    settled: Callable[[int, str], bool] | None = None,
) -> Iterator[Device]:
    path = csv_path(job_path, spec)
    display = display_path(path)
    job_line = doc.line_of(("fleets", index, "csv"))
    where = f"fleets[{index}].csv"
    if not path.is_file():
        # the full path: a csv path is read from the job file's folder, not the working directory
        relative = "" if Path(str(spec.csv)).is_absolute() else "; relative to the job file"
        problems.error(
            doc.file,
            job_line,
            where,
            f'fleet file "{spec.csv}" not found (looked for {path}{relative})',
        )
        return
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        problems.error(doc.file, job_line, where, f'cannot read "{spec.csv}": {exc.strerror}')
        return
    with handle:
        reader = csv.reader(_text_lines(handle), delimiter=spec.delimiter, strict=True)
        line = 0
        position = 0  # devices yielded so far
        try:
            header: list[str] | None = None
            for row in reader:
                line = reader.line_num
                if (
                    not row
                    or (len(row) == 1 and not row[0].strip())
                    or row[0].lstrip().startswith("#")
                ):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    if not _header_ok(header, spec, display, line, problems):
                        return
                    imei_at = header.index(spec.imei_column)
                    columns = [
                        (at, name) for at, name in enumerate(header) if name != spec.imei_column
                    ]
                    continue
                if len(row) != len(header):
                    problems.error(
                        display, line, None, f"{len(row)} fields, the header has {len(header)}"
                    )
                    continue
                if settled is not None:
                    given = row[imei_at].strip()
                    if settled(position, given):
                        position += 1
                        yield Device(given, spec.name, SETTLED_ROW, display, line, from_csv=True)
                        continue
                imei = _checked(row[imei_at].strip(), display, line, None, problems, strict)
                if imei is None:
                    continue
                variables = dict(defaults)
                for at, name in columns:
                    variables[name] = row[at].strip()
                position += 1
                yield Device(imei, spec.name, variables, display, line, from_csv=True)
            if header is None:
                problems.error(
                    display, None, None, "no header row (the first row names the columns)"
                )
        except _BadLine as exc:
            problems.error(display, exc.line, None, exc.what)
        except UnicodeDecodeError:
            # The decoder works a block ahead of the reader: find the line itself.
            problems.error(
                display, _undecodable_line(path), None, "not UTF-8 text (save the file as UTF-8)"
            )
        except csv.Error as exc:
            # The row being read began on the line after the last whole one; a quote
            # left open is only noticed at the end of the file.
            problems.error(display, line + 1, None, f"unreadable CSV: {_csv_reason(exc)}")


def _text_lines(handle: Iterable[str]) -> Iterator[str]:
    """The file's lines; the csv module takes NUL as text since Python 3.11, we do not."""
    for number, line in enumerate(handle, 1):
        if "\0" in line:
            raise _BadLine(number, _NUL_MESSAGE)
        yield line


def _undecodable_line(path: Path) -> int | None:
    """The first line of ``path`` that is not UTF-8, counted as the csv reader counts."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        for number, line in enumerate(handle, 1):
            if _UNDECODABLE.search(line):
                return number
    return None


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if "NUL" in text:
        return _NUL_MESSAGE
    if "field larger than field limit" in text:
        return f"a field longer than {csv.field_size_limit()} characters"
    if "unexpected end of data" in text:
        return 'a quoted field is never closed (a " without its pair)'
    return text


def _header_ok(
    header: list[str], spec: FleetSpec, display: str, line: int, problems: Problems
) -> bool:
    ok = True
    if spec.imei_column not in header and any(imei_problem(cell) is None for cell in header):
        problems.error(
            display,
            line,
            None,
            "the first row holds an IMEI, not column names; add a header row "
            f'(such as "{spec.imei_column}") above the devices',
        )
        return False
    if spec.imei_column not in header:
        problems.error(
            display,
            line,
            None,
            f'no "{spec.imei_column}" column in the header (columns: {", ".join(header)}); '
            "set imei_column in the job",
        )
        ok = False
    seen: set[str] = set()
    for name in header:
        if not name:
            problems.error(display, line, None, "a column without a name in the header")
            ok = False
        elif name in seen:
            problems.error(display, line, None, f'column "{name}" appears twice in the header')
            ok = False
        seen.add(name)
    return ok
