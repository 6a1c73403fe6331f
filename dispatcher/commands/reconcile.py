"""`reconcile`: settle in-doubt rows from the platform's history."""

from __future__ import annotations

import argparse

from rich.console import Console

from dispatcher.commands.ledgerarg import LEDGER_HELP, add_platform_args, ledger_target
from dispatcher.exits import (
    EXIT_OK,
    EXIT_SOME_FAILED,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reconcile",
        help="settle in-doubt rows by asking the platform what it queued",
        description="For each in-doubt row, read the platform's whole history of that device since the row\n"
        "was sent, and compare each command of the same kind with a uuid the ledger does not know yet\n"
        "with what was sent (its parameters and content, in whatever form the platform gives them).\n"
        "Exactly one command that agrees: the row becomes ok with its uuid. Nothing of ours in a\n"
        "history read to its end, and the request old enough: pending (the next run sends it).\n"
        "Anything else (several candidates, nothing comparable, a history not read to its end)\n"
        "stays in doubt, with the reason. `run` does this by itself before resuming.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ONENET_API_KEY=... onenet-dispatch reconcile jobs/ledger.sqlite --run-id zone-a-2026-11-22\n\n"
        "exit codes: 0 nothing left in doubt; 1 some rows could not be settled; 2 invalid input",
    )
    p.add_argument("ledger", type=ledger_target, metavar="LEDGER", help=LEDGER_HELP)
    p.add_argument(
        "--run-id", metavar="ID", help="only this run (default: every run with in-doubt rows)"
    )
    add_platform_args(p)
    p.set_defaults(handler=handle, logs=True)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.lifecycle import ReconcileOptions, reconcile_ledger

    outcome = reconcile_ledger(
        ReconcileOptions(
            ledger=args.ledger, run_id=args.run_id, config=args.config, base_url=args.base_url
        )
    )
    undecided = 0
    for run_id, why in outcome.skipped.items():
        out.print(f"{run_id}: not reconciled: {why}")
    for run_id, report in outcome.reports.items():
        out.print(
            f"{run_id}: {report.looked_at} in-doubt rows: {report.found} queued (now ok),"
            f" {report.not_found} not queued (now pending), {report.undecided} still in doubt"
            + (f"; {report.foreign} other applications' commands seen" if report.foreign else "")
        )
        for note in report.notes[:50]:
            out.print(f"  {note}")
        undecided += report.undecided
    if not outcome.reports and not outcome.skipped:
        out.print("no in-doubt rows")
    return EXIT_SOME_FAILED if undecided or outcome.skipped else EXIT_OK
