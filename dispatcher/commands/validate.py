"""`validate`: check a job and its fleets, print the plan; loads nothing that sends."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from dispatcher.exits import (
    EXIT_OK,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check a job and its fleets and print the plan; sends nothing",
        description="Check a job file and every fleet it names, and print the plan. Sends nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch validate jobs/example.yaml --strict",
    )
    p.add_argument("job", type=Path, metavar="JOB.yaml")
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (base URL, auth, ledger)"
    )
    p.add_argument(
        "--strict", action="store_true", help="treat a wrong IMEI check digit as an error"
    )
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.check import check_job
    from dispatcher.config import load_config
    from dispatcher.show import print_plan

    load_config(args.config)
    checked = check_job(args.job, now=datetime.now(UTC), strict=args.strict)
    for problem in checked.problems.shown:
        err.print(problem.render(), soft_wrap=True)
    for note in checked.problems.notes():
        err.print(note, soft_wrap=True)
    print_plan(out, checked)
    return EXIT_OK
