"""The rollout as a Kubernetes Indexed Job runs it: four shard processes of one run, one
PostgreSQL ledger, the simulator in a process of its own; one shard SIGKILLed mid-run and
started again, as Kubernetes retries a failed index.

The pods' command line is the manifest's: ``--shard $(JOB_COMPLETION_INDEX)/4``, expanded
here by a shell from the environment variable Kubernetes sets in each pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.shards import shard_of
from tests.helpers import API_KEY, imei, write_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 4
DEVICES = 240
RUN_ID = "zone-a-indexed"
KILLED = 2  # the index whose pod is lost
RESUMABLE = (0, 1, 4)  # exit codes of a pod whose index the same command line resumes
# exactly what deploy/k8s/rollout-job.yaml runs, with the variable the Job sets
POD = (
    'exec "$PYTHON" -m dispatcher run "$JOB" --config "$CONFIG" --run-id "$RUN_ID"'
    ' --shard "$JOB_COMPLETION_INDEX/4" --ledger "$LEDGER_URL" --base-url "$BASE_URL" --no-wait'
)


STATUS = (sys.executable, "-m", "dispatcher", "status")


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ONENET_API_KEY": API_KEY,
        "PYTHON": sys.executable,
        # the repo first: the CLI must import this checkout whatever the working directory
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        **extra,
    }


def _start_simulator(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`onenet-dispatch simulate` on a free port; its base URL read from what it prints."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "simulate", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_env(),
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                return proc, line.split("listening on ", 1)[1].split()[0]
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail("the simulator did not start: " + log.read_text(errors="replace")[-2000:])


def _commands(base_url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{base_url}/_sim/commands", timeout=30) as answer:
        data = json.loads(answer.read())
    commands = data["commands"]
    assert isinstance(commands, list)
    return commands


def _pod(index: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            ["sh", "-c", POD],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**env, "JOB_COMPLETION_INDEX": str(index)},
        )


def _status(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [*STATUS, env["LEDGER_URL"], "--run-id", RUN_ID, "--format", "json"],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def _unsettled_shards(status: dict[str, object]) -> list[int]:
    """The shards with a row not ok, or devices not registered yet (a lost pod's)."""
    shards = status["shards"]
    assert isinstance(shards, list)
    per_shard = Counter(shard_of(imei(i), SHARDS) for i in range(DEVICES))
    return [
        k
        for k, shard in enumerate(shards)
        if set(shard["counts"]) != {"ok"} or shard["devices"] < per_shard[k]
    ]


def test_four_shard_pods_one_killed_and_retried_command_each_device_once(
    tmp_path: Path, pg_url: str
) -> None:
    """Four pods of an Indexed Job on one PostgreSQL ledger, pod 2 killed with SIGKILL and
    retried: every device commanded exactly once, the merged report complete."""
    job = write_job(tmp_path, DEVICES, rate=240, concurrency=4)
    config = tmp_path / "config.yaml"
    # a short read timeout: in-doubt rows of the killed pod are old enough to settle sooner
    config.write_text("http: {read_timeout: 1}\n", encoding="utf-8")
    log = tmp_path / "pods.err"
    sim, base_url = _start_simulator(tmp_path / "sim.err")
    try:
        env = _env(
            JOB=str(job),
            CONFIG=str(config),
            RUN_ID=RUN_ID,
            LEDGER_URL=pg_url,
            BASE_URL=base_url,
        )
        pods = {k: _pod(k, env, log) for k in range(SHARDS)}
        mine = {imei(i) for i in range(DEVICES) if shard_of(imei(i), SHARDS) == KILLED}
        # lose pod 2 once it has some of its commands queued, and more to send
        deadline = time.monotonic() + 120
        while True:
            queued = sum(1 for c in _commands(base_url) if c["imei"] in mine)
            if queued >= 10:
                break
            assert pods[KILLED].poll() is None, "pod 2 ended before it could be killed"
            assert time.monotonic() < deadline, "pod 2 sent nothing within 120 s"
            time.sleep(0.02)
        pods[KILLED].send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == pods[KILLED].wait(30)
        assert queued < 2 * len(mine), "pod 2 had finished: the kill proves nothing"
        codes = {k: p.wait(300) for k, p in pods.items() if k != KILLED}
        # A pod may end resumable on a busy machine, its answers later than the 1 s read
        # timeout: 1 (rows left in doubt) or 4 (the platform looked unavailable); Kubernetes
        # retries that index as it retries the lost one.
        assert {0: 0, 1: 0, 3: 0} == {k: 0 if c in RESUMABLE else c for k, c in codes.items()}, (
            log.read_text(errors="replace")[-3000:]
        )

        # Kubernetes retries each index until its pod succeeds: the same command line, the
        # same environment. A row in doubt is settled by the platform's history, or, when
        # its request never arrived, once it is older than the read timeout and the margin
        # (docs/reliability.md); a retry on a busy machine may leave new ones (its own
        # answers late). So the retries go on until the run is complete, within a deadline
        # no load reaches, never a count of tries that a slow stretch can use up.
        retries: Counter[int] = Counter()
        deadline = time.monotonic() + 600
        while left := _unsettled_shards(_status(env)):
            assert time.monotonic() < deadline, (
                f"shards {left} not settled after retries {dict(retries)}: "
                + log.read_text(errors="replace")[-3000:]
            )
            for k in left:
                retry = _pod(k, env, log)
                assert retry.wait(300) in RESUMABLE, log.read_text(errors="replace")[-3000:]
                retries[k] += 1
            time.sleep(2)
        assert retries[KILLED] >= 1
        commands = _commands(base_url)
        status = _status(env)
    finally:
        sim.terminate()
        sim.wait(30)

    sent = Counter((c["imei"], c["op"]) for c in commands)
    assert [] == [key for key, n in sent.items() if n > 1], "a device commanded twice"
    everything = {(imei(i), op) for i in range(DEVICES) for op in ("write", "read")}
    assert everything == set(sent), "every device commanded"
    assert ("finished", 0) == (status["state"], status["remaining_devices"])
    assert {"ok": 2 * DEVICES} == status["counts"], json.dumps(status)[-3000:]
    per_shard = Counter(shard_of(imei(i), SHARDS) for i in range(DEVICES))
    assert [
        {"shard": f"{k}/4", "devices": per_shard[k], "counts": {"ok": 2 * per_shard[k]}}
        for k in range(SHARDS)
    ] == status["shards"]
