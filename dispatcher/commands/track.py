"""`track`: ask the platform where each queued command stands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.console import Console

from dispatcher.commands.ledgerarg import LEDGER_HELP, add_platform_args, ledger_target
from dispatcher.errors import InputError
from dispatcher.exits import (
    EXIT_OK,
    EXIT_SOME_FAILED,
)
from dispatcher.onenet.platforms import LEGACY, detail_path

if TYPE_CHECKING:
    from dispatcher.pgurl import LedgerTarget


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "track",
        help="ask the platform where each queued command of a run stands (delivered, confirmed, ...)",
        description=f"Ask the platform (GET {LEGACY.prefix}{detail_path('{uuid}')}) where each queued command of the run\n"
        "stands, at the job's rate, and record it in the ledger: send_status (waiting, sent, success,\n"
        "failed, expired, cancelled), confirm_status, a read's cmd_result, and the times. Commands\n"
        "already final are not asked about again.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  onenet-dispatch track jobs/ledger.sqlite --run-id zone-a-2026-11-22\n"
        "  onenet-dispatch track jobs/ledger.sqlite --run-id zone-a-2026-11-22 --watch --interval 10m\n\n"
        "exit codes: 0 every command succeeded on its device (with --watch: once all are final);\n"
        "1 otherwise; 2 invalid input",
    )
    p.add_argument("ledger", type=ledger_target, metavar="LEDGER", help=LEDGER_HELP)
    p.add_argument(
        "--run-id", metavar="ID", help="the run (default: the ledger's run, when it holds only one)"
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="repeat until every command is final or the window closed",
    )
    p.add_argument(
        "--interval",
        default="10m",
        metavar="DURATION",
        help="between passes with --watch (default 10m)",
    )
    p.add_argument(
        "--rate",
        type=float,
        metavar="PER_SECOND",
        help="queries per second (default: the job's rate)",
    )
    p.add_argument(
        "--concurrency", type=int, metavar="N", help="queries in flight (default: the job's)"
    )
    add_platform_args(p)
    p.set_defaults(handler=handle, logs=True)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.errors import TimeSpecError
    from dispatcher.lifecycle import TrackOptions, track_run
    from dispatcher.timewindow import parse_duration

    try:
        interval = parse_duration(args.interval)
    except TimeSpecError as exc:
        raise InputError(f"--interval: {exc}") from None
    if args.rate is not None and not 0 < args.rate <= 1000:
        raise InputError("--rate must be more than 0 and at most 1000")
    if args.concurrency is not None and not 1 <= args.concurrency <= 256:
        raise InputError("--concurrency must be 1..256")
    if args.run_id is None:
        args.run_id = _only_run(args.ledger)
    outcome = track_run(
        TrackOptions(
            ledger=args.ledger,
            run_id=args.run_id,
            config=args.config,
            base_url=args.base_url,
            watch=args.watch,
            interval=interval,
            rate=args.rate,
            concurrency=args.concurrency,
        )
    )
    asked = sum(p.asked for p in outcome.passes)
    unanswered = sum(p.unanswered for p in outcome.passes)
    out.print(
        f"run {args.run_id}: {len(outcome.passes)} pass(es), {asked} commands asked about, {unanswered} unanswered"
    )
    out.print(
        "delivery: " + ", ".join(f"{state} {n}" for state, n in sorted(outcome.delivery.items()))
    )
    if outcome.window_closed:
        out.print(
            "the run's validity window has closed: what is not final now will not be delivered"
        )
    for note in (outcome.passes[-1].notes if outcome.passes else [])[:20]:
        out.print(f"  {note}")
    return EXIT_OK if outcome.all_succeeded else EXIT_SOME_FAILED


def _only_run(path: LedgerTarget) -> str:
    """The run id when the ledger holds exactly one run; InputError naming them otherwise."""
    from dispatcher.ledger import open_existing

    with open_existing(path) as ledger:
        runs = ledger.runs()
    if len(runs) == 1:
        return runs[0].run_id
    if not runs:
        raise InputError(f"{path}: no runs yet")
    names = ", ".join(r.run_id for r in runs)
    raise InputError(f"{path} holds {len(runs)} runs ({names}): name one with --run-id")
