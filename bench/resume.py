"""A completed run's ledger, built fast through the ``Ledger`` API, for the resume benchmark.

    python -m bench.resume JOB.yaml LEDGER BASE_URL [--run-id bench]

Every device of the job's fleets gets its rows registered and answered ``ok`` in big
batches (one transaction each), and the run is recorded as finished with the job's
fingerprint, window and target: what a run of that job to ``BASE_URL`` leaves behind.
Running the job again on this ledger then has nothing left to send; how long that
takes is the resume figure. Runs as a child process so that its memory and CPU are
not the benchmark's.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    CHILD_ENV,
    measure,
)
from bench.profiles import cprofile_summary, spy_summary
from bench.suite import (
    RESUME_CAP,
    Add,
    Suite,
    completed_ledger,
    dispatch_args,
    log,
    py_spy,
    rerun,
    spy_args,
)
from dispatcher.jobfile import load_job
from dispatcher.ledger import Answer, Ledger, RunRecord, Status
from dispatcher.ledger.ops import RecordAnswer, Register
from dispatcher.plan import Op, Plan

BATCH = 20_000  # devices per transaction


def fleet_rows(plan: Plan) -> Iterator[tuple[str, str]]:
    """(imei, fleet) of every row of the job's CSV fleets, read straight from the files.

    The benchmark's fleets are valid and free of duplicates, so this is what the plan
    yields, without the cost of checking each row (that cost is what is measured).
    """
    for spec in plan.job.fleets:
        assert spec.csv is not None, "the benchmark's fleets are CSV files"
        with (plan.loaded.path.parent / spec.csv).open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            column = next(rows).index("imei")
            for row in rows:
                yield row[column], spec.name


def fill(job: Path, ledger_path: Path, target: str, run_id: str) -> int:
    """Rows written; the ledger of a finished run of ``job`` in which every row is ok."""
    plan = Plan(load_job(job))
    window = plan.window_at(datetime.now(UTC))
    ops = [t.op for t in plan.templates]
    devices = sum(1 for _ in fleet_rows(plan))
    now = time.time()
    rows = 0
    with Ledger(ledger_path) as ledger:
        ledger.start_run(
            RunRecord(
                run_id=run_id,
                job_name=plan.job.name,
                job_path=str(job.resolve()),
                job_hash=plan.job.fingerprint(),
                target=target,
                valid_time=window.valid.isoformat() if window.valid else None,
                expired_time=window.expired.isoformat(),
                first_started_at=now,
                started_at=now,
                ended_at=None,
                state="running",
                reason=None,
                devices=devices,
                waves=len(plan.job.rollout.waves),
                rollout=plan.job.rollout.model_dump_json(),
            )
        )
        batch: list[tuple[str, str, list[Op]]] = []

        def flush() -> None:
            nonlocal rows
            answers = [
                RecordAnswer(run_id, Answer(imei, i, Status.OK, "uuid", 0, None, 200, 1, now))
                for imei, _, ops in batch
                for i in range(len(ops))
            ]
            ledger.apply([Register(run_id, batch), *answers])
            rows += len(answers)
            batch.clear()

        for imei, fleet in fleet_rows(plan):
            batch.append((imei, fleet, ops))
            if len(batch) >= BATCH:
                flush()
        if batch:
            flush()
        ledger.end_run(run_id, time.time(), "finished", None)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("base_url")
    parser.add_argument("--run-id", default="bench")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = fill(args.job, args.ledger, args.base_url, args.run_id)
    print(f"{rows} rows in {time.perf_counter() - started:.1f} s")


# -- the section (python -m bench resume) --------------------------------------


def forget_completion(ledger: Path) -> None:
    """The next rerun takes the full path: the ledger no longer records that a pass of
    these files completed (the rerun shortcut's mark)."""
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE runs SET inputs_hash = NULL")
    db.close()


def run(suite: Suite) -> dict[str, Any]:
    scale = suite.scale
    job, ledger, filled = completed_ledger(suite, scale.resume_rows, "resume")
    log(f"  filled a {scale.resume_rows}-row ledger in {filled:.1f} s")
    result: dict[str, Any] = {
        "rows": scale.resume_rows,
        "fill_seconds": round(filled, 1),
        "ledger_mb": round(ledger.stat().st_size / 2**20, 1),
    }
    # The first rerun finds a ledger filled through the API: nothing records that a run
    # of these files completed, so it takes the full path (check, then stream and
    # register every device). The second is a rerun of a run whose last pass completed.
    # The third takes the full path again, now over rows that hold their request hashes
    # (the first stored them): what a resume of a run that stopped midway, or over a
    # fleet file reordered, does. The first pays for a ledger from before request hashes.
    for name in ("first_rerun", "second_rerun", "hashed_rerun"):
        if name == "hashed_rerun":
            forget_completion(ledger)
        done = rerun(suite, job, ledger)
        result[name] = done
        if done is None:
            log(f"  {name}: over {RESUME_CAP:.0f} s, stopped")
            break
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in done["phases_seconds"].items())
        log(
            f"  {name} of a completed {scale.resume_rows}-row run: {done['seconds']:.1f} s ({phases})"
        )
    for f in suite.tmp.glob("resume.sqlite*"):
        f.unlink()
    # Where the time goes, on a smaller ledger.
    rows = scale.resume_profile_rows
    job, ledger, _ = completed_ledger(suite, rows, "resume-profile")
    spy = py_spy()
    if spy is not None:
        samples = suite.tmp / "resume.spy"
        m = measure([*spy_args(spy, samples), *dispatch_args(job, suite, ledger)], CHILD_ENV)
        summary = spy_summary(samples, only_sending=False)
    else:
        profile = suite.tmp / "resume.prof"
        m = measure(dispatch_args(job, suite, ledger, "--cprofile", str(profile)), CHILD_ENV)
        summary = cprofile_summary(profile, rows)
    if m.returncode != 0:
        raise RuntimeError(f"resume profile: exit {m.returncode}\n{m.stderr[-2000:]}")
    result["profile"] = {"rows": rows, "profiler": "py-spy" if spy else "cProfile", **summary}
    return result


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    res = result
    if res and "first_rerun" in res:
        for name, label in (
            ("second_rerun", "6. rerun of a completed {:,}-row run"),
            ("first_rerun", "6. the same, first rerun of a ledger filled through the API"),
            ("hashed_rerun", "6. the same, full path over rows holding their request hashes"),
        ):
            if name not in res:
                continue  # results written before this rerun was measured
            done = res.get(name)
            value = f"> {RESUME_CAP:.0f} s" if done is None else f"{done['seconds']:.1f} s"
            met = done is not None and done["seconds"] < 20
            if name in ("first_rerun", "hashed_rerun") and done is not None:
                value += (
                    " ("
                    + ", ".join(f"{k} {v:.1f} s" for k, v in done["phases_seconds"].items())
                    + ")"
                )
            add(label.format(res["rows"]), value, "< 20 s", met)
    elif res:  # results written before the second rerun was measured
        add(
            f"6. rerun of a completed {res['rows']:,}-row run",
            f"{res['seconds']:.1f} s",
            "< 20 s",
            res["seconds"] < 20,
        )


if __name__ == "__main__":
    main()
