"""The command line: parses arguments, sets up output, calls one function per command.

No logic lives here. Every exception family maps to an exit code in ``exit_code_for``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from dispatcher import __version__
from dispatcher.errors import (
    DispatcherError,
    InputError,
    LedgerError,
    PlatformUnavailable,
    RunRefused,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INPUT = 2
EXIT_ABORTED = 3
EXIT_UNAVAILABLE = 4
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: a bug of ours
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def exit_code_for(exc: DispatcherError) -> int:
    if isinstance(exc, (InputError, RunRefused, LedgerError)):
        return EXIT_INPUT
    if isinstance(exc, PlatformUnavailable):
        return EXIT_UNAVAILABLE
    return EXIT_SOFTWARE


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on exit code 2 (its default) and no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onenet-dispatch",
        description="Roll out OneNET NB-IoT cached (offline) commands to whole device fleets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch validate jobs/example.yaml\n  onenet-dispatch run jobs/example.yaml --simulate",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        help="check a job and its fleets and print the plan; sends nothing",
        description="Check a job file and every fleet it names, and print the plan. Sends nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch validate jobs/example.yaml --strict",
    )
    p.add_argument("job", type=Path, metavar="JOB.yaml")
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (base URL, auth, ledger)"
    )
    p.add_argument(
        "--strict", action="store_true", help="treat a wrong IMEI check digit as an error"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Console(highlight=False, markup=False)
    err = Console(stderr=True, highlight=False, markup=False)
    try:
        if args.command == "validate":
            return _validate(args, out, err)
        raise AssertionError(f"unknown command {args.command}")
    except InputError as exc:
        for line in exc.lines():
            err.print(line, soft_wrap=True)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        err.print(
            f"invalid: {errors or len(exc.problems)} problem(s); nothing was sent", style="bold red"
        )
        return exit_code_for(exc)
    except DispatcherError as exc:
        err.print(f"error: {exc}", style="bold red", soft_wrap=True)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.print("interrupted", style="bold red")
        return EXIT_SIGINT
    except Exception as exc:
        if os.environ.get("ONENET_DISPATCH_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}; this is a bug of onenet-dispatch, please report it"
            " (set ONENET_DISPATCH_DEBUG=1 to see the traceback)",
            style="bold red",
            soft_wrap=True,
        )
        return EXIT_SOFTWARE


def _validate(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.check import check_job
    from dispatcher.config import load_config
    from dispatcher.show import print_plan

    load_config(args.config)
    checked = check_job(args.job, now=datetime.now(UTC), strict=args.strict)
    for problem in checked.problems.shown:
        err.print(problem.render(), soft_wrap=True)
    for note in checked.problems.notes():
        err.print(note, soft_wrap=True)
    print_plan(out, checked)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
