"""The README's commands are commands: each parses, and each block can run after the set-up command."""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import pytest

from dispatcher.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
ACTIVATE = ". .venv/bin/activate"


def _invocations(block: str) -> list[list[str]]:
    """Each `onenet-dispatch ...` of a block as argv, without env assignments, `&`, `| ...` or comments."""
    found = []
    for line in block.splitlines():
        words = shlex.split(line.replace("$PORT", "8080"), comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        for cut in ("|", "&", "&&"):
            if cut in words:
                words = words[: words.index(cut)]
        if words and words[0].endswith("onenet-dispatch"):
            found.append(words)
    return found


def test_every_readme_command_parses() -> None:
    """Every onenet-dispatch command in the README is accepted by the real argument parser."""
    commands = [argv for block in BLOCKS for argv in _invocations(block)]
    assert len(commands) >= 10
    for argv in commands:
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"README command does not parse ({exc.code}): {shlex.join(argv)}")


def test_bare_commands_come_after_the_venv_is_activated() -> None:
    """A block calling `onenet-dispatch` by name activates the venv of the set-up command first."""
    for block in BLOCKS:
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^(?:[A-Z_]+=\S+ )*onenet-dispatch\b", line):
                assert any(previous.startswith(ACTIVATE) for previous in lines[:i]), line


def test_run_help_lists_every_exit_code_and_the_default_run_id() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    run = sub.choices["run"]  # type: ignore[index]
    text = run.format_help()
    codes = re.search(r"exit codes:(.*)", text, re.DOTALL)
    assert codes is not None
    for code in ("0", "1", "2", "3", "4", "130/143", "141"):
        assert re.search(rf"(?<![0-9/]){code}(?![0-9/])", codes.group(1)), code
    assert 128 + signal.SIGPIPE == 141
    assert "NAME-simulated-TIMESTAMP" in text
