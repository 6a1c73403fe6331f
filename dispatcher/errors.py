"""The project's one exception tree.

    DispatcherError                 base of everything we raise on purpose
    ├── InputError                  bad job, fleet, config or arguments: exit 2, nothing sent
    │   ├── ConfigError             the config file or the environment (missing key, bad URL)
    │   └── JobSchemaError          the job file broke schema rules (keeps the document, so
    │                               its fleets can still be checked and reported with it)
    ├── TimeSpecError (ValueError)  a window time or duration that cannot be understood
    ├── RunRefused                  the ledger says this run must not go on: exit 2
    ├── CredentialsRefused          the platform refused the API key or token: exit 2, the rows
    │                               stay pending (a rerun with the right key sends them)
    ├── LedgerError                 the ledger cannot be opened or written: exit 2 before
    │                               sending, otherwise the run stops (resumable)
    ├── PlatformUnavailable         the platform stopped answering (outage): exit 4
    └── Aborted                     the rollout's abort rule fired, or the run was aborted: exit 3

The CLI maps each family to its exit code in one place (``exits.exit_code_for``).
Library exceptions (aiohttp, sqlite3, yaml, pydantic) are translated where they are
raised into one of these, with ``raise ... from exc`` when the cause helps a reader of a
traceback, or ``from None`` when the library's chain would only repeat the message (or
could carry a request's headers); their messages never carry the API key.

``TimeSpecError`` is also a ``ValueError``: raised inside a pydantic validator, a
ValueError becomes a located validation error (``FILE:LINE: where: what``); any other
exception would escape pydantic as a crash. Callers outside pydantic catch it as a
DispatcherError, or turn it into an InputError naming the option.

Private exceptions (a leading underscore) never leave their module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dispatcher.problems import Problem

if TYPE_CHECKING:  # yamlfile raises InputError: a runtime import would be circular
    from dispatcher.yamlfile import YamlDoc


class DispatcherError(Exception):
    """Base of every error the dispatcher raises on purpose."""


class InputError(DispatcherError):
    """The job, a fleet, the config or the arguments are wrong; nothing was sent."""

    def __init__(
        self,
        problems: Sequence[Problem] | str,
        notes: Sequence[str] = (),
        *,
        errors: int | None = None,
    ) -> None:
        if isinstance(problems, str):
            problems = [Problem(file=None, line=None, where=None, what=problems)]
        self.problems: list[Problem] = list(problems)
        self.notes = list(notes)  # e.g. "... and 9950 more errors not shown"
        # every error found, shown or not
        self.errors = (
            errors if errors is not None else sum(p.severity == "error" for p in self.problems)
        )
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.render() for p in self.problems] + self.notes


class ConfigError(InputError):
    """The config file or the environment it points at is unusable."""


class JobSchemaError(InputError):
    """The job file broke schema rules; carries the document so other parts can still be checked."""

    def __init__(self, problems: list[Problem], doc: YamlDoc) -> None:
        super().__init__(problems)
        self.doc = doc


class TimeSpecError(DispatcherError, ValueError):
    """A window time that cannot be understood; the message says what to write instead."""


class RunRefused(DispatcherError):
    """The ledger holds a run that this invocation must not continue."""


class CredentialsRefused(DispatcherError):
    """The platform said the key or token is wrong; nothing more is sent, the rows stay pending.

    Not an outage: running the same command again cannot help until the key is fixed.
    The message names where the key came from, never the key.
    """

    @classmethod
    def answered(cls, errno: int | None, error: str | None, then: str) -> CredentialsRefused:
        return cls(
            f"the platform refused the credentials: {error} (errno {errno}); nothing more"
            f" was sent{then}: fix the key, token or auth settings and run the same command again"
        )


class LedgerError(DispatcherError):
    """The results ledger cannot be opened, read or written."""


class PlatformUnavailable(DispatcherError):
    """The platform (or the network to it) stopped answering; the run is resumable."""


class Aborted(DispatcherError):
    """The rollout's abort rule stopped the run; a rerun needs --override-abort."""
