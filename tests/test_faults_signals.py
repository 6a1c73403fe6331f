"""SIGTERM and SIGINT sent to the real CLI in a subprocess: a first signal lets requests in
flight be answered and recorded, then exits 143/130 with a resumable ledger; a second SIGINT
stops at once and the ledger stays consistent. Nothing is ever sent twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_job

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "dispatcher", "run")
DEVICES = 200


def spawn(job: Path, sim: Simulator, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`onenet-dispatch run` as a user starts it, its output kept in files beside the ledger."""
    env = {
        **os.environ,
        "ONENET_API_KEY": API_KEY,
        # the repo first: the CLI must import this checkout whatever the working directory
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    n = len(list(ledger.parent.glob("run-*.out")))
    with (
        open(ledger.parent / f"run-{n}.out", "wb") as out,
        open(ledger.parent / f"run-{n}.err", "wb") as err,
    ):
        return subprocess.Popen(
            [*CLI, str(job), "--base-url", sim.base_url, "--ledger", str(ledger), *extra],
            stdout=out,
            stderr=err,
            env=env,
        )


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    # generous: a CLI starting on a busy shared runner may take many seconds to get going
    deadline = time.monotonic() + 120
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before the moment to signal it")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("the run did not get there within 120 s")
        time.sleep(0.002)


def ledger_rows(ledger: Path) -> dict[tuple[str, int], tuple[str, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        found = db.execute("SELECT imei, command, status, uuid FROM items").fetchall()
    finally:
        db.close()
    return {(i, c): (s, u) for i, c, s, u in found}


def queued(sim: Simulator) -> dict[tuple[str, int], str]:
    """The simulator's record as work items; fails if any was queued twice."""
    keys = Counter((c.imei, c.op) for c in sim.commands)
    assert {1} >= set(keys.values()), "a device got the same command twice"
    return {(c.imei, 0 if c.op == "write" else 1): c.uuid for c in sim.commands}


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_signal_mid_run_finishes_in_flight_and_resumes(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """One signal mid-run: exit 143/130, every queued command recorded ok, no `sending` row; the rerun completes."""
    job = write_job(tmp_path, DEVICES, rate=400, concurrency=8)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(latency=0.02, latency_jitter=0.02) as sim:
        proc = spawn(job, sim, ledger)
        wait_until(lambda: len(sim.commands) >= 120, proc)
        proc.send_signal(signum)
        assert code == proc.wait(120)
        # the text output says how to go on, naming the run
        stderr = (ledger.parent / "run-0.err").read_text(encoding="utf-8")
        assert (
            f"stopped by {signum.name}; resume: run the same command again (run id test-job)"
            in (stderr)
        )
        sent = queued(sim)
        rows = ledger_rows(ledger)
        assert 120 <= len(sent) < 2 * DEVICES
        # in-flight requests were answered and recorded before the exit
        assert {"ok", "pending"} >= {s for s, _ in rows.values()}
        assert {k: ("ok", u) for k, u in sent.items()} == {
            k: v for k, v in rows.items() if v[0] == "ok"
        }

        rerun = spawn(job, sim, ledger)
        assert 0 == rerun.wait(60)
        sent = queued(sim)
    assert {(imei(i), c) for i in range(DEVICES) for c in (0, 1)} == set(sent)
    assert {k: ("ok", u) for k, u in sent.items()} == ledger_rows(ledger)


def test_second_sigint_stops_at_once_leaving_a_consistent_ledger(tmp_path: Path) -> None:
    """Two SIGINTs: exit 130 without waiting for slow answers; the rerun sends nothing twice."""
    job = write_job(tmp_path, DEVICES, rate=400, concurrency=8)
    ledger = tmp_path / "ledger.sqlite"
    err = ledger.parent / "run-0.err"
    # Answers slower than the test (the simulator's teardown does not wait for them): had
    # the run waited for them, their rows would be ok, which the checks below rule out
    # without timing anything.
    with simulator(latency=600.0) as sim:
        proc = spawn(job, sim, ledger)
        wait_until(lambda: len(sim.requests) >= 8, proc)  # eight requests in flight
        proc.send_signal(signal.SIGINT)
        # The second only once the first was handled: two signals sent while the process
        # waits for a core are one signal to it (the kernel keeps one pending SIGINT).
        wait_until(lambda: '"stopping"' in err.read_text(encoding="utf-8"), proc)
        proc.send_signal(signal.SIGINT)
        assert 130 == proc.wait(60)
        stderr = err.read_text(encoding="utf-8")
        assert "resume: run the same command again (run id test-job)" in stderr
        sent = queued(sim)
        rows = ledger_rows(ledger)
        assert 2 * DEVICES == len(rows)
        # the abandoned requests are still marked as sent: the next run knows to look for them
        assert set(sent) <= {k for k, (s, _) in rows.items() if s == "sending"}
        assert {"sending", "pending"} >= {s for s, _ in rows.values()}

        sim.config.latency = 0.0
        rerun = spawn(job, sim, ledger)
        code = rerun.wait(60)
        sent = queued(sim)
    rows = ledger_rows(ledger)
    statuses = Counter(s for s, _ in rows.values())
    print(f"after two SIGINTs and a rerun: {dict(statuses)}")
    assert 0 == statuses["sending"]
    for key, uuid in sent.items():
        assert rows[key] in (("ok", uuid), ("in_doubt", None))
    for (device, command), (status, _) in rows.items():
        if status == "pending":  # only behind a command still in doubt
            assert "in_doubt" == rows[(device, 0)][0] and 1 == command
        assert status in ("ok", "in_doubt", "pending")
    assert (0 if set(statuses) == {"ok"} else 1) == code


def test_stop_during_a_retry_backoff_sends_nothing_more(tmp_path: Path) -> None:
    """SIGTERM while a request waits out a 300 s Retry-After: exit 143, no further attempt, the row pending."""
    write = "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"
    job = write_job(tmp_path, 1, commands=write)
    ledger = tmp_path / "ledger.sqlite"
    config = tmp_path / "config.yaml"
    config.write_text("retries: {attempts: 5, backoff_base: 0.01, backoff_max: 600}\n")
    # A wait no stall of a busy machine outlasts: the retry can only come after the signal.
    with simulator(http_503_rate=1.0, retry_after=300) as sim:
        proc = spawn(job, sim, ledger, "--config", str(config))
        wait_until(lambda: len(sim.requests) >= 1, proc)
        time.sleep(0.3)  # into the 300 s wait
        proc.send_signal(signal.SIGTERM)
        assert 143 == proc.wait(60)
        assert [503] == [r.status for r in sim.requests]
    assert {(imei(0), 0): ("pending", None)} == ledger_rows(ledger)
