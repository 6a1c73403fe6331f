"""Exit codes, and the one map from an exception family to its code.

Here rather than in ``cli.py`` because the command modules need them and nothing may import
the CLI.
"""

from __future__ import annotations

import signal

from dispatcher.errors import (
    Aborted,
    CredentialsRefused,
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
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141: as if SIGPIPE had ended us (`... | head`)
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def exit_code_for(exc: DispatcherError) -> int:
    if isinstance(exc, (InputError, RunRefused, LedgerError, CredentialsRefused)):
        return EXIT_INPUT
    if isinstance(exc, PlatformUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, Aborted):
        return EXIT_ABORTED
    return EXIT_SOFTWARE


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds, however deeply nested; else ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def ours(exc: BaseException) -> DispatcherError | None:
    """The first of our own errors when ``exc`` is one, or a task group's group of only ours.

    A task group wraps what its tasks raise in an ExceptionGroup even when it is a single
    LedgerError: that is an error of the ledger (exit 2), not a bug (exit 70).
    """
    found = leaves(exc)
    if found and all(isinstance(e, DispatcherError) for e in found):
        first = found[0]
        assert isinstance(first, DispatcherError)
        return first
    return None
