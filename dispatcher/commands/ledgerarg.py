"""The arguments the commands share: LEDGER and ``--ledger`` (a path, or a ``postgresql://``
URL without a password), and the platform options of the commands that ask it about a run."""

from __future__ import annotations

import argparse
from pathlib import Path
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


def add_ledgers_arg(p: argparse.ArgumentParser) -> None:
    """LEDGER... of status, report and export: one ledger, or the SQLite files of a run's shards."""
    p.add_argument(
        "ledger",
        type=ledger_target,
        nargs="+",
        metavar="LEDGER",
        help=LEDGER_HELP + "; or several SQLite files, the shards of a run, read as one",
    )


def add_platform_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--base-url`` of track, cancel and reconcile: the run knows its platform."""
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (auth, timeouts)"
    )
    p.add_argument(
        "--base-url", metavar="URL", help="the platform's API base URL (default: the run's)"
    )
