"""The newer console ("studio" profile) end to end over loopback HTTP: run, track, cancel,
reconcile with a user token and with a product token; auth refusals stop with exit 2."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.config import load_config
from dispatcher.errors import ConfigError
from tests.helpers import simulator, write_job

ACCESS = base64.b64encode(b"studio access key, 32 bytes long").decode()
OTHER = base64.b64encode(b"somebody else's access key").decode()
USER = "u-520114"
PRODUCT = "382947"
DEVICES = 6
FAST = {"delivery": True, "clock_speed": 3600.0, "wake_interval": 600.0}
# The simulated clock runs an hour a second with delivery on: a token must outlive that.
LONG_TOKEN = "  token_lifetime: 2592000\n"
WRITE = "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5700, val: 60}]}\n"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_ACCESS_KEY", ACCESS)
    monkeypatch.delenv("ONENET_API_KEY", raising=False)  # studio never needs one


def studio(**knobs: object):  # type: ignore[no-untyped-def]
    return simulator(
        **{"platform": "studio", "user_id": USER, "product_id": PRODUCT, "access_key": ACCESS}
        | knobs
    )


def config(tmp_path: Path, auth: str = f"user_id: '{USER}'", extra: str = "") -> Path:
    path = tmp_path / "studio.yaml"
    path.write_text(f"platform: studio\nauth:\n  {auth}\n{LONG_TOKEN}{extra}", encoding="utf-8")
    return path


def rows(ledger: Path) -> list[tuple[str, int, str, str | None, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        return db.execute(
            "SELECT imei, command, status, uuid, error FROM items ORDER BY imei, command"
        ).fetchall()
    finally:
        db.close()


def export(ledger: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert 0 == main(["export", str(ledger)])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


TOKENS = [f"user_id: '{USER}'", f"product_id: '{PRODUCT}'"]


@pytest.mark.parametrize("auth", TOKENS, ids=["user-token", "product-token"])
def test_run_and_track_on_studio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auth: str
) -> None:
    """run then track --watch on the studio profile: every command queued once under /nb-iot
    with a token and no api-key, then followed to success."""
    job = write_job(tmp_path, DEVICES)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path, auth)
    with studio(**FAST) as sim:
        base = ["--base-url", sim.base_url, "--config", str(cfg)]
        assert 0 == main(["run", str(job), *base, "--ledger", str(ledger)])
        assert 0 == main(
            ["track", str(ledger), "--run-id", "test-job", *base, "--watch", "--interval", "1s"]
        )
        paths = Counter(r.path for r in sim.requests)
        queued = Counter((c.imei, c.op) for c in sim.commands)
    assert {1} == set(queued.values())
    assert 2 * DEVICES == len(queued)
    assert {p.split("?")[0].rsplit("/", 1)[0] for p in paths} <= {
        "/nb-iot",
        "/nb-iot/offline/history",
    }
    assert paths["/nb-iot/offline"] == 2 * DEVICES
    assert {"success"} == {r["send_status"] for r in export(ledger, capsys)}


@pytest.mark.parametrize("auth", TOKENS, ids=["user-token", "product-token"])
def test_cancel_on_studio(tmp_path: Path, auth: str) -> None:
    """Devices asleep: cancel takes every command back through /nb-iot/offline/cancel/{uuid}."""
    job = write_job(tmp_path, DEVICES)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path, auth)
    with studio(delivery=True, wake_interval=10**6) as sim:
        base = ["--base-url", sim.base_url, "--config", str(cfg)]
        assert 0 == main(["run", str(job), *base, "--ledger", str(ledger)])
        assert 0 == main(["cancel", str(ledger), "--run-id", "test-job", *base])
        assert {2} == {c.send_status for c in sim.commands}
        cancels = [r for r in sim.requests if r.path.startswith("/nb-iot/offline/cancel/")]
    assert 2 * DEVICES == len(cancels)


@pytest.mark.parametrize("auth", TOKENS, ids=["user-token", "product-token"])
def test_reconcile_on_studio(tmp_path: Path, auth: str) -> None:
    """Answers lost after queueing: in doubt; reconcile finds each on /nb-iot/offline/history."""
    job = write_job(tmp_path, DEVICES, commands=WRITE)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path, auth)
    with studio(drop_after_queue_rate=1.0) as sim:
        base = ["--base-url", sim.base_url, "--config", str(cfg)]
        assert 1 == main(["run", str(job), *base, "--ledger", str(ledger)])
        assert {"in_doubt"} == {r[2] for r in rows(ledger)}
        sim.config.drop_after_queue_rate = 0.0
        assert 0 == main(["reconcile", str(ledger), *base])
        uuids = {c.imei: c.uuid for c in sim.commands}
    assert DEVICES == len(sim.commands)
    assert {"ok"} == {r[2] for r in rows(ledger)}
    assert uuids == {r[0]: r[3] for r in rows(ledger)}


def test_code_envelope_is_understood(tmp_path: Path) -> None:
    """Answers in code/msg/request_id: successes are ok with their uuid; a refusal is failed
    with its text and request_id in the ledger row."""
    job = write_job(tmp_path, DEVICES, commands=WRITE)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path)
    with studio(envelope="code", fail_imeis=set()) as sim:
        base = ["--base-url", sim.base_url, "--config", str(cfg), "--ledger", str(ledger)]
        assert 0 == main(["run", str(job), *base])
        assert {c.uuid for c in sim.commands} == {r[3] for r in rows(ledger)}
        sim.config.fail_imeis = {r[0] for r in rows(ledger)}
        assert 1 == main(["run", str(job), *base, "--run-id", "again"])
    failed = [r for r in rows(ledger) if r[2] == "failed"]
    assert DEVICES == len(failed)
    assert all(r[4] and r[4].startswith("not found (request_id ") for r in failed)


REFUSALS = [
    ("wrong signature", {}, {"ONENET_ACCESS_KEY": OTHER}, "signature does not match"),
    ("expired et", {"now": 31 * 86400.0}, {}, "token expired"),  # past the 30-day lifetime
    ("another user", {"user_id": "u-1"}, {}, "not this user"),
]


@pytest.mark.parametrize(
    ("knobs", "env", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_auth_refusal_stops_with_exit_2_and_nothing_sent_twice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    knobs: dict[str, object],
    env: dict[str, str],
    reason: str,
) -> None:
    """A refused token: exit 2 with the platform's reason, rows pending, at most the requests in
    flight sent; fixed, the same command sends each command exactly once."""
    job = write_job(tmp_path, 40, concurrency=4)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with studio(**knobs) as sim:
        args = ["run", str(job), "--base-url", sim.base_url, "--config", str(cfg)]
        args += ["--ledger", str(ledger)]
        capsys.readouterr()
        assert 2 == main(args)
        err = capsys.readouterr().err
        assert "the platform refused the token signed with the access key" in err
        assert reason in err
        assert [] == sim.commands
        assert len(sim.requests) <= 4  # those in flight when the first refusal came back
        assert {"pending"} == {r[2] for r in rows(ledger)}
        monkeypatch.setenv("ONENET_ACCESS_KEY", ACCESS)
        sim.config.now = None
        sim.config.user_id = USER
        assert 0 == main(args)
        queued = Counter((c.imei, c.op) for c in sim.commands)
    assert {1} == set(queued.values())
    assert 80 == len(queued)


@pytest.mark.parametrize("command", ["track", "cancel", "reconcile"])
def test_track_cancel_reconcile_stop_on_a_refusal(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """After a good run, the same commands with a wrong access key: exit 2, one request each."""
    job = write_job(tmp_path, DEVICES, commands=WRITE, concurrency=1)
    ledger = tmp_path / "l.sqlite"
    cfg = config(tmp_path)
    with studio(delivery=True, wake_interval=10**6, drop_after_queue_rate=1.0) as sim:
        base = ["--base-url", sim.base_url, "--config", str(cfg)]
        assert 1 == main(["run", str(job), *base, "--ledger", str(ledger)])
        if command != "reconcile":
            sim.config.drop_after_queue_rate = 0.0
            assert 0 == main(["reconcile", str(ledger), *base])
        before = len(sim.requests)
        monkeypatch.setenv("ONENET_ACCESS_KEY", OTHER)
        capsys.readouterr()
        extra = [] if command == "reconcile" else ["--run-id", "test-job"]
        assert 2 == main([command, str(ledger), *extra, *base])
        assert "refused the credentials" in capsys.readouterr().err
        asked = len(sim.requests) - before
    assert 1 <= asked <= 4


def test_dry_run_shows_the_studio_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run: /nb-iot paths on the profile's host, an authorization header, no api-key."""
    execute = '  - execute: {obj_id: 3, obj_inst_id: 0, res_id: 4, args: "reboot"}\n'
    job = write_job(tmp_path, 2, commands=WRITE + execute)
    capsys.readouterr()
    assert 0 == main(["run", str(job), "--dry-run", "--config", str(config(tmp_path))])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    urls = [r["url"].split("?")[0] for r in records]
    assert (
        urls
        == [
            "https://iot-api.heclouds.com/nb-iot/offline",
            "https://iot-api.heclouds.com/nb-iot/execute/offline",
        ]
        * 2
    )
    assert all(r["headers"].get("authorization") == "***" for r in records)
    assert all("api-key" not in r["headers"] for r in records)


def test_studio_defaults(tmp_path: Path) -> None:
    """platform: studio alone sets the host, token auth and the 2022-05-01 token version."""
    loaded = load_config(config(tmp_path))
    assert loaded.base_url == "https://iot-api.heclouds.com"
    assert loaded.auth.method == "token"
    assert loaded.token_version == "2022-05-01"
    legacy = load_config(None)
    assert (legacy.base_url, legacy.auth.method, legacy.token_version) == (
        "http://api.heclouds.com",
        "api-key",
        "2018-10-31",
    )


BAD_CONFIGS = [
    ("no token", "platform: studio\n", "studio.yaml:1: auth: token authentication needs"),
    (
        "both ids",
        "platform: studio\nauth:\n  product_id: '1'\n  user_id: u\n",
        "studio.yaml:4: auth.user_id: set auth.user_id or auth.product_id, not both",
    ),
    (
        "api-key on studio",
        "platform: studio\nauth:\n  method: api-key\n",
        "studio.yaml:3: auth.method: platform studio takes a signed token only",
    ),
    (
        "bad sign method",
        "platform: studio\nauth:\n  user_id: u\n  sign_method: sha512\n",
        "studio.yaml:4: auth.sign_method: must be 'md5', 'sha1' or 'sha256'",
    ),
    (
        "user token on legacy",
        "auth:\n  method: token\n  user_id: u\n",
        "studio.yaml:3: auth.user_id: a user token (userid/<id>) is for platform: studio",
    ),
    (
        "token version not a date",
        "platform: studio\nauth:\n  user_id: u\n  token_version: latest\n",
        'studio.yaml:4: auth.token_version: must be a date such as 2022-05-01, got "latest"',
    ),
    (
        "unknown platform",
        "platform: onenet-studio\n",
        "studio.yaml:1: platform: must be 'legacy' or 'studio'",
    ),
    (
        "base URL with a path",
        "base_url: https://iot-api.heclouds.com/nb-iot\nplatform: studio\nauth: {user_id: u}\n",
        "studio.yaml:1: base_url: base URL is scheme, host and port only",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_validate_says_what_the_config_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """validate --config: FILE:LINE: where: what, exit 2, nothing sent."""
    job = write_job(tmp_path, 1)
    path = tmp_path / "studio.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(path)
    capsys.readouterr()
    assert 2 == main(["validate", str(job), "--config", str(path)])
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err


def test_base_url_with_a_path_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(tmp_path, 1)
    capsys.readouterr()
    code = main(["run", str(job), "--base-url", "http://127.0.0.1:9/nbiot", "--dry-run"])
    assert 2 == code
    assert "scheme, host and port only" in capsys.readouterr().err


def test_run_simulate_rehearses_the_studio_console(tmp_path: Path) -> None:
    """run --simulate with a studio config: its own studio simulator, a user token, exit 0."""
    job = write_job(tmp_path, DEVICES)
    assert 0 == main(["run", str(job), "--simulate", "--config", str(config(tmp_path))])
    assert {"ok"} == {r[2] for r in rows(tmp_path / "ledger.simulated.sqlite")}


def test_simulate_command_serves_the_studio_console(tmp_path: Path) -> None:
    """`onenet-dispatch simulate --platform studio --user-id ID` as operators start it: a run
    with the studio config against it queues every command; without an id it refuses (exit 2)."""
    env = {**os.environ, "ONENET_ACCESS_KEY": ACCESS}
    cmd = [sys.executable, "-m", "dispatcher", "simulate", "--platform", "studio", "--port", "0"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert 2 == refused.returncode
    assert "--user-id or --product-id" in refused.stderr
    proc = subprocess.Popen([*cmd, "--user-id", USER], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        base_url = line.split("listening on ", 1)[1].split()[0]
        job = write_job(tmp_path, DEVICES)
        ledger = tmp_path / "l.sqlite"
        args = ["run", str(job), "--base-url", base_url, "--config", str(config(tmp_path))]
        assert 0 == main([*args, "--ledger", str(ledger)])
        assert {"ok"} == {r[2] for r in rows(ledger)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
