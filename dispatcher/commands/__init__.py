"""One module per command: each registers its subparser and the handler that runs it.

A handler takes the parsed arguments and the two consoles (stdout, stderr) and returns the
exit code. Handlers import what they need inside the function, so `validate` or `schema`
never load the HTTP client or the engine.
"""

from __future__ import annotations

from types import ModuleType

from dispatcher.commands import (
    cancel,
    confirm_wave,
    export,
    reconcile,
    report,
    run,
    schema,
    simulate,
    status,
    track,
    validate,
)

# In the order `--help` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    validate,
    run,
    export,
    reconcile,
    schema,
    report,
    status,
    track,
    cancel,
    confirm_wave,
    simulate,
)
