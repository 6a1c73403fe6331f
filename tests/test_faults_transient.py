"""Transient errors through the CLI: HTTP 429/503 with Retry-After, refused connections, and
the platform's rate-limit errno, each retried a bounded number of times and never queued twice."""

from __future__ import annotations

import itertools
import random
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from dispatcher.cli import main
from dispatcher.simulator import SimulatorConfig, running_simulator
from tests.helpers import API_KEY, imei, simulator, write_job

WRITE = "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"
# With seed 1 a knob at 0.5 fires on the first draw and not on the second.
FIRST_ONLY_SEED = 1


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def config_file(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(job: Path, base_url: str, ledger: Path, config: Path) -> int:
    return main(
        ["run", str(job), "--base-url", base_url, "--ledger", str(ledger), "--config", str(config)]
    )


def rows(ledger: Path) -> list[tuple[str, str | None, int, int | None, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        return db.execute(
            "SELECT status, uuid, attempts, http_status, error FROM items ORDER BY imei, command"
        ).fetchall()
    finally:
        db.close()


def test_seed_fires_a_half_knob_on_the_first_draw_only() -> None:
    """The seed the Retry-After tests rely on: first draw under 0.5, second above."""
    dice = random.Random(FIRST_ONLY_SEED)
    assert [True, False] == [dice.random() < 0.5, dice.random() < 0.5]


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(tmp_path: Path, status: int) -> None:
    """HTTP 503/429 with Retry-After: 1 is sent again after at least that second, once, and ends ok."""
    job = write_job(tmp_path, 1, commands=WRITE)
    ledger = tmp_path / "ledger.sqlite"
    # backoff_max far above Retry-After: a retry that waited for the cap instead of the
    # header would come a minute later, which no busy machine mistakes for 1 s
    config = config_file(tmp_path, "retries: {attempts: 3, backoff_base: 0.01, backoff_max: 60}\n")
    knob = "http_503_rate" if status == 503 else "http_429_rate"
    with simulator(**{knob: 0.5}, retry_after=1, seed=FIRST_ONLY_SEED) as sim:
        assert 0 == run(job, sim.base_url, ledger, config)
        requests = list(sim.requests)
        [command] = sim.commands
    assert [status, 200] == [r.status for r in requests]
    gap = requests[1].received_at - requests[0].received_at
    # backoff alone would wait at most 0.01 s; the cap, 60 s
    assert 0.95 <= gap < 30.0, gap
    assert [("ok", command.uuid, 2, 200, None)] == rows(ledger)
    # the retry was marked again at its own slot: reconciliation measures a row's age
    # from the send that may still be on its way, not from the first one
    db = sqlite3.connect(ledger)
    try:
        [(first, last)] = db.execute("SELECT first_sent_at, sent_at FROM items").fetchall()
    finally:
        db.close()
    assert last - first >= 0.95, (first, last)


def test_each_mark_carries_its_slot_time(tmp_path: Path) -> None:
    """At 1/s with four workers, the four marks are queued together but their requests
    leave a second apart: each row's sent_at is its own slot, not the time it was queued."""
    job = write_job(tmp_path, 4, commands=WRITE, rate=1, concurrency=4)
    ledger = tmp_path / "ledger.sqlite"
    config = config_file(tmp_path, "retries: {attempts: 1}\n")
    with simulator() as sim:
        assert 0 == run(job, sim.base_url, ledger, config)
        assert 4 == len(sim.commands)
    db = sqlite3.connect(ledger)
    try:
        sent = [row[0] for row in db.execute("SELECT sent_at FROM items ORDER BY sent_at")]
    finally:
        db.close()
    # the limiter's slots are a second apart whatever the machine's load (at most one
    # slot in any 1-s window at this rate), and so are the marks' times
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(gap >= 0.95 for gap in gaps), gaps


def test_http_503_every_time_gives_up_after_the_attempts(tmp_path: Path) -> None:
    """A 503 on every try is retried a bounded number of times, then failed; nothing queued."""
    job = write_job(tmp_path, 1, commands=WRITE)
    ledger = tmp_path / "ledger.sqlite"
    config = config_file(
        tmp_path, "retries: {attempts: 3, backoff_base: 0.01, backoff_max: 0.05}\n"
    )
    with simulator(http_503_rate=1.0) as sim:
        assert 1 == run(job, sim.base_url, ledger, config)
        assert (3, 0) == (len(sim.requests), len(sim.commands))
    [(status, uuid, attempts, http_status, error)] = rows(ledger)
    assert ("failed", None, 3, 503) == (status, uuid, attempts, http_status)
    assert "HTTP 503 (after 3 attempts)" == error


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, and held for the
    block, so no other process on a shared machine can take it and answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        yield port


def test_refused_connection_is_retried_then_failed(tmp_path: Path) -> None:
    """Nothing listening: every connection is refused, tried `attempts` times, then failed."""
    job = write_job(tmp_path, 1, commands=WRITE)
    ledger = tmp_path / "ledger.sqlite"
    config = config_file(
        tmp_path, "retries: {attempts: 3, backoff_base: 0.01, backoff_max: 0.05}\n"
    )
    with refusing_port() as port:
        assert 1 == run(job, f"http://127.0.0.1:{port}", ledger, config)
    [(status, uuid, attempts, http_status, error)] = rows(ledger)
    assert ("failed", None, 3, None) == (status, uuid, attempts, http_status)
    assert error is not None
    assert error.startswith("cannot connect")
    assert error.endswith("(after 3 attempts)")


def rate_limited_run(
    tmp_path: Path, *, devices: int, rate: int, limit: int
) -> tuple[int, list[tuple[float, int | None]], Counter[str]]:
    job = write_job(tmp_path, devices, commands=WRITE, rate=rate, concurrency=8)
    ledger = tmp_path / "ledger.sqlite"
    config = config_file(tmp_path, "retries: {attempts: 10, backoff_base: 0.05, backoff_max: 1}\n")
    with simulator(rate_limit=limit) as sim:
        code = run(job, sim.base_url, ledger, config)
        arrivals = [(r.received_at, r.errno) for r in sim.requests]
        queued: Counter[str] = Counter(c.imei for c in sim.commands)
    assert {"ok"} == {r[0] for r in rows(ledger)}
    return code, arrivals, queued


def test_rate_limit_errno_slows_the_whole_run(tmp_path: Path) -> None:
    """At 1.6x the platform's limit, errno 15 halves the whole run's rate: few refusals, all ok."""
    code, arrivals, queued = rate_limited_run(tmp_path, devices=400, rate=160, limit=100)
    assert 0 == code
    assert Counter({imei(i): 1 for i in range(400)}) == queued
    refused = [t for t, errno in arrivals if errno == 15]
    print(f"rate limit at 1.6x: {len(refused)} errno 15 in {len(arrivals)} requests")
    assert refused, "the job's rate should have met the platform's limit"
    assert len(refused) < 0.1 * len(arrivals)
    # Every worker slowed, not only the one refused: the next second holds at most the limit.
    first = refused[0]
    next_second = sum(1 for t, _ in arrivals if first + 0.1 <= t < first + 1.1)
    print(f"rate limit at 1.6x: {next_second} requests in the second after the first errno 15")
    assert next_second <= 100


def test_rate_limit_errno_backs_off_until_the_refusals_stop(tmp_path: Path) -> None:
    """At 4x the platform's limit the run keeps slowing down until errno 15 becomes rare."""
    code, arrivals, _ = rate_limited_run(tmp_path, devices=400, rate=400, limit=100)
    assert 0 == code
    first = next(t for t, errno in arrivals if errno == 15)
    later = [errno for t, errno in arrivals if t >= first + 2.0]
    print(f"rate limit at 4x: {later.count(15)} errno 15 in {len(later)} requests after 2 s")
    assert later.count(15) < 0.1 * len(later)


@pytest.mark.anyio
async def test_simulator_sends_retry_after_with_429_set_over_http() -> None:
    """Knobs set with POST /_sim/config: HTTP 429 with `Retry-After: 2`, and nothing queued."""
    async with (
        running_simulator(SimulatorConfig(api_key=API_KEY)) as sim,
        aiohttp.ClientSession() as session,
    ):
        changes = {"http_429_rate": 1.0, "retry_after": 2}
        async with session.post(f"{sim.base_url}/_sim/config", json=changes) as resp:
            assert 200 == resp.status
        url = f"{sim.base_url}/nbiot/offline?imei={imei(0)}&obj_id=3300&expired_time=2099-01-01T00:00:00"
        async with session.get(url, headers={"api-key": API_KEY}) as resp:
            assert (429, "2") == (resp.status, resp.headers.get("Retry-After"))
        assert (1, 0) == (len(sim.requests), len(sim.commands))
