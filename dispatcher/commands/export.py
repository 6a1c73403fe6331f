"""`export`: the ledger's rows as JSON lines or CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from dispatcher.commands.ledgerarg import add_ledgers_arg
from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="write the ledger's rows as JSON lines or CSV",
        description="Write one record per ledger row: run_id, fleet, imei, command, op, status, uuid, errno,\n"
        "error, http_status, attempts, sent_at, answered_at (times ISO 8601 UTC).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch export jobs/ledger.sqlite --run-id meter-interval-zone-a --format csv -o out.csv",
    )
    add_ledgers_arg(p)
    p.add_argument("--run-id", metavar="ID", help="only this run (default: every run)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.export import write
    from dispatcher.ledger.merge import open_ledgers

    with open_ledgers(args.ledger, args.run_id) as ledger:
        if args.run_id is not None:
            ledger.require_run(args.run_id)
        if args.output is None:
            write(ledger, args.run_id, args.format, sys.stdout)
        else:
            tmp = args.output.with_name(args.output.name + ".part")
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                write(ledger, args.run_id, args.format, handle)
            tmp.replace(args.output)
    return EXIT_OK
