"""`cancel`: take back a run's commands still waiting on the platform."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from dispatcher.commands.ledgerarg import LEDGER_HELP, add_platform_args, ledger_target
from dispatcher.exits import (
    EXIT_OK,
    EXIT_SOME_FAILED,
)
from dispatcher.onenet.platforms import LEGACY, cancel_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "cancel",
        help="take back a run's commands still waiting on the platform",
        description="Cancel the run's queued commands that have not reached their device yet (PUT\n"
        f"{LEGACY.prefix}{cancel_path('{uuid}')}), at the job's rate; record them as cancelled. Commands already\n"
        "sent to a device cannot be cancelled: they are counted and shown in `export`. A cancelled\n"
        "run is never resumed: `run` refuses it unless given a new run id.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  onenet-dispatch cancel jobs/ledger.sqlite --run-id zone-a-2026-11-22 --dry-run\n"
        "  onenet-dispatch cancel jobs/ledger.sqlite --run-id zone-a-2026-11-22 --fleet zone-a",
    )
    p.add_argument("ledger", type=ledger_target, metavar="LEDGER", help=LEDGER_HELP)
    p.add_argument("--run-id", required=True, metavar="ID")
    p.add_argument(
        "--fleet", action="append", default=[], metavar="NAME", help="only this fleet (repeatable)"
    )
    p.add_argument(
        "--imei-file", type=Path, metavar="FILE", help="only the IMEIs in FILE, one per line"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say how many would be cancelled; send nothing"
    )
    add_platform_args(p)
    p.set_defaults(handler=handle, logs=True)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.imei import read_imei_file
    from dispatcher.lifecycle import CancelOptions, cancel_run

    outcome = cancel_run(
        CancelOptions(
            ledger=args.ledger,
            run_id=args.run_id,
            config=args.config,
            base_url=args.base_url,
            fleets=frozenset(args.fleet) or None,
            imeis=read_imei_file(args.imei_file) if args.imei_file is not None else None,
            dry_run=args.dry_run,
        )
    )
    if args.dry_run:
        out.print(
            f"run {args.run_id}: {outcome.candidates} commands would be cancelled,"
            f" {outcome.delivered_before} already sent to their device (dry run, nothing sent)"
        )
        return EXIT_OK
    report = outcome.report
    assert report is not None
    beyond = report.not_cancellable + outcome.delivered_before
    out.print(
        f"run {args.run_id}: {report.cancelled} cancelled, {beyond} already sent to their"
        f" device (cannot be cancelled), {report.unanswered} unanswered; the run is marked cancelled"
    )
    out.print(
        "delivery: " + ", ".join(f"{state} {n}" for state, n in sorted(outcome.delivery.items()))
    )
    return EXIT_OK if beyond == 0 and report.unanswered == 0 else EXIT_SOME_FAILED
