"""A key or token the platform refuses stops the run at once: exit 2, the rows stay pending.

Over loopback HTTP against the simulator, whose answer to a wrong api-key is errno 1
"auth failed: ...". Rerunning cannot fix a wrong key, so this is not the resumable
"platform unavailable" (exit 4): it is bad input, named by where the key came from.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import EXIT_INPUT, EXIT_OK, main
from dispatcher.ledger import Ledger
from dispatcher.onenet.errnos import refuses_credentials
from dispatcher.outcome import Kind, Outcome
from tests.helpers import API_KEY, imei, simulator, write_job

WRONG_KEY = "wrong-key-3b9d7e"
DEVICES = 60
CONCURRENCY = 4


def _all_rows(ledger: Path, run_id: str) -> dict[str, int]:
    with Ledger(ledger) as db:
        return db.counts(run_id)


def test_a_wrong_key_stops_at_the_first_refusal_and_a_rerun_sends_everything_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(tmp_path, DEVICES, concurrency=CONCURRENCY, rate=1000)
    ledger = tmp_path / "ledger.sqlite"
    args = ["run", str(job), "--ledger", str(ledger), "--run-id", "r1"]
    with simulator() as sim:
        monkeypatch.setenv("ONENET_API_KEY", WRONG_KEY)
        code = main([*args, "--base-url", sim.base_url, "--log-format", "json"])
        out, err = capsys.readouterr()
        # only what was already in flight when the first refusal came back
        assert 1 <= len(sim.requests) <= CONCURRENCY
        assert [] == list(sim.commands)
        assert EXIT_INPUT == code
        assert "ONENET_API_KEY" in err
        assert "refused" in err
        assert WRONG_KEY not in out + err
        assert {"pending": DEVICES * 2} == _all_rows(ledger, "r1")

        monkeypatch.setenv("ONENET_API_KEY", API_KEY)
        assert EXIT_OK == main([*args, "--base-url", sim.base_url])
        per_command = Counter((c.imei, c.op) for c in sim.commands)
    assert DEVICES * 2 == len(per_command)
    assert {1} == set(per_command.values())
    assert {"ok": DEVICES * 2} == _all_rows(ledger, "r1")


def test_the_message_names_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key read from a file: the message names the file, not the key."""
    job = write_job(tmp_path, 10, concurrency=2)
    key_file = tmp_path / "api-key"
    key_file.write_text(WRONG_KEY + "\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"auth:\n  api_key_file: {key_file}\n", encoding="utf-8")
    monkeypatch.delenv("ONENET_API_KEY", raising=False)
    with simulator() as sim:
        code = main(["run", str(job), "--config", str(config), "--base-url", sim.base_url])
        assert len(sim.requests) <= 2
    _, err = capsys.readouterr()
    assert EXIT_INPUT == code
    assert f"the API key from the file {key_file}" in err
    assert WRONG_KEY not in err


@pytest.mark.parametrize(
    ("errno", "error", "http", "refused"),
    [
        (1, "auth failed", 200, True),
        (1, "auth failed: api-key does not match", 200, True),
        (2, "api-key required", 200, True),
        (3, "auth failed", 200, True),
        (3, "parameter required", 200, False),
        (1, "internal server error", 200, False),
        (8, "not found", 200, False),
        (None, None, 401, True),
        (None, None, 403, True),
        (None, None, 500, False),
    ],
)
def test_which_answers_refuse_the_credentials(
    errno: int | None, error: str | None, http: int, refused: bool
) -> None:
    kind = Kind.FAILED if errno is not None else Kind.RETRY
    outcome = Outcome(kind, errno=errno, error=error, http_status=http)
    assert refused == refuses_credentials(outcome)


def test_once_the_key_worked_auth_failed_is_one_devices_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """errno 1 "auth failed" also means "this IMEI is not the key's product's". After an ok
    answer (one request at a time, so the first device's ok comes first), it fails that
    device alone and the run goes on."""
    job = write_job(tmp_path, 12, concurrency=1)
    ledger = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    foreign = imei(5)
    with simulator(foreign_imeis={foreign}) as sim:
        code = main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        queued = {(c.imei, c.op) for c in sim.commands}
    assert 1 == code  # finished, one device failed
    with Ledger(ledger) as db:
        rows = {(r["imei"], r["command"]): (r["status"], r["errno"]) for r in db.items("test-job")}
    assert ("failed", 1) == rows[(foreign, 0)]
    assert "skipped" == rows[(foreign, 1)][0]
    assert {"ok"} == {s for (i, _), (s, _) in rows.items() if i != foreign}
    assert 22 == len(queued)


def test_a_foreign_device_first_stops_the_run_as_a_refused_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented limit: before any ok, errno 1 "auth failed" cannot be told from a wrong
    key, so the run stops with every row pending (docs/running.md, "A refused key")."""
    job = write_job(tmp_path, 5, concurrency=1)
    ledger = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    with simulator(foreign_imeis={imei(0)}) as sim:
        code = main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
        assert 1 == len(sim.requests)
    assert EXIT_INPUT == code
    assert {"pending": 10} == _all_rows(ledger, "test-job")
    assert "device is not in this product" in capsys.readouterr().err
