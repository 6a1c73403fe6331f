"""The LEDGER argument and ``--ledger``: a path, or a ``postgresql://`` URL without a password."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatcher.pgurl import LedgerTarget

LEDGER_HELP = "a ledger file, or a postgresql:// URL (password from PGPASSWORD or ~/.pgpass)"


def ledger_target(text: str) -> LedgerTarget:
    """argparse's ``type=``: a refusal is a usage error (exit 2) that never echoes the URL."""
    # Imported when a ledger is named, not when the CLI starts (`validate` loads no ledger).
    from dispatcher.pgurl import PASSWORD_REFUSED, has_password, is_url, parse_target

    if is_url(text) and has_password(text):
        raise argparse.ArgumentTypeError(PASSWORD_REFUSED)
    return parse_target(text, where="LEDGER")
