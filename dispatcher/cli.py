"""The command line: parses arguments, sets up output and logging, calls the command's handler.

No logic lives here: each command is a module of ``dispatcher.commands`` that registers its
subparser with ``set_defaults(handler=...)``. Every exception family maps to an exit code in
``dispatcher.exits.exit_code_for``. Nothing of the package imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console

from dispatcher import __version__
from dispatcher.commands import COMMANDS
from dispatcher.errors import DispatcherError, InputError
from dispatcher.exits import (
    EXIT_ABORTED,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_SOFTWARE,
    EXIT_SOME_FAILED,
    EXIT_STDOUT_CLOSED,
    EXIT_UNAVAILABLE,
    exit_code_for,
    leaves,
    ours,
)

__all__ = [
    "EXIT_ABORTED",
    "EXIT_INPUT",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_SOFTWARE",
    "EXIT_SOME_FAILED",
    "EXIT_STDOUT_CLOSED",
    "EXIT_UNAVAILABLE",
    "build_parser",
    "exit_code_for",
    "main",
]


Handler = Callable[[argparse.Namespace, Console, Console], int]


if TYPE_CHECKING:  # the run's options module loads the engine: not for `validate`
    from dispatcher.runopts import Ablations


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
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, ablations: Ablations | None = None) -> int:
    """The CLI. ``ablations`` switch parts of a `run` off to measure them (the benchmarks
    only; no option of the command line sets them)."""
    try:
        code = _main(argv, ablations)
        # written now, while a closed pipe can still be told apart from a bug
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _stdout_closed() -> int:
    """The reader of stdout went away (`... | head`): normal in a shell, so end quietly.

    Exit as a program killed by SIGPIPE would (128 + 13), which is what a shell expects of
    `yes | head`. stdout is pointed at /dev/null first: the interpreter flushes it on exit,
    and a second EPIPE there would print "Exception ignored ..." on stderr.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_STDOUT_CLOSED


def _main(argv: Sequence[str] | None, ablations: Ablations | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.ablations = ablations
    out = Console(highlight=False, markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    try:
        if args.logs:
            from dispatcher.logs import configure_logging

            # the one place logging is set up: every command that logs gets it here
            configure_logging(err, _log_format(args))
        handler: Handler = args.handler
        return handler(args, out, err)
    except KeyboardInterrupt:
        err.print("interrupted", style="bold red")
        return EXIT_SIGINT
    except BrokenPipeError:
        raise  # a closed stdout, not a bug: main ends quietly
    except Exception as exc:
        mine = ours(exc)
        if mine is not None:
            return _report(mine, err)
        return _internal_error(exc, err)


def _report(exc: DispatcherError, err: Console) -> int:
    """One of our own errors: its lines, and its exit code."""
    if isinstance(exc, InputError):
        for line in exc.lines():
            err.print(line, soft_wrap=True)
        err.print(
            f"invalid: {exc.errors or len(exc.problems)} problem(s); nothing was sent",
            style="bold red",
        )
    else:
        err.print(f"error: {exc}", style="bold red", soft_wrap=True)
    return exit_code_for(exc)


def _internal_error(exc: Exception, err: Console) -> int:
    """A bug of ours: one line, or with ONENET_DISPATCH_DEBUG the whole traceback.

    The traceback includes every exception of a task group's ExceptionGroup (a group
    alone says nothing of which task failed). It holds no local variables, so no secret:
    no exception of ours carries the key.
    """
    kinds = sorted({type(e).__name__ for e in leaves(exc)})
    name = type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        name += f" ({', '.join(kinds)})"
    if os.environ.get("ONENET_DISPATCH_DEBUG"):
        err.file.write("".join(traceback.format_exception(exc)))
        err.file.flush()
    err.print(
        f"internal error: {name}; this is a bug of onenet-dispatch, please report it"
        " (set ONENET_DISPATCH_DEBUG=1 to see the traceback)",
        style="bold red",
        soft_wrap=True,
    )
    return EXIT_SOFTWARE


def _log_format(args: argparse.Namespace) -> str:
    """--log-format, else the config's (for a command that has both), else auto."""
    from dispatcher.config import load_config

    fmt = getattr(args, "log_format", None)
    if fmt:
        return str(fmt)
    if hasattr(args, "log_format") and args.config:
        return load_config(args.config).log_format
    return "auto"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
