"""Outages stop the run (exit 4) with the fleet still pending, instead of failing every row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.engine.breaker import CircuitBreaker
from dispatcher.outcome import Kind, Outcome
from tests.helpers import API_KEY, simulator, write_job

QUICK = "retries: {attempts: 4, backoff_base: 0.01, backoff_max: 0.02}\nbreaker: {window: 10, threshold: 0.8}\n"


def statuses(ledger: Path) -> dict[str, int]:
    db = sqlite3.connect(ledger)
    try:
        return dict(db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
    finally:
        db.close()


def test_breaker_trips_on_mostly_platform_failures() -> None:
    """Eight bad outcomes in a window of ten trip it; device-level failures do not count."""
    breaker = CircuitBreaker(10, 0.8)
    device_failure = Outcome(Kind.FAILED, errno=8, error="not found", http_status=200)
    outage = Outcome(Kind.RETRY, error="cannot connect")
    assert not any(breaker.record(device_failure) for _ in range(30))
    results = [breaker.record(outage) for _ in range(8)]
    assert [False] * 7 + [True] == results


def test_api_down_stops_with_exit_4_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request answered 503: the run stops with exit 4, nothing failed; the rerun finishes."""
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 60, concurrency=4)
    config = tmp_path / "c.yaml"
    config.write_text(QUICK)
    ledger = tmp_path / "l.sqlite"
    with simulator(http_503_rate=1.0) as sim:
        args = [
            "run",
            str(job),
            "--base-url",
            sim.base_url,
            "--ledger",
            str(ledger),
            "--config",
            str(config),
        ]
        assert main(args) == 4
        assert {"pending"} == set(statuses(ledger))
        sim.config.http_503_rate = 0.0
        assert main(args) == 0
        assert 120 == len(sim.commands)


def test_revoked_key_stops_with_exit_2_not_as_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key refused from the start is not an outage (exit 4) but bad input (exit 2); no row failed.

    (tests/test_wrong_key.py follows the same case request by request.)
    """
    monkeypatch.setenv("ONENET_API_KEY", "revoked-key")
    job = write_job(tmp_path, 60, concurrency=4)
    config = tmp_path / "c.yaml"
    config.write_text(QUICK)
    ledger = tmp_path / "l.sqlite"
    with simulator() as sim:
        args = [
            "run",
            str(job),
            "--base-url",
            sim.base_url,
            "--ledger",
            str(ledger),
            "--config",
            str(config),
        ]
        assert main(args) == 2
        assert {"pending"} == set(statuses(ledger))
        assert len(sim.requests) <= 4  # the job's concurrency: those already in flight
        monkeypatch.setenv("ONENET_API_KEY", API_KEY)
        assert main(args) == 0
        assert 120 == len(sim.commands)


def test_unreachable_platform_stops_with_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening at the base URL: exit 4 with a clear message, every row pending."""
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    job = write_job(tmp_path, 20, concurrency=4)
    config = tmp_path / "c.yaml"
    config.write_text(QUICK)
    ledger = tmp_path / "l.sqlite"
    args = [
        "run",
        str(job),
        "--base-url",
        "http://127.0.0.1:9",
        "--ledger",
        str(ledger),
        "--config",
        str(config),
    ]
    assert main(args) == 4
    assert {"pending"} == set(statuses(ledger))
    assert "platform unavailable" in capsys.readouterr().err
