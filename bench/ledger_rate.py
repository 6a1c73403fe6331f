"""Rows per second the ledger commits with its durability settings, batch by batch.

    python -m bench.ledger_rate DIR [--batches 1,16,64] [--seconds 1.5]

Drives ``Ledger.apply`` in a thread the way the run's writer does: each request costs
two operations, ``sending`` (written ahead) and ``answer``, and a batch of B operations
is one transaction (one fsync with the ledger's WAL + ``synchronous=FULL``). Batch 1
is a writer that never groups; a run at concurrency 32 groups up to about 2 x 32.
Prints one JSON line per batch size: operations/s, rows/s (a row = one request
recorded, i.e. two operations) and commits/s. Rows are registered beforehand, outside
the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CHILD_CWD,
    CHILD_ENV,
)
from bench.suite import (
    PY,
    Add,
    Suite,
    log,
)
from dispatcher.ledger import Answer, Ledger, RunRecord, Status
from dispatcher.ledger.ops import MarkSending, RecordAnswer, Register, WriteOp

RUN = "bench"
ROWS_PER_BATCH_SIZE = 60_000  # more than any batch size gets through in the time given


def _record() -> RunRecord:
    return RunRecord(
        RUN,
        "bench",
        "job.yaml",
        "hash",
        "http://127.0.0.1:9",
        None,
        "2026-11-24T10:00:00+08:00",
        1.0,
        1.0,
        None,
        "running",
        None,
    )


def prepare(path: Path, devices: int) -> list[str]:
    imeis = [f"86{i:013d}" for i in range(devices)]  # the ledger does not check IMEIs
    with Ledger(path) as ledger:
        ledger.start_run(_record())
        for start in range(0, devices, 20_000):
            chunk = imeis[start : start + 20_000]
            ledger.apply([Register(RUN, [(imei, "all", ["write"]) for imei in chunk])])
    return imeis


def drive(ledger: Ledger, imeis: list[str], batch: int, seconds: float) -> dict[str, float]:
    """Apply ``sending``/``answer`` pairs in batches of ``batch`` operations for ``seconds``."""
    out: dict[str, float] = {}

    def work() -> None:
        ops: list[WriteOp] = []
        for imei in imeis[:ROWS_PER_BATCH_SIZE]:
            now = time.time()
            ops.append(MarkSending(RUN, imei, 0, now))
            ops.append(RecordAnswer(RUN, Answer(imei, 0, Status.OK, "u", 0, None, 200, 1, now)))
        done = commits = 0
        started = time.perf_counter()
        while done < len(ops) and time.perf_counter() - started < seconds:
            ledger.apply(ops[done : done + batch])
            done += batch
            commits += 1
        elapsed = time.perf_counter() - started
        out.update(
            batch=batch,
            ops_per_second=done / elapsed,
            rows_per_second=done / 2 / elapsed,
            commits_per_second=commits / elapsed,
            seconds=elapsed,
        )

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args(argv)
    path = args.directory / "ledger-rate.sqlite"
    batches = [int(b) for b in args.batches.split(",")]
    imeis = prepare(path, ROWS_PER_BATCH_SIZE * len(batches))
    with Ledger(path) as ledger:
        for i, batch in enumerate(batches):
            rows = imeis[i * ROWS_PER_BATCH_SIZE : (i + 1) * ROWS_PER_BATCH_SIZE]
            print(json.dumps(drive(ledger, rows, batch, args.seconds)), flush=True)


# -- the section (python -m bench ledger) --------------------------------------


def run(suite: Suite) -> dict[str, Any]:
    out: dict[str, Any] = {}
    places = {"disk": suite.tmp / "ledger-rate"}
    if suite.fast is not None:
        places["tmpfs"] = suite.fast / "ledger-rate"
    for where, folder in places.items():
        folder.mkdir()
        done = subprocess.run(
            [
                PY,
                "-m",
                "bench.ledger_rate",
                str(folder),
                "--seconds",
                str(suite.scale.ledger_seconds),
            ],
            env={**os.environ, **CHILD_ENV},
            cwd=CHILD_CWD,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        out[where] = {
            str(r["batch"]): {k: round(v, 1) for k, v in r.items() if k != "batch"} for r in rows
        }
        for r in rows:
            log(
                f"  {where:<5} batch {r['batch']:>3}: {r['rows_per_second']:9.0f} rows/s"
                f"  {r['commits_per_second']:7.0f} commits/s"
            )
        shutil.rmtree(folder)
    return out


def rows(result: Any, add: Add) -> None:
    """This section's figures and their targets."""
    led = result
    if led:
        for where, batches in led.items():
            add(
                f"5. Ledger.apply rows/s ({where})",
                ", ".join(f"batch {b}: {x['rows_per_second']:,.0f}" for b, x in batches.items()),
            )


if __name__ == "__main__":
    main()
