"""Wall time and peak memory of a run's report and output files, on ledgers of growing size.

A benchmark, not a test: it prints figures and writes ``bench/report_speed.json``.
Each ledger is filled through the ``Ledger`` API a run uses (4 commands per device;
about 90% ok, 5% failed with two errnos and their skips, 2% in doubt, the rest
pending). Filling and reporting each run in a fresh interpreter: Linux keeps a
child's peak RSS across exec, so a child forked from a parent that had filled a
million rows would report the parent's memory, not the report's. The report's peak
RSS (read with ``os.wait4``) must stay flat as the ledger grows.

    .venv/bin/python bench/report_speed.py                    # 10k and 1M rows
    .venv/bin/python bench/report_speed.py --sizes 100000
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import luhn, measure
from dispatcher.ledger import Answer, Ledger, RunRecord, Status
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register, SkipRest, WriteOp

RUN = "bench"
OPS = ["write", "read", "write", "read"]
ERRORS = [(10, "device not exist"), (2001, "not supported")]


def fill(path: Path, rows: int) -> None:
    """A ledger of ``rows`` rows (4 per device) in one run, as a run would have left it."""
    rng = random.Random(6)
    with Ledger(path) as ledger:
        ledger.start_run(
            RunRecord(
                RUN,
                "bench",
                "job.yaml",
                "hash",
                "http://127.0.0.1:1",
                None,
                "2026-11-24T10:00:00+08:00",
                1.0,
                1.0,
                None,
                "running",
                None,
            )
        )
        devices = rows // len(OPS)
        batch = 5000
        for start in range(0, devices, batch):
            fleet_of = [
                (luhn(f"86{i:012d}"), f"fleet-{i % 4}", OPS)
                for i in range(start, min(devices, start + batch))
            ]
            ledger.apply([Register(RUN, fleet_of)])
            ops: list[WriteOp] = []
            for imei, _, _ in fleet_of:
                for command in range(len(OPS)):
                    sent = 100.0 + rng.random()
                    took = rng.expovariate(2.0)
                    x = rng.random()
                    if x < 0.90:
                        a = Answer(imei, command, Status.OK, "u", 0, None, 200, 1, sent + took)
                    elif x < 0.95:
                        errno, error = rng.choice(ERRORS)
                        a = Answer(
                            imei, command, Status.FAILED, None, errno, error, 200, 1, sent + took
                        )
                        ops.append(MarkSending(RUN, imei, command, sent))
                        ops.append(RecordAnswer(RUN, a))
                        ops.append(
                            SkipRest(RUN, imei, command, f"command {command} failed; not sent")
                        )
                        break
                    elif x < 0.97:
                        a = Answer(
                            imei,
                            command,
                            Status.IN_DOUBT,
                            None,
                            None,
                            "HTTP 502",
                            502,
                            1,
                            sent + 30,
                        )
                    else:
                        break  # the rest of this device stays pending
                    ops.append(MarkSending(RUN, imei, command, sent))
                    ops.append(RecordAnswer(RUN, a))
            ledger.apply(ops)
        ledger.end_run(RUN, 4000.0, "finished", None)


def report_child(ledger_path: Path, out_path: Path) -> None:
    """Runs in the measured child: every output of a report, each timed."""
    from rich.console import Console

    from dispatcher.outputs import write_junit, write_metrics, write_summary_json
    from dispatcher.report import build_report, render_json, render_markdown, render_text

    figures: dict[str, float] = {}
    directory = ledger_path.parent
    with Ledger(ledger_path) as ledger:
        start = time.perf_counter()
        report = build_report(ledger, RUN)
        figures["build_report"] = time.perf_counter() - start
        start = time.perf_counter()
        render_text(report, Console(file=io.StringIO(), width=120, markup=False, highlight=False))
        render_markdown(report)
        render_json(report)
        figures["render_all"] = time.perf_counter() - start
        start = time.perf_counter()
        write_summary_json(report, directory / "summary.json")
        write_metrics(report, directory / "onenet.prom", now=time.time())
        figures["summary_and_metrics"] = time.perf_counter() - start
        start = time.perf_counter()
        write_junit(report, ledger, RUN, directory / "junit.xml")
        figures["write_junit"] = time.perf_counter() - start
    figures["junit_kib"] = (directory / "junit.xml").stat().st_size / 1024
    out_path.write_text(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,1000000", help="rows per ledger, comma-separated")
    parser.add_argument("--child", nargs=2, metavar=("LEDGER", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--fill", nargs=2, metavar=("LEDGER", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        report_child(Path(args.child[0]), Path(args.child[1]))
        return
    if args.fill:
        fill(Path(args.fill[0]), int(args.fill[1]))
        return
    results = []
    for rows in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Path(tmp) / "ledger.sqlite"
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--fill", str(ledger), str(rows)], check=True)
            filled = time.perf_counter() - start
            out = Path(tmp) / "figures.json"
            m = measure([sys.executable, __file__, "--child", str(ledger), str(out)])
            if m.returncode != 0:
                print(m.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"report of {rows} rows exited {m.returncode}")
            figures = json.loads(out.read_text())
            results.append(
                {
                    "rows": rows,
                    "ledger_mb": round(ledger.stat().st_size / 2**20, 1),
                    "fill_seconds": round(filled, 1),
                    **{k: round(v, 2) for k, v in figures.items()},
                    "child_seconds": round(m.seconds, 2),
                    "peak_rss_mb": round(m.max_rss_mb, 1),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    print()
    print(f"{'rows':>9} {'report s':>9} {'junit s':>8} {'child s':>8} {'peak RSS MB':>12}")
    for r in results:
        print(
            f"{r['rows']:>9} {r['build_report']:>9} {r['write_junit']:>8}"
            f" {r['child_seconds']:>8} {r['peak_rss_mb']:>12}"
        )
    target = Path(__file__).with_suffix(".json")
    target.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    print(f"\nwritten to {target}")


if __name__ == "__main__":
    main()
