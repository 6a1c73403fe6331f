"""kill -9 at many moments of a real run: nothing lost, nothing sent twice.

The simulator serves from a thread of this process, so it outlives every kill and keeps
the record of what it queued. The real CLI runs in a subprocess on a few-thousand-device
job and is SIGKILLed at seeded points: most after a number of commands queued by that
invocation (so the kill lands among requests in flight), a few after a delay from its
start (so it lands in start-up, reconciliation or the first sends). After every kill the
ledger is checked against the simulator's record; after the last, uninterrupted rerun the
whole run is.

It runs on both backends (``ledger_target``): a SQLite file, and a PostgreSQL database
whose run lock the server must free when the killed process's connection drops.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dispatcher.simulator import Simulator
from tests.helpers import API_KEY, imei, simulator, write_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "dispatcher", "run")
SEED = 20261122
DEVICES = 2500
COMMANDS = 2  # a write, then a read
CONCURRENCY = 16  # workers: after a kill, at most one row per worker is in doubt
# The kill points: 28 in all, in a seeded order.
AFTER_QUEUED_KILLS = 20  # after 1..250 commands queued by the invocation: among requests in flight
AFTER_FIRST_SEND_KILLS = 5  # 0..0.6 s after its first command was queued: any moment of sending
START_UP_KILLS = 3  # 0.05..1.2 s after it started: start-up, reconciliation, the first sends
RUN_ID = "test-job"

Key = tuple[str, int]  # (imei, command index)
Row = tuple[str, str | None, str | None]  # status, uuid, error


@dataclass(frozen=True)
class KillPoint:
    queued: int | None = None  # kill once this invocation got this many commands queued
    after_first: float | None = None  # or this long after its first command was queued
    after_start: float | None = None  # or this long after it was started


def kill_plan(rng: random.Random) -> list[KillPoint]:
    points = [KillPoint(queued=rng.randint(1, 250)) for _ in range(AFTER_QUEUED_KILLS)]
    points += [KillPoint(after_first=rng.uniform(0, 0.6)) for _ in range(AFTER_FIRST_SEND_KILLS)]
    points += [KillPoint(after_start=rng.uniform(0.05, 1.2)) for _ in range(START_UP_KILLS)]
    rng.shuffle(points)
    return points


def reached(point: KillPoint, sim: Simulator, before: int, started: float) -> Callable[[], bool]:
    """Whether an invocation started at ``started``, with ``before`` commands queued, is at ``point``."""
    if point.queued is not None:
        target = before + point.queued
        return lambda: len(sim.commands) >= target
    if point.after_start is not None:
        until = started + point.after_start
        return lambda: time.monotonic() >= until
    assert point.after_first is not None
    delay = point.after_first
    first: list[float] = []

    def after_first() -> bool:
        if not first and len(sim.commands) > before:
            first.append(time.monotonic())
        return bool(first) and time.monotonic() >= first[0] + delay

    return after_first


def spawn(job: Path, sim: Simulator, ledger: str, log: Path) -> subprocess.Popen[bytes]:
    """`onenet-dispatch run` as a user starts it (stderr kept for a failure's message)."""
    env = {
        **os.environ,
        "ONENET_API_KEY": API_KEY,
        # an internal error's whole traceback (every task of an ExceptionGroup) in the log
        "ONENET_DISPATCH_DEBUG": "1",
        # the repo first: the CLI must import this checkout whatever the working directory
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    with open(log, "ab") as err:
        return subprocess.Popen(
            [*CLI, str(job), "--base-url", sim.base_url, "--ledger", str(ledger)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], limit: float) -> bool:
    """True when the condition held while the run was still alive; False if it ended first."""
    deadline = time.monotonic() + limit
    while proc.poll() is None:
        if condition():
            return True
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no kill point within {limit} s")
        time.sleep(0.001)
    return False


def settle(sim: Simulator) -> None:
    """Let the simulator finish requests the dead client left behind (they may still queue)."""
    deadline = time.monotonic() + 5
    while sim.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)


def ledger_rows(ledger: str) -> dict[Key, Row]:
    """The run's rows, read with the database's own driver (not the product's code)."""
    query = "SELECT imei, command, status, uuid, error FROM items WHERE run_id = "
    if ledger.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(ledger) as conn:
            found = conn.execute(query + "%s", (RUN_ID,)).fetchall()
    else:
        db = sqlite3.connect(ledger)
        try:
            found = db.execute(query + "?", (RUN_ID,)).fetchall()
        finally:
            db.close()
    rows = {(i, c): (s, u, e) for i, c, s, u, e in found}
    assert len(found) == len(rows), "a work item has more than one row"
    return rows


def queued(sim: Simulator) -> dict[Key, str]:
    """The simulator's record as work items; fails if a device got a command twice."""
    counts = Counter((c.imei, c.op) for c in sim.commands)
    twice = [key for key, n in counts.items() if n > 1]
    assert [] == twice, "devices commanded twice"
    return {(c.imei, 0 if c.op == "write" else 1): c.uuid for c in sim.commands}


def check_write_ahead(rows: dict[Key, Row], sent: dict[Key, str], when: str) -> None:
    """Every queued command is in the ledger as sent: its row may not say it is still to send."""
    for key, uuid in sent.items():
        status, row_uuid, _ = rows.get(key, ("missing", None, None))
        if status == "ok":
            assert uuid == row_uuid, f"{when}: {key} ok with another uuid"
        else:
            assert status in ("sending", "in_doubt"), f"{when}: {key} queued but {status}"
    for key, (status, _, _) in rows.items():
        if status == "ok":
            assert key in sent, f"{when}: {key} ok but never queued"


def test_kill_9_at_many_points_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, ledger_target: str
) -> None:
    """Killed with SIGKILL at 28 seeded points, then rerun: one row per item, no device commanded twice, every queued command accounted for."""
    rng = random.Random(SEED)
    plan = kill_plan(rng)
    job = write_job(tmp_path, DEVICES, rate=800, concurrency=CONCURRENCY)
    ledger = ledger_target
    log = tmp_path / "runs.err"
    kills: list[str] = []
    # rows found `sending` after a kill (their request was in flight), and whether it had arrived
    in_flight: dict[Key, bool] = {}
    # rows a kill left `sending` that were not so before that invocation: its in-doubt group
    in_doubt_per_kill: list[int] = []
    with simulator(latency=0.003, latency_jitter=0.004, seed=SEED) as sim:
        for n, point in enumerate(plan):
            before = len(sim.commands)
            was_sending = (
                {k for k, r in ledger_rows(ledger).items() if r[0] == "sending"} if n else set()
            )
            started = time.monotonic()
            proc = spawn(job, sim, ledger, log)
            alive = wait_for(reached(point, sim, before, started), proc, 120)
            if not alive:
                break  # the run finished before this point: the rest of the plan is moot
            proc.send_signal(signal.SIGKILL)
            assert -signal.SIGKILL == proc.wait(60)
            settle(sim)
            where = f"kill {n + 1} (+{len(sim.commands) - before} queued, {time.monotonic() - started:.2f} s)"
            kills.append(where)
            rows, sent = ledger_rows(ledger), queued(sim)
            check_write_ahead(rows, sent, where)
            # Intents and answers are committed in groups; a worker's answer is in the same
            # commit as its next mark or an earlier one, so one row per worker at most.
            left = {k for k, (status, _, _) in rows.items() if status == "sending"} - was_sending
            assert len(left) <= CONCURRENCY, f"{where}: {len(left)} rows in doubt"
            in_doubt_per_kill.append(len(left))
            in_flight.update(
                (key, key in sent) for key, (status, _, _) in rows.items() if status == "sending"
            )

        final = spawn(job, sim, ledger, log)
        code = final.wait(300)
        settle(sim)
        sent = queued(sim)
        requests = len(sim.requests)
    assert code in (0, 1), log.read_text(errors="replace")[-3000:]

    rows = ledger_rows(ledger)
    expected = {(imei(i), c) for i in range(DEVICES) for c in range(COMMANDS)}
    assert expected == set(rows), "one row per work item, and no other"
    check_write_ahead(rows, sent, "after the last run")
    statuses = Counter(status for status, _, _ in rows.values())
    assert 0 == statuses["sending"]
    assert {"ok", "in_doubt", "pending"} >= set(statuses)
    for (device, command), (status, _, _) in rows.items():
        if status == "pending":
            # held behind an earlier command still in doubt, and never queued
            assert (device, command) not in sent
            assert any(rows[(device, c)][0] == "in_doubt" for c in range(command))
    assert (0 if set(statuses) == {"ok"} else 1) == code

    in_doubt = [key for key, (status, _, _) in rows.items() if status == "in_doubt"]
    reconciled = sum(1 for _, _, error in rows.values() if error and "reconciled" in error)
    arrived = sum(in_flight.values())
    summary = (
        f"kill -9 harness: {len(kills)} kills, {DEVICES * COMMANDS} work items;"
        f" {len(in_flight)} requests in flight at a kill ({arrived} had been queued,"
        f" {len(in_flight) - arrived} had not);"
        f" ok {statuses['ok']} ({reconciled} settled by reconciliation),"
        f" in_doubt {len(in_doubt)} ({sum(1 for k in in_doubt if k in sent)} queued),"
        f" pending {statuses['pending']}, sending {statuses['sending']};"
        f" simulator: {len(sent)} queued, {requests} requests, 0 devices commanded twice;"
        f" final run exit {code};"
        f" rows left in doubt by one kill: at most {max(in_doubt_per_kill, default=0)}"
        f" (bound: {CONCURRENCY}, one per worker)"
    )
    print(summary)
    print("kill points: " + "; ".join(kills))
    assert len(kills) >= 20, summary
    assert len(set(kills)) == len(kills)
