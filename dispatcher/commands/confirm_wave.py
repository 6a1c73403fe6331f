"""`confirm-wave` (alias `resume`): confirm the next wave of a run paused between waves."""

from __future__ import annotations

import argparse

from rich.console import Console

from dispatcher.commands.ledgerarg import LEDGER_HELP, ledger_target
from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "confirm-wave",
        aliases=["resume"],
        help='confirm the next wave of a run paused with pause_between_waves: "confirm"',
        description="Confirm the next wave of a run whose job says pause_between_waves: confirm.\n"
        "A run waiting at the pause goes on within seconds; a run that exited (--no-wait) starts\n"
        "the wave on its next `run`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch confirm-wave jobs/ledger.sqlite --run-id zone-a-2026-11-22",
    )
    p.add_argument("ledger", type=ledger_target, metavar="LEDGER", help=LEDGER_HELP)
    p.add_argument("--run-id", required=True, metavar="ID")
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.ledger import open_existing

    with open_existing(args.ledger) as ledger:
        record = ledger.require_run(args.run_id)
        if record.wave + 1 >= record.waves:
            out.print(
                f"run {record.run_id} has no wave left to confirm (wave {record.wave + 1} of {record.waves})"
            )
            return EXIT_OK
        ledger.confirm_wave(record.run_id, record.wave + 1)
        out.print(
            f"run {record.run_id}: wave {record.wave + 2} of {record.waves} confirmed; a waiting run goes on,"
            " or the next `run` starts it"
        )
    return EXIT_OK
