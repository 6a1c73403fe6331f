"""The API key never shows: not in output, logs, ledger, export, errors or --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.cli import main
from dispatcher.config import Secret
from dispatcher.onenet.auth import ApiKeyAuth, TokenAuth
from tests.helpers import simulator, write_job

CANARY = "canary-7f3e9b2d41"
ACCESS = "Y2FuYXJ5LWFjY2Vzcy1rZXk="  # base64 of "canary-access-key"


def _everything_in(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_no_error_path_shows_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every path a run can take, with a canary key: the key appears in no output and no file."""
    monkeypatch.setenv("ONENET_API_KEY", CANARY)
    monkeypatch.setenv("ONENET_ACCESS_KEY", ACCESS)
    job = write_job(tmp_path, 30, concurrency=4)
    ledger = tmp_path / "l.sqlite"
    quick = tmp_path / "quick.yaml"
    quick.write_text(
        "retries: {attempts: 2, backoff_base: 0.01, backoff_max: 0.02}\nbreaker: {window: 5, threshold: 0.8}\nhttp: {read_timeout: 0.3}\n"
    )
    token = tmp_path / "token.yaml"
    token.write_text(
        "auth: {method: token, product_id: '42'}\nretries: {attempts: 2, backoff_base: 0.01}\nbreaker: {window: 5}\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 2\nname: x\n")
    codes = []
    with simulator(api_key="the-platform-expects-another") as sim:
        base = ["--base-url", sim.base_url, "--ledger", str(ledger)]
        codes.append(
            main(["run", str(job), *base, "--config", str(quick)])
        )  # auth failed -> breaker
        codes.append(
            main(["run", str(job), *base, "--config", str(token), "--run-id", "t"])
        )  # token refused
        codes.append(
            main(["run", str(job), "--base-url", "ftp://nowhere", "--ledger", str(ledger)])
        )
        codes.append(
            main(
                [
                    "run",
                    str(job),
                    "--base-url",
                    "http://127.0.0.1:9",
                    "--ledger",
                    str(ledger),
                    "--run-id",
                    "u",
                    "--config",
                    str(quick),
                ]
            )
        )
        sim.config.api_key = CANARY
        sim.config.stall_after_queue_rate = 0.2
        sim.config.stall_seconds = 1.0
        codes.append(main(["run", str(job), *base, "--run-id", "v", "--config", str(quick)]))
        codes.append(main(["reconcile", str(ledger), "--base-url", sim.base_url]))
    codes.append(main(["validate", str(broken)]))
    codes.append(main(["export", str(ledger)]))
    codes.append(main(["export", str(ledger), "--format", "csv", "-o", str(tmp_path / "out.csv")]))
    # 2: the refused key and token, the bad URL, the broken job; 4: nothing listening
    assert {4, 2, 0} <= set(codes)
    out, err = capfd.readouterr()
    assert CANARY not in out + err
    assert "canary-access-key" not in out + err
    files = _everything_in(tmp_path)
    assert CANARY.encode() not in files
    assert b"canary-access-key" not in files


@pytest.mark.parametrize("platform", ["legacy", "studio"])
def test_no_path_shows_the_access_key_on_either_console(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    platform: str,
) -> None:
    """A token signed with a canary access key, on each console: refused (wrong user or
    product, expired), accepted, tracked, cancelled, reconciled, dry-run, exported: the
    access key (as configured or decoded) is in no output and no file."""
    monkeypatch.setenv("ONENET_ACCESS_KEY", ACCESS)
    monkeypatch.delenv("ONENET_API_KEY", raising=False)
    job = write_job(tmp_path, 6, concurrency=2)
    ledger = tmp_path / "l.sqlite"
    who = "user_id: u-7" if platform == "studio" else "product_id: '42'"
    auth = f"auth:\n  method: token\n  {who}\n  token_lifetime: 2592000\n"
    good = tmp_path / "good.yaml"
    good.write_text(f"platform: {platform}\n{auth}")
    other = tmp_path / "other.yaml"
    other.write_text(f"platform: {platform}\n{auth.replace('7', '8').replace('42', '43')}")
    knobs: dict[str, object] = {"platform": platform, "access_key": ACCESS, "product_id": "42"}
    if platform == "studio":
        knobs["user_id"] = "u-7"
    codes = []
    with simulator(delivery=True, wake_interval=10**6, **knobs) as sim:
        base = ["--base-url", sim.base_url, "--ledger", str(ledger)]
        codes.append(main(["run", str(job), *base, "--config", str(other), "--run-id", "o"]))
        sim.config.now = 40 * 86400.0
        codes.append(main(["run", str(job), *base, "--config", str(good), "--run-id", "x"]))
        sim.config.now = None
        codes.append(main(["run", str(job), *base, "--config", str(good), "--run-id", "ok"]))
        codes.append(main(["run", str(job), "--dry-run", "--config", str(good)]))
        ask = ["--base-url", sim.base_url, "--config", str(good)]
        codes.append(main(["track", str(ledger), "--run-id", "ok", *ask]))
        codes.append(main(["track", str(ledger), "--run-id", "ok", "--config", str(other)]))
        codes.append(main(["cancel", str(ledger), "--run-id", "ok", *ask]))
        codes.append(main(["reconcile", str(ledger), *ask]))
        codes.append(main(["export", str(ledger)]))
        assert 6 * 2 == len(sim.commands)
    assert [2, 2, 0, 0, 1, 2, 0, 0, 0] == codes  # track: 1, commands still waiting
    out, err = capfd.readouterr()
    assert ACCESS not in out + err
    assert "canary-access-key" not in out + err
    files = _everything_in(tmp_path)
    assert ACCESS.encode() not in files
    assert b"canary-access-key" not in files


def test_help_and_reprs_do_not_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """--help of every command, and the reprs of the objects holding the key, do not show it."""
    monkeypatch.setenv("ONENET_API_KEY", CANARY)
    for command in ("validate", "run", "export", "reconcile", "simulate"):
        proc = subprocess.run(
            [sys.executable, "-m", "dispatcher", command, "--help"], capture_output=True, text=True
        )
        assert 0 == proc.returncode
        assert CANARY not in proc.stdout + proc.stderr
        assert "example" in proc.stdout
    assert CANARY not in repr(Secret(CANARY)) + str(Secret(CANARY))
    assert CANARY not in repr(ApiKeyAuth(Secret(CANARY)))
    assert ACCESS not in repr(TokenAuth("42", Secret(ACCESS)))
    assert ACCESS not in repr(TokenAuth("", Secret(ACCESS), res="userid/7", version="2022-05-01"))


def test_the_key_is_never_taken_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """There is no option for the key: passing one is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["run", "job.yaml", "--api-key", CANARY])
    assert 2 == exc.value.code


PG_CANARY = "canary-pg-5e8a0c17"


def test_the_ledger_password_never_shows(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A PostgreSQL ledger's password (from PGPASSWORD, as the manifests pass it) appears in
    no output, no file and no ledger row, through every command that takes the ledger; one
    written into the URL is refused without being repeated."""
    import psycopg

    monkeypatch.setenv("ONENET_API_KEY", CANARY)
    monkeypatch.setenv("PGPASSWORD", PG_CANARY)
    job = write_job(tmp_path, 8, concurrency=2)
    config = tmp_path / "config.yaml"
    config.write_text(f"ledger: {pg_url}\n")
    codes = []
    with simulator(api_key=CANARY, drop_after_queue_rate=0.3, seed=7, delivery=True) as sim:
        codes.append(main(["run", str(job), "--base-url", sim.base_url, "--config", str(config)]))
        ask = ["--base-url", sim.base_url]
        codes.append(main(["reconcile", pg_url, *ask]))
        codes.append(main(["track", pg_url, "--run-id", "test-job", *ask]))
        codes.append(main(["cancel", pg_url, "--run-id", "test-job", "--dry-run", *ask]))
    codes.append(main(["status", pg_url]))
    codes.append(main(["report", pg_url, "--format", "json"]))
    codes.append(main(["export", pg_url, "--format", "csv", "-o", str(tmp_path / "out.csv")]))
    with_password = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{PG_CANARY}@")
    assert with_password != pg_url
    for argv in (["status", with_password], ["run", str(job), "--ledger", with_password]):
        with pytest.raises(SystemExit):
            main(argv)
    assert 2 not in codes, codes  # every command worked on the PostgreSQL ledger
    out, err = capfd.readouterr()
    assert PG_CANARY not in out + err
    assert CANARY not in out + err
    assert "ledger: postgresql://" in out
    files = _everything_in(tmp_path)
    assert PG_CANARY.encode() not in files
    with psycopg.connect(pg_url) as conn:
        dump = repr(conn.execute("SELECT * FROM runs").fetchall())
        dump += repr(conn.execute("SELECT * FROM items").fetchall())
    assert PG_CANARY not in dump and CANARY not in dump
