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
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from dispatcher.jobfile import load_job
from dispatcher.ledger import Answer, Ledger, RunRecord, Status
from dispatcher.ledger.ops import RecordAnswer, Register
from dispatcher.plan import Plan

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
        batch: list[tuple[str, str, list[str]]] = []

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("base_url")
    parser.add_argument("--run-id", default="bench")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = fill(args.job, args.ledger, args.base_url, args.run_id)
    print(f"{rows} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
