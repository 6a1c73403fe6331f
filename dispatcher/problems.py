"""Problems found in user input, collected so that every one is reported in one run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

# Tens of thousands of bad rows help nobody: show the first few per file, count the rest.
SHOWN_PER_FILE = 50


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located as ``FILE:LINE: where: what``."""

    file: str | None
    line: int | None
    where: str | None
    what: str
    severity: Severity = "error"

    def render(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.where:
            parts.append(self.where)
        parts.append(self.what if self.severity == "error" else f"warning: {self.what}")
        return ": ".join(parts)


class Problems:
    """Collects errors and warnings; keeps the first ``SHOWN_PER_FILE`` of each file."""

    __slots__ = ("_hidden", "_seen", "errors", "shown", "warnings")

    def __init__(self) -> None:
        self.shown: list[Problem] = []
        self.errors = 0
        self.warnings = 0
        self._seen: Counter[tuple[str | None, Severity]] = Counter()
        self._hidden: Counter[tuple[str | None, Severity]] = Counter()

    def add(self, problem: Problem) -> None:
        if problem.severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        key = (problem.file, problem.severity)
        self._seen[key] += 1
        if self._seen[key] <= SHOWN_PER_FILE:
            self.shown.append(problem)
        else:
            self._hidden[key] += 1

    def error(self, file: str | None, line: int | None, where: str | None, what: str) -> None:
        self.add(Problem(file, line, where, what, "error"))

    def warning(self, file: str | None, line: int | None, where: str | None, what: str) -> None:
        self.add(Problem(file, line, where, what, "warning"))

    def extend(self, problems: list[Problem]) -> None:
        for problem in problems:
            self.add(problem)

    def __bool__(self) -> bool:
        return self.errors > 0

    def notes(self) -> list[str]:
        """One line per file saying how many problems were not shown."""
        lines: list[str] = []
        for (file, severity), hidden in sorted(self._hidden.items(), key=lambda kv: str(kv[0])):
            noun = "errors" if severity == "error" else "warnings"
            lines.append(f"{file}: ... and {hidden} more {noun} not shown")
        return lines
