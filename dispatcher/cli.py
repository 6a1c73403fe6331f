"""The command line: parses arguments, sets up output, calls one function per command.

No logic lives here. Every exception family maps to an exit code in ``exit_code_for``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from dispatcher import __version__
from dispatcher.errors import (
    Aborted,
    CredentialsRefused,
    DispatcherError,
    InputError,
    LedgerError,
    PlatformUnavailable,
    RunRefused,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INPUT = 2
EXIT_ABORTED = 3
EXIT_UNAVAILABLE = 4
EXIT_SOFTWARE = 70  # sysexits' EX_SOFTWARE: a bug of ours
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141: as if SIGPIPE had ended us (`... | head`)
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def exit_code_for(exc: DispatcherError) -> int:
    if isinstance(exc, (InputError, RunRefused, LedgerError, CredentialsRefused)):
        return EXIT_INPUT
    if isinstance(exc, PlatformUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, Aborted):
        return EXIT_ABORTED
    return EXIT_SOFTWARE


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on exit code 2 (its default) and no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onenet-dispatch",
        description="Roll out OneNET NB-IoT cached (offline) commands to whole device fleets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch validate jobs/example.yaml\n  onenet-dispatch run jobs/example.yaml --simulate",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        type=Path,
        metavar="PATH",
        help="results ledger (default: ledger.sqlite beside the job)",
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

    p = sub.add_parser(
        "export",
        help="write the ledger's rows as JSON lines or CSV",
        description="Write one record per ledger row: run_id, fleet, imei, command, op, status, uuid, errno,\n"
        "error, http_status, attempts, sent_at, answered_at (times ISO 8601 UTC).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch export jobs/ledger.sqlite --run-id meter-interval-zone-a --format csv -o out.csv",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
    p.add_argument("--run-id", metavar="ID", help="only this run (default: every run)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")

    p = sub.add_parser(
        "reconcile",
        help="settle in-doubt rows by asking the platform what it queued",
        description="For each in-doubt row, look in the platform's history of that device for a command\n"
        "created since the row was sent, of the same kind, with a uuid the ledger does not know yet.\n"
        "Found: the row becomes ok with that uuid. Not found: pending (the next run sends it).\n"
        "`run` does this by itself before resuming.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ONENET_API_KEY=... onenet-dispatch reconcile jobs/ledger.sqlite --run-id zone-a-2026-11-22\n\n"
        "exit codes: 0 nothing left in doubt; 1 some rows could not be settled; 2 invalid input",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
    p.add_argument(
        "--run-id", metavar="ID", help="only this run (default: every run with in-doubt rows)"
    )
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (auth, timeouts)"
    )
    p.add_argument(
        "--base-url", metavar="URL", help="the platform's API base URL (default: the run's)"
    )

    p = sub.add_parser(
        "schema",
        help="print the job file's JSON Schema (for editors' YAML language servers)",
        description="Print the JSON Schema of the job file, generated from the models that check it.\n"
        "Point your editor's YAML language server at it for completion and inline errors: put\n"
        "  # yaml-language-server: $schema=job.schema.json\n"
        "as the first line of a job file (see docs/job-file.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch schema > job.schema.json",
    )

    p = sub.add_parser(
        "report",
        help="a run's summary: counts per status, errno, fleet and command; the slowest answers",
        description="The summary of a run, any time later: counts per status and per errno with the\n"
        "platform's error text, per fleet and per command, and the slowest answers. markdown pastes\n"
        "into a change ticket or a CI job summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch report jobs/ledger.sqlite --run-id zone-a-2026-11-22 --format markdown",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
    p.add_argument("--run-id", metavar="ID", help="the run (default: the latest)")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text")

    p = sub.add_parser(
        "status",
        help="where a run stands: wave, counts per status, failure rate, why it stopped",
        description="Where a run stands: its state and why it stopped, the wave, counts per status,\n"
        "and the failure rate against the job's abort rule. Safe while the run is going on.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch status jobs/ledger.sqlite --run-id zone-a-2026-11-22",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
    p.add_argument("--run-id", metavar="ID", help="only this run (default: every run)")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser(
        "track",
        help="ask the platform where each queued command of a run stands (delivered, confirmed, ...)",
        description="Ask the platform (GET /nbiot/offline/history/{uuid}) where each queued command of the run\n"
        "stands, at the job's rate, and record it in the ledger: send_status (waiting, sent, success,\n"
        "failed, expired, cancelled), confirm_status, a read's cmd_result, and the times. Commands\n"
        "already final are not asked about again.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  onenet-dispatch track jobs/ledger.sqlite --run-id zone-a-2026-11-22\n"
        "  onenet-dispatch track jobs/ledger.sqlite --run-id zone-a-2026-11-22 --watch --interval 10m\n\n"
        "exit codes: 0 every command succeeded on its device (with --watch: once all are final);\n"
        "1 otherwise; 2 invalid input",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
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
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (auth, timeouts)"
    )
    p.add_argument(
        "--base-url", metavar="URL", help="the platform's API base URL (default: the run's)"
    )

    p = sub.add_parser(
        "cancel",
        help="take back a run's commands still waiting on the platform",
        description="Cancel the run's queued commands that have not reached their device yet (PUT\n"
        "/nbiot/offline/cancel/{uuid}), at the job's rate; record them as cancelled. Commands already\n"
        "sent to a device cannot be cancelled: they are counted and shown in `export`. A cancelled\n"
        "run is never resumed: `run` refuses it unless given a new run id.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  onenet-dispatch cancel jobs/ledger.sqlite --run-id zone-a-2026-11-22 --dry-run\n"
        "  onenet-dispatch cancel jobs/ledger.sqlite --run-id zone-a-2026-11-22 --fleet zone-a",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
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
    p.add_argument(
        "--config", type=Path, metavar="CONFIG.yaml", help="tool config (auth, timeouts)"
    )
    p.add_argument(
        "--base-url", metavar="URL", help="the platform's API base URL (default: the run's)"
    )

    p = sub.add_parser(
        "resume",
        help='confirm the next wave of a run paused with pause_between_waves: "confirm"',
        description="Confirm the next wave of a run whose job says pause_between_waves: confirm.\n"
        "A run waiting at the pause goes on within seconds; a run that exited (--no-wait) starts\n"
        "the wave on its next `run`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  onenet-dispatch resume jobs/ledger.sqlite --run-id zone-a-2026-11-22",
    )
    p.add_argument("ledger", type=Path, metavar="LEDGER")
    p.add_argument("--run-id", required=True, metavar="ID")

    p = sub.add_parser(
        "simulate",
        help="serve a simulated OneNET platform on loopback for rehearsals",
        description="Serve a simulated OneNET platform that enforces the wire contract. It accepts the\n"
        "key in the environment variable named by --api-key-env. Its record of queued commands is at\n"
        "GET /_sim/commands (see docs/simulator.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ONENET_API_KEY=test onenet-dispatch simulate --port 8080 &\n"
        "  ONENET_API_KEY=test onenet-dispatch run jobs/example.yaml --base-url http://127.0.0.1:8080",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--api-key-env",
        default="ONENET_API_KEY",
        metavar="VAR",
        help="variable holding the accepted key",
    )
    p.add_argument(
        "--platform",
        choices=("legacy", "studio"),
        default="legacy",
        help="the console served: legacy (/nbiot, api-key) or studio (/nb-iot, tokens only)",
    )
    p.add_argument("--user-id", metavar="ID", help="accept user tokens (res userid/ID)")
    p.add_argument("--product-id", metavar="ID", help="accept product tokens (res products/ID)")
    p.add_argument(
        "--access-key-env",
        default="ONENET_ACCESS_KEY",
        metavar="VAR",
        help="with --user-id/--product-id: variable holding the base64 access key tokens are signed with",
    )
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="answer delay")
    p.add_argument(
        "--error-rate", type=float, default=0.0, metavar="SHARE", help="share answered errno 7"
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="PER_SECOND",
        help="answer errno 15 above this",
    )
    p.add_argument(
        "--delivery",
        action="store_true",
        help="devices wake up, receive their commands and confirm them (for `track` and `cancel`)",
    )
    p.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="with --delivery: simulated seconds per real second (600: ten minutes a second)",
    )
    p.add_argument(
        "--wake-interval",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with --delivery: simulated seconds between a device's uplinks (default 600)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        # written now, while a closed pipe can still be told apart from a bug
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _stdout_closed() -> int:
    """The reader of stdout went away (`... | head`): normal in a shell, so end quietly.

    Exit as a program killed by SIGPIPE would (128 + 13), which is what a shell expects of
    `yes | head`. stdout is pointed at /dev/null first: the interpreter flushes it on exit,
    and a second EPIPE there would print "Exception ignored ..." on stderr.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_STDOUT_CLOSED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Console(highlight=False, markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    try:
        if args.command == "validate":
            return _validate(args, out, err)
        if args.command == "run":
            return _run(args, out, err)
        if args.command == "export":
            return _export(args, out)
        if args.command == "schema":
            return _schema()
        if args.command == "report":
            return _report(args, out)
        if args.command == "status":
            return _status(args, out)
        if args.command == "track":
            return _track(args, out, err)
        if args.command == "cancel":
            return _cancel(args, out, err)
        if args.command == "resume":
            return _resume(args, out)
        if args.command == "reconcile":
            return _reconcile(args, out, err)
        if args.command == "simulate":
            return _simulate(args, err)
        raise AssertionError(f"unknown command {args.command}")
    except InputError as exc:
        for line in exc.lines():
            err.print(line, soft_wrap=True)
        err.print(
            f"invalid: {exc.errors or len(exc.problems)} problem(s); nothing was sent",
            style="bold red",
        )
        return exit_code_for(exc)
    except DispatcherError as exc:
        err.print(f"error: {exc}", style="bold red", soft_wrap=True)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        err.print("interrupted", style="bold red")
        return EXIT_SIGINT
    except BrokenPipeError:
        raise  # a closed stdout, not a bug: main ends quietly
    except Exception as exc:
        if os.environ.get("ONENET_DISPATCH_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}; this is a bug of onenet-dispatch, please report it"
            " (set ONENET_DISPATCH_DEBUG=1 to see the traceback)",
            style="bold red",
            soft_wrap=True,
        )
        return EXIT_SOFTWARE


def _validate(args: argparse.Namespace, out: Console, err: Console) -> int:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.logs import configure_logging
    from dispatcher.runner import RunOptions, run_job
    from dispatcher.show import print_run_summary

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
    configure_logging(err, _log_format(args))
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
            accept_changed_fleet=args.accept_changed_fleet,
            override_abort=args.override_abort,
            no_wait=args.no_wait,
            interactive=sys.stdin.isatty() and out.is_terminal,
            console=err,
            progress_interval=args.progress_interval,
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
    args: argparse.Namespace, out: Console, err: Console, ledger_path: Path, run_id: str
) -> bool:
    """The run's report on the terminal, and the files a pipeline asked for. False if one failed."""
    from dispatcher.clock import unix_now
    from dispatcher.ledger import Ledger
    from dispatcher.outputs import (
        append_github_step_summary,
        write_junit,
        write_metrics,
        write_summary_json,
    )
    from dispatcher.report import build_report, render_markdown, render_text

    ok = True
    with Ledger(ledger_path) as ledger:
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


def _report(args: argparse.Namespace, out: Console) -> int:
    from dispatcher.ledger import open_existing
    from dispatcher.report import build_report, render_json, render_markdown, render_text

    with open_existing(args.ledger) as ledger:
        if args.run_id is None:
            runs = ledger.runs()
            if not runs:
                raise InputError(f"{args.ledger}: no runs yet")
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


def _dry_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher import dryrun
    from dispatcher.check import check_job
    from dispatcher.config import check_base_url, load_config
    from dispatcher.runner import read_imei_file

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


def _status(args: argparse.Namespace, out: Console) -> int:
    from dispatcher.ledger import open_existing
    from dispatcher.show import print_status

    with open_existing(args.ledger) as ledger:
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
            )
    return EXIT_OK


def _resume(args: argparse.Namespace, out: Console) -> int:
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


def _export(args: argparse.Namespace, out: Console) -> int:
    from dispatcher.export import write
    from dispatcher.ledger import open_existing

    with open_existing(args.ledger) as ledger:
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


def _simulate(args: argparse.Namespace, err: Console) -> int:
    import anyio

    from dispatcher.simulator import SimulatorConfig, serve

    token = args.user_id is not None or args.product_id is not None
    if args.platform == "studio" and not token:
        raise InputError("--platform studio takes tokens only: give --user-id or --product-id")
    key = os.environ.get(args.api_key_env, "")
    if not key and args.platform == "legacy":
        raise InputError(f"set {args.api_key_env} to the key the simulator should accept")
    access = os.environ.get(args.access_key_env, "") if token else None
    if token and not access:
        raise InputError(f"set {args.access_key_env} to the access key tokens are signed with")
    try:
        config = SimulatorConfig(
            api_key=key or "unused-on-studio",
            platform=args.platform,
            user_id=args.user_id,
            product_id=args.product_id,
            access_key=access,
            latency=args.latency,
            error_rate=args.error_rate,
            rate_limit=args.rate_limit,
            delivery=args.delivery,
            clock_speed=args.clock_speed,
            wake_interval=args.wake_interval,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None

    def ready(base_url: str) -> None:
        err.print(
            f"simulator listening on {base_url} (record: {base_url}/_sim/commands); Ctrl-C stops it"
        )

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(functools.partial(serve, config, args.host, args.port, ready=ready))
    return EXIT_OK


def _reconcile(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.lifecycle import ReconcileOptions, reconcile_ledger
    from dispatcher.logs import configure_logging

    configure_logging(err)
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


def _log_format(args: argparse.Namespace) -> str:
    from dispatcher.config import load_config

    if args.log_format:
        return str(args.log_format)
    return load_config(args.config).log_format if args.config else "auto"


def _schema() -> int:
    from dispatcher.jobfile import job_schema

    sys.stdout.write(job_schema() + "\n")
    return EXIT_OK


def _only_run(path: Path) -> str:
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


def _track(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.lifecycle import TrackOptions, track_run
    from dispatcher.logs import configure_logging
    from dispatcher.timewindow import TimeSpecError, parse_duration

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
    configure_logging(err)
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


def _cancel(args: argparse.Namespace, out: Console, err: Console) -> int:
    from dispatcher.lifecycle import CancelOptions, cancel_run
    from dispatcher.logs import configure_logging
    from dispatcher.runner import read_imei_file

    configure_logging(err)
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
