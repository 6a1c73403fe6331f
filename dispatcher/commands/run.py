"""`run`: send a job (or print its requests with --dry-run) and write the reports asked for."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from dispatcher.commands.ledgerarg import ledger_target

if TYPE_CHECKING:
    from dispatcher.pgurl import LedgerTarget
from dispatcher.errors import InputError
from dispatcher.exits import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_SOME_FAILED,
    exit_code_for,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="send every command of a job to every device, recording each answer",
        description=(
            "Send every command of the job to every device of its fleets at the job's rate, and record\n"
            "each answer in the ledger. Running again with the same run id resumes: settled rows are\n"
            "not sent again. The API key comes from the environment (ONENET_API_KEY) or a file named\n"
            "in the config, never from the command line."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  onenet-dispatch run jobs/example.yaml --simulate\n"
            "  ONENET_API_KEY=... onenet-dispatch run jobs/example.yaml --run-id zone-a-2026-11-22\n\n"
            "exit codes: 0 every row ok (or paused on purpose, with --no-wait); 1 finished with\n"
            "failed, skipped or in-doubt rows; 2 invalid input (nothing sent), or the platform refused\n"
            "the key (rows stay pending); 3 the job's abort rule stopped it; 4 platform unavailable\n"
            "(resumable); 130/143 stopped by SIGINT/SIGTERM (resumable: run the same command again);\n"
            "141 stdout closed early (| head)"
        ),
    )
    p.add_argument("job", type=Path, metavar="JOB.yaml")
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (base URL, auth, ledger)"
    )
    p.add_argument(
        "--ledger",
        type=ledger_target,
        metavar="PATH|URL",
        help="results ledger: a file (default: ledger.sqlite beside the job) or a"
        " postgresql:// URL, its password from PGPASSWORD or ~/.pgpass",
    )
    p.add_argument(
        "--run-id",
        metavar="ID",
        help="run id (default: the job's name; with --simulate a new NAME-simulated-TIMESTAMP"
        " each time); the same id resumes",
    )
    p.add_argument(
        "--base-url", metavar="URL", help="the platform's API base URL (overrides the config)"
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="send to a built-in simulator on loopback instead (no key; ledger.simulated.sqlite)",
    )
    p.add_argument(
        "--resend-in-doubt",
        action="store_true",
        help="send in-doubt rows again: only when the platform cannot tell whether they were queued",
    )
    p.add_argument(
        "--strict", action="store_true", help="treat a wrong IMEI check digit as an error"
    )
    target = p.add_argument_group(
        "targeting (a subset of the job: the run stays partial until every device is sent)"
    )
    target.add_argument(
        "--limit", type=int, metavar="N", help="start at most N devices in this invocation"
    )
    target.add_argument(
        "--fleet", action="append", default=[], metavar="NAME", help="only this fleet (repeatable)"
    )
    target.add_argument(
        "--shard",
        metavar="K/N",
        help="only shard K (from 0) of N: the devices whose IMEI hashes to K; at 1/N of the"
        " rate unless the job's rate.shard_rate is whole (Indexed Job: --shard"
        " $(JOB_COMPLETION_INDEX)/N)",
    )
    target.add_argument(
        "--imei-file", type=Path, metavar="FILE", help="only the IMEIs in FILE, one per line"
    )
    control = p.add_argument_group("rollout control")
    control.add_argument(
        "--dry-run",
        action="store_true",
        help="print the exact requests as JSON lines (key masked); send nothing",
    )
    control.add_argument(
        "--requests-out", type=Path, metavar="FILE", help="with --dry-run: write them here"
    )
    control.add_argument(
        "--no-wait",
        action="store_true",
        help="outside the dispatch window, or at a confirm pause: exit 0 (resumable) instead of waiting",
    )
    output = p.add_argument_group("output")
    output.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        help="log lines on stderr: console on a terminal, JSON lines otherwise (auto; default from the config)",
    )
    output.add_argument(
        "--summary-json", type=Path, metavar="FILE", help="write the final summary as JSON"
    )
    output.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="write a JUnit XML report (one case per fleet and command)",
    )
    output.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="write Prometheus metrics for node_exporter's textfile collector (atomically)",
    )
    output.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="without a terminal: seconds between progress events (default 30)",
    )
    control.add_argument(
        "--override-abort",
        action="store_true",
        help="continue a run its abort rule stopped (logged)",
    )
    control.add_argument(
        "--accept-changed-fleet",
        action="store_true",
        help="resume although fleet files changed: new devices are sent, devices already sent"
        " are left as they were sent",
    )
    p.set_defaults(handler=handle, logs=True)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.runner import run_job
    from dispatcher.runopts import Ablations, RunOptions
    from dispatcher.shards import WHOLE, parse_shard
    from dispatcher.show import print_run_summary

    shard = parse_shard(args.shard) if args.shard is not None else WHOLE
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be 1 or more")
    if args.requests_out is not None and not args.dry_run:
        raise InputError("--requests-out goes with --dry-run")
    if args.dry_run:
        return _dry_run(args, out, err)
    for option, path in (
        ("--summary-json", args.summary_json),
        ("--junit", args.junit),
        ("--metrics-file", args.metrics_file),
    ):
        # found now, not after a two-hour rollout
        if path is not None and not path.resolve().parent.is_dir():
            raise InputError(f"{option} {path}: the folder {path.parent} does not exist")
    result = run_job(
        RunOptions(
            job=args.job,
            config=args.config,
            ledger=args.ledger,
            run_id=args.run_id,
            base_url=args.base_url,
            simulate=args.simulate,
            resend_in_doubt=args.resend_in_doubt,
            strict=args.strict,
            limit=args.limit,
            fleets=tuple(args.fleet),
            imei_file=args.imei_file,
            shard=shard,
            accept_changed_fleet=args.accept_changed_fleet,
            override_abort=args.override_abort,
            no_wait=args.no_wait,
            interactive=sys.stdin.isatty() and out.is_terminal,
            console=err,
            progress_interval=args.progress_interval,
            ablations=args.ablations or Ablations(),
        )
    )
    print_run_summary(out, result)
    outputs_ok = _run_outputs(args, out, err, result.ledger, result.run_id)
    if result.fatal is not None:
        err.print(f"error: {result.fatal}", style="bold red", soft_wrap=True)
        code = exit_code_for(result.fatal)
    elif result.signal is not None:
        code = EXIT_SIGINT if result.signal == signal.SIGINT else EXIT_SIGTERM
        err.print(
            f"stopped by {signal.Signals(result.signal).name}; {_resume_hint(args, result.run_id)}",
            style="yellow",
            soft_wrap=True,
        )
    elif result.paused is not None:
        code = EXIT_OK
    else:
        code = EXIT_OK if result.all_ok else EXIT_SOME_FAILED
    # a missing report file must not pass unnoticed in CI
    return EXIT_INPUT if code == EXIT_OK and not outputs_ok else code


def _resume_hint(args: argparse.Namespace, run_id: str) -> str:
    """How to go on with this run. A --simulate run's default id is new each time: name it."""
    if args.simulate and args.run_id is None:
        return f"resume: run the same command again with --run-id {run_id}"
    return f"resume: run the same command again (run id {run_id})"


def _run_outputs(
    args: argparse.Namespace, out: Console, err: Console, ledger_path: LedgerTarget, run_id: str
) -> bool:
    """The run's report on the terminal, and the files a pipeline asked for. False if one failed."""
    from dispatcher.clock import unix_now
    from dispatcher.ledger import open_ledger
    from dispatcher.outputs import (
        append_github_step_summary,
        write_junit,
        write_metrics,
        write_summary_json,
    )
    from dispatcher.report import build_report, render_markdown, render_text

    ok = True
    with open_ledger(ledger_path) as ledger:
        report = build_report(ledger, run_id)
        render_text(report, out)
        writers: tuple[tuple[Path | None, Callable[[Path], None]], ...] = (
            (args.summary_json, lambda path: write_summary_json(report, path)),
            (args.junit, lambda path: write_junit(report, ledger, run_id, path)),
            (args.metrics_file, lambda path: write_metrics(report, path, now=unix_now())),
        )
        for path, write in writers:
            if path is None:
                continue
            try:
                write(path)
            except InputError as exc:
                err.print(f"error: {exc}", style="bold red", soft_wrap=True)
                ok = False
    try:
        append_github_step_summary(render_markdown(report), os.environ)
    except InputError as exc:
        err.print(f"error: {exc}", style="bold red", soft_wrap=True)
        ok = False
    return ok


def _dry_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher import dryrun
    from dispatcher.check import check_job
    from dispatcher.config import check_base_url, load_config
    from dispatcher.imei import read_imei_file

    config = load_config(args.config)
    now = datetime.now(UTC)
    checked = check_job(args.job, now=now, strict=args.strict)
    try:
        base_url = check_base_url(args.base_url or config.base_url)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    records = dryrun.requests(
        checked,
        run_id=args.run_id or checked.plan.job.name,
        base_url=config.profile.root(base_url),
        auth_header="authorization" if config.auth.method == "token" else "api-key",
        now=now,
        fleets=frozenset(args.fleet) or None,
        imeis=read_imei_file(args.imei_file) if args.imei_file is not None else None,
        limit=args.limit,
    )
    if args.requests_out is None:
        n = dryrun.write(records, sys.stdout)
    else:
        tmp = args.requests_out.with_name(args.requests_out.name + ".part")
        with tmp.open("w", encoding="utf-8") as handle:
            n = dryrun.write(records, handle)
        tmp.replace(args.requests_out)
    err.print(f"dry run: {n} requests, nothing sent")
    return EXIT_OK
