"""`status`: where each run stands."""

from __future__ import annotations

import argparse

from rich.console import Console

from dispatcher.commands.ledgerarg import add_ledgers_arg
from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="where a run stands: wave, counts per status, failure rate, why it stopped",
        description="Where a run stands: its state and why it stopped, the wave, counts per status,\n"
        "and the failure rate against the job's abort rule. Safe while the run is going on.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch status jobs/ledger.sqlite --run-id zone-a-2026-11-22",
    )
    add_ledgers_arg(p)
    p.add_argument("--run-id", metavar="ID", help="only this run (default: every run)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.ledger.merge import open_ledgers
    from dispatcher.show import print_status, shard_counts

    with open_ledgers(args.ledger, args.run_id) as ledger:
        runs = [ledger.require_run(args.run_id)] if args.run_id else ledger.runs()
        if not runs:
            out.print("no runs in this ledger")
        for record in runs:
            print_status(
                out,
                record,
                ledger.counts(record.run_id),
                as_json=args.format == "json",
                remaining=max(0, record.devices - ledger.settled_devices(record.run_id)),
                shards=shard_counts(ledger.items(record.run_id), record.shards)
                if record.shards > 1
                else None,
            )
    return EXIT_OK
