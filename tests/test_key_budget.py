"""One API key's budget shared by every process on a ledger (`key_budget` in the config):
the share arithmetic, the lease table on both backends, and two rollouts on one key
against a simulator that limits the key's rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dispatcher.keybudget import key_hash, share
from dispatcher.ledger.leases import TTL, Lease, open_leases
from dispatcher.pgurl import parse_target
from tests.helpers import API_KEY, simulator, write_job

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "dispatcher", "run", "--log-format", "json")


def _leases(*wanted: tuple[str, str, float]) -> list[Lease]:
    return [Lease(f"h:{n}", run, kind, rate, 0.0) for n, (run, kind, rate) in enumerate(wanted)]


def test_shares_scale_down_only_beyond_the_budget() -> None:
    """Within the budget each process has what it wants; beyond, all are scaled alike."""
    assert 40.0 == share(40, _leases(("a", "run", 40)), 300)
    assert 100.0 == share(100, _leases(("a", "run", 100), ("b", "run", 200)), 300)
    assert 15.0 == share(30, _leases(("a", "run", 30), ("b", "run", 30)), 30)
    assert 5.0 == share(10, _leases(("a", "run", 10), ("b", "run", 30), ("c", "track", 20)), 30)


def test_without_a_budget_the_most_demanding_user_sets_it() -> None:
    """Unset, the budget is the largest a run (all its shards) or a track asks for: four
    shards of a 100/s run are not slowed; that run and a 50/s track share 100/s."""
    shards = [("a", "run", 25.0)] * 4
    assert 25.0 == share(25, _leases(*shards), None)
    assert 80.0 == share(80, _leases(("a", "run", 80)), None)
    both = _leases(*shards, ("a", "track", 50))
    assert (25 * 100 / 150, 50 * 100 / 150) == (share(25, both, None), share(50, both, None))


def test_the_ledger_never_holds_the_key(ledger_target: str) -> None:
    """A lease names the key by a hash; the key's text is nowhere in the table."""
    target = parse_target(ledger_target, where="test")
    table = open_leases(target)
    try:
        kh = key_hash(API_KEY)
        live = table.beat(kh, "host:1", "r", "run", 30.0, 1000.0)
        assert [Lease("host:1", "r", "run", 30.0, 1000.0)] == live
        assert API_KEY not in kh
        # another holder; the first, silent for longer than the TTL, is dropped
        live = table.beat(kh, "host:2", "r", "track", 5.0, 1000.0 + TTL + 1)
        assert [Lease("host:2", "r", "track", 5.0, 1000.0 + TTL + 1)] == live
        # another key's leases are not this key's
        assert 1 == len(table.beat(key_hash("other"), "host:3", "s", "run", 1.0, 1016.5))
        table.release(kh, "host:2")
        assert [Lease("host:4", "r", "run", 1.0, 1017.0)] == table.beat(
            kh, "host:4", "r", "run", 1.0, 1017.0
        )
    finally:
        table.close()


def _spawn(
    job: Path, config: Path, ledger: str, base_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ONENET_API_KEY": API_KEY,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    with open(log, "wb") as err:
        return subprocess.Popen(
            [*CLI, str(job), "--config", str(config), "--ledger", ledger, "--base-url", base_url],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


def test_two_rollouts_on_one_key_stay_within_its_budget(tmp_path: Path, pg_url: str) -> None:
    """Two runs of two jobs on one key and one ledger, each wanting 30/s of a 30/s budget,
    against a platform that answers errno 15 beyond 35/s: each sends at 15/s, and the
    platform never says the key went over its limit."""
    config = tmp_path / "config.yaml"
    config.write_text("key_budget: 30\n", encoding="utf-8")
    jobs = []
    for name in ("north", "south"):
        folder = tmp_path / name
        folder.mkdir()
        jobs.append(write_job(folder, 60, name=name, rate=30, concurrency=4))
    with simulator(rate_limit=35) as sim:
        procs = [
            _spawn(job, config, pg_url, sim.base_url, tmp_path / f"{job.parent.name}.err")
            for job in jobs
        ]
        codes = [p.wait(300) for p in procs]
        refused = sum(1 for r in sim.requests if r.errno == 15)
        queued = len(sim.commands)
    logs = [(tmp_path / f"{j.parent.name}.err").read_text(errors="replace") for j in jobs]
    assert [0, 0] == codes, "\n".join(log[-2000:] for log in logs)
    assert 4 * 60 == queued
    assert 0 == refused, "the two runs together went over the key's limit"
    for log in logs:
        shares = [
            event["per_second"]
            for event in map(json.loads, log.splitlines())
            if event.get("event") == "key_share"
        ]
        assert 15.0 in shares, log[-2000:]
