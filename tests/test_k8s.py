"""The Kubernetes manifests under deploy/k8s/.

Each is validated offline against the API schemas kubernetes-validate bundles, in
strict mode (an unknown field fails), for the oldest Kubernetes they are written for
(1.29: the first with backoffLimitPerIndex on by default) and a current one. The
checks below pin what docs/scale-out.md promises of them: shards from the Indexed
Job's index, secrets only by reference, a non-root read-only container.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from dispatcher.config import ShutdownConfig
from tests.checkers import run, tool

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
VERSIONS = ["1.29.0", "1.33.0"]
MOUNT = "/etc/onenet-dispatch"
# The label Kubernetes (1.27+) puts on every pod of a Job: the run id of its rollout.
JOB_NAME = "metadata.labels['batch.kubernetes.io/job-name']"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in documents(p) if d["kind"] == kind]


def job_specs() -> list[tuple[str, dict[str, Any]]]:
    """Every Job spec, the CronJob's template included, named by its object."""
    specs = [(j["metadata"]["name"], j["spec"]) for j in by_kind("Job")]
    specs += [(c["metadata"]["name"], c["spec"]["jobTemplate"]["spec"]) for c in by_kind("CronJob")]
    return specs


def indexed_specs() -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, s in job_specs() if s.get("completionMode") == "Indexed"]


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(object name, pod spec, container) for every container of every Job."""
    return [
        (name, spec["template"]["spec"], c)
        for name, spec in job_specs()
        for c in spec["template"]["spec"]["containers"]
    ]


def configmap() -> dict[str, str]:
    [cm] = by_kind("ConfigMap")
    return dict(cm["data"])


def test_every_kind_the_docs_describe_is_here() -> None:
    """A Secret, a ConfigMap, an Indexed Job, a CronJob and the follow-up track Job."""
    kinds = sorted(d["kind"] for p in MANIFESTS for d in documents(p))
    assert ["ConfigMap", "CronJob", "Job", "Job", "Secret", "Secret"] == kinds
    assert 2 == len(indexed_specs())  # the rollout and the CronJob's rollout


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_offline_in_strict_mode(path: Path, version: str) -> None:
    """kubernetes-validate finds the manifest valid for this Kubernetes version."""
    argv = [tool("kubernetes-validate"), "--strict", "--quiet", "--no-warn", "-k", version]
    done = run([*argv, str(path)])
    assert (0, "") == (done.returncode, done.stdout + done.stderr)


def test_strict_validation_refuses_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field (completionMod) is refused."""
    text = (K8S / "rollout-job.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("completionMode:", "completionMod:"), encoding="utf-8")
    done = run([tool("kubernetes-validate"), "--strict", "-k", VERSIONS[0], str(broken)])
    assert 0 != done.returncode
    assert "completionMod" in done.stdout + done.stderr


@pytest.mark.parametrize(("name", "spec"), indexed_specs(), ids=[n for n, _ in indexed_specs()])
def test_indexed_job_runs_one_shard_per_index(name: str, spec: dict[str, Any]) -> None:
    """Pod K runs `--shard $(JOB_COMPLETION_INDEX)/N`, N the Job's completions, all at once."""
    [container] = spec["template"]["spec"]["containers"]
    args = container["args"]
    shards = spec["completions"]
    assert f"$(JOB_COMPLETION_INDEX)/{shards}" == args[args.index("--shard") + 1]
    assert shards == spec["parallelism"]
    assert "run" == args[0]
    assert "$(LEDGER_URL)" == args[args.index("--ledger") + 1]
    assert "$(RUN_ID)" == args[args.index("--run-id") + 1]
    # Retries per shard, and only where a retry can help.
    assert spec["backoffLimitPerIndex"] >= 1
    assert "Never" == spec["template"]["spec"]["restartPolicy"]
    [fail_index] = [r for r in spec["podFailurePolicy"]["rules"] if r["action"] == "FailIndex"]
    assert {1, 2, 3, 70} == set(fail_index["onExitCodes"]["values"])
    assert 4 not in fail_index["onExitCodes"]["values"]  # an outage: a retry resumes


def test_cronjob_runs_are_new_each_time_and_never_overlap() -> None:
    """Each scheduled Job is its own run (its name), shared by its shards; never two at once."""
    [cron] = by_kind("CronJob")
    assert "Forbid" == cron["spec"]["concurrencyPolicy"]
    assert "Asia/Shanghai" == cron["spec"]["timeZone"]
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    [run_id] = [e for e in container["env"] if e["name"] == "RUN_ID"]
    assert JOB_NAME == run_id["valueFrom"]["fieldRef"]["fieldPath"]


def test_track_job_watches_the_rollouts_run() -> None:
    """The follow-up Job runs `track LEDGER --run-id RUN --watch` with the rollout's run id."""
    [(_, track)] = [(n, s) for n, s in job_specs() if n.endswith("-track")]
    [container] = track["template"]["spec"]["containers"]
    args = container["args"]
    assert ["track", "$(LEDGER_URL)", "--run-id", "$(RUN_ID)", "--watch"] == args[:5]
    [rollout] = [j for j in by_kind("Job") if j["spec"].get("completionMode") == "Indexed"]
    env = {e["name"]: e for e in container["env"]}
    [rollout_container] = rollout["spec"]["template"]["spec"]["containers"]
    rollout_env = {e["name"]: e for e in rollout_container["env"]}
    assert rollout["metadata"]["name"] == env["RUN_ID"]["value"]
    assert JOB_NAME == rollout_env["RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert rollout_env["LEDGER_URL"] == env["LEDGER_URL"]


SECRET_ENV = re.compile(r"(?i)key|password|secret|token")


@pytest.mark.parametrize(
    ("name", "pod", "container"), containers(), ids=[f"{n}:{c['name']}" for n, _, c in containers()]
)
def test_secrets_reach_the_pod_only_by_reference(
    name: str, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    """The key and the ledger password come from Secrets into env; nothing secret in args."""
    env = {e["name"]: e for e in container["env"]}
    secret_names = {s["metadata"]["name"]: set(s["stringData"]) for s in by_kind("Secret")}
    for var, entry in env.items():
        if SECRET_ENV.search(var):
            assert "value" not in entry, var
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secret_names[ref["name"]], var
    # libpq's own variable: the ledger URL then needs no password.
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]
    assert "secretKeyRef" in env["ONENET_API_KEY"]["valueFrom"]
    assert not any(SECRET_ENV.search(arg) for arg in container["args"] if "$(" in arg)
    ledger_ref = env["LEDGER_URL"]["valueFrom"]["configMapKeyRef"]
    url = urlsplit(configmap()[ledger_ref["key"]])
    assert ("postgresql", None) == (url.scheme, url.password)


def test_secret_template_holds_placeholders_only() -> None:
    """Every value of the Secret template is a ${VAR} for envsubst, never a value."""
    values = [v for s in by_kind("Secret") for v in s["stringData"].values()]
    assert values
    assert all(re.fullmatch(r"\$\{[A-Z_]+\}", v) for v in values), values


@pytest.mark.parametrize(
    ("name", "pod", "container"), containers(), ids=[f"{n}:{c['name']}" for n, _, c in containers()]
)
def test_pods_run_non_root_read_only_with_limits(
    name: str, pod: dict[str, Any], container: dict[str, Any]
) -> None:
    """The image's numeric user, no root, a read-only root filesystem, requests and limits."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [user] = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    security = pod["securityContext"]
    assert (True, int(user[0]), int(user[1])) == (
        security["runAsNonRoot"],
        security["runAsUser"],
        security["runAsGroup"],
    )
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert not container["securityContext"]["allowPrivilegeEscalation"]
    assert ["ALL"] == container["securityContext"]["capabilities"]["drop"]
    assert {"requests", "limits"} <= set(container["resources"])
    assert "memory" in container["resources"]["limits"]
    assert pod["automountServiceAccountToken"] is False
    # Kubernetes waits longer after SIGTERM than the tool's grace, so the ledger is flushed.
    assert pod["terminationGracePeriodSeconds"] >= ShutdownConfig().grace + 15


def test_configmap_job_and_config_pass_validate(tmp_path: Path) -> None:
    """The job, fleet and config the pods mount are accepted by `onenet-dispatch validate`."""
    [config_volume] = [
        v for v in by_kind("Job")[0]["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    ]
    data = configmap()
    for item in config_volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]], encoding="utf-8")
    [rollout] = [j for j in by_kind("Job") if j["spec"].get("completionMode") == "Indexed"]
    [container] = rollout["spec"]["template"]["spec"]["containers"]
    job, config = container["args"][1], container["args"][3]
    assert job.startswith(f"{MOUNT}/") and config.startswith(f"{MOUNT}/")
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "dispatcher", "validate", "--strict"),
            *("--config", str(tmp_path / config.removeprefix(f"{MOUNT}/"))),
            str(tmp_path / job.removeprefix(f"{MOUNT}/")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ONENET_API_KEY": "unused"},
    )
    assert 0 == done.returncode, done.stdout + done.stderr
