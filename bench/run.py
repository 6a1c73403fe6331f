"""The benchmark suite (issue 7): the dispatcher against its ceiling and against what an
operator would use instead, rate accuracy, memory, the ledger, resume, start-up, and a
profile of the hot path.

    python bench/run.py                  # everything, under ten minutes on 2 cores
    python -m bench --only throughput rate
    python -m bench --quick              # smaller figures, to try the suite out
    python -m bench --checkout DIR       # the dispatcher of another checkout (a branch)

A benchmark, not a test: it prints a table and writes ``bench/results.json`` (and the
cProfile listing ``bench/profile-run.txt``); it asserts nothing about speed.

Every client talks to the project's simulator on loopback, in a process of its own (on
uvloop, to keep it off the critical path; how busy it was is reported next to each
figure). Every client sends the same requests: those ``onenet-dispatch run --dry-run``
prints for the job. Rates are read from the simulator's arrival times (``GET
/_sim/requests``), first arrival to last, so start-up and shut-down count for no
client; CPU per request is the client's CPU over that same span, sampled from /proc,
as is the CPU other processes of the machine used meanwhile (a run during which they
used more than ``QUIET`` cores counts as disturbed). Each figure is a median of
several runs; each ratio is a median of ratios taken within one round, in which the
clients run one after the other, the order rotated from round to round, and only
pairs of undisturbed runs count when there are any. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Sim,
    machine,
    simulator_process,
    use_checkout,
)
from bench.sections import SECTIONS, SUITE  # noqa: E402
from bench.suite import (  # noqa: E402
    CONCURRENCY,
    QUICK,
    Scale,
    Suite,
    log,
    tmpfs_dir,
)

OUT = Path(__file__).resolve().with_name("results.json")


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: what, the value, the target, met or not (each section's own)."""
    rows: list[dict[str, Any]] = []

    def add(
        figure: str, value: str, target: str = "", met: bool | None = None, note: str = ""
    ) -> None:
        rows.append({"figure": figure, "value": value, "target": target, "met": met, "note": note})

    for section in SUITE:
        result = results.get(section.name)
        if result:
            section.load().rows(result, add)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["figure"]) for r in rows)
    vwidth = min(70, max(len(r["value"]) for r in rows))
    print()
    print(f"{'figure':<{width}}  {'value':<{vwidth}}  {'target':<8}  met")
    print("-" * (width + vwidth + 20))
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        note = f"  ({r['note']})" if r["note"] else ""
        print(f"{r['figure']:<{width}}  {r['value']:<{vwidth}}  {r['target']:<8}  {met}{note}")


def print_markdown(rows: list[dict[str, Any]]) -> None:
    print("| figure | value | target | met |")
    print("|---|---|---|---|")
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['figure']} | {r['value']}{note} | {r['target']} | {met} |")


def git_state(checkout: Path) -> dict[str, Any]:
    """Which code was measured: the commit, and what in dispatcher/ differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "checkout": "this one" if checkout == ROOT else "another (--checkout)",
        "commit": git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_in_dispatcher": git("status", "--porcelain", "--", "dispatcher").splitlines(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[s.name for s in SUITE],
        metavar="SECTION",
        help=f"some of: {' '.join(s.name for s in SUITE)}",
    )
    parser.add_argument("--quick", action="store_true", help="small figures, to try the suite out")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="where the JSON goes (default bench/results.json)"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="measure the dispatcher package of another checkout (e.g. a git worktree)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table of an existing results file (--out) as markdown; run nothing",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print_markdown(table(json.loads(args.out.read_text(encoding="utf-8"))))
        return 0
    if args.checkout.resolve() != ROOT:
        use_checkout(args.checkout)
    scale = QUICK if args.quick else Scale()
    sections = args.only or [s.name for s in SUITE]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(args.checkout.resolve()),
        "scale": scale.__dict__,
        "concurrency": CONCURRENCY,
        "section_seconds": {},
    }
    failed: list[str] = []
    fast = tmpfs_dir()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="onenet-bench-") as tmp,
            simulator_process(uvloop=True) as (url, proc),
        ):
            suite = Suite(scale, Path(tmp), fast, Sim(url, proc), results)
            for name in sections:
                log(f"{name}:")
                t0 = time.perf_counter()
                try:
                    results[name] = SECTIONS[name].load().run(suite)
                except Exception as exc:  # one broken section must not cost the others' figures
                    failed.append(name)
                    results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                    log(f"  FAILED: {type(exc).__name__}: {str(exc)[:3000]}")
                took = round(time.perf_counter() - t0, 1)
                results["section_seconds"][name] = took
                log(f"  ({took} s)")
                args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    finally:
        if fast is not None:
            shutil.rmtree(fast, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = os.getloadavg()
    rows = table(results)
    results["table"] = rows
    print_table(rows)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\n{results['seconds']:.0f} s in all; wrote {args.out}")
    if failed:
        print(f"sections that failed: {', '.join(failed)} (see 'errors' in the JSON)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
