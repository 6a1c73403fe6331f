"""`report`: a run's summary in text, JSON or Markdown."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from dispatcher.commands.ledgerarg import add_ledgers_arg
from dispatcher.errors import InputError
from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="a run's summary: counts per status, errno, fleet and command; the slowest answers",
        description="The summary of a run, any time later: counts per status and per errno with the\n"
        "platform's error text, per fleet and per command, and the slowest answers. markdown pastes\n"
        "into a change ticket or a CI job summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch report jobs/ledger.sqlite --run-id zone-a-2026-11-22 --format markdown",
    )
    add_ledgers_arg(p)
    p.add_argument("--run-id", metavar="ID", help="the run (default: the latest)")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.ledger.merge import open_ledgers
    from dispatcher.report import build_report, render_json, render_markdown, render_text

    with open_ledgers(args.ledger, args.run_id) as ledger:
        if args.run_id is None:
            runs = ledger.runs()
            if not runs:
                raise InputError(f"{', '.join(map(str, args.ledger))}: no runs yet")
            run_id = runs[-1].run_id
        else:
            run_id = ledger.require_run(args.run_id).run_id
        report = build_report(ledger, run_id)
    if args.format == "json":
        sys.stdout.write(render_json(report) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render_markdown(report))
    else:
        render_text(report, out)
    return EXIT_OK
