from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles (the README says the same, under "Set up and run the tests").
# - No deadline anywhere: a per-example time limit is a timed assertion, and on a busy
#   shared runner it fails at random for reasons that have nothing to do with the code.
# - "explore" (the default on a workstation): new random examples on every run, so the
#   properties keep looking for bugs; a failure is saved in .hypothesis/ and replayed.
# - "ci" (when CI is set): the same examples on every run (derandomize), so a pull
#   request's result depends on its code alone. That alone would hide bugs, which is why
#   the known hard cases (DST gaps and folds, ...) are pinned with @example in the tests
#   and a workstation run still explores. HYPOTHESIS_PROFILE picks one by name.
# - No "too slow" health check either: it fails a test whose examples took long to
#   generate, which on a busy runner is the machine's doing, not the strategy's.
NOT_TIMED = [HealthCheck.too_slow]
settings.register_profile("explore", deadline=None, suppress_health_check=NOT_TIMED)
settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=NOT_TIMED
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore")
)


# What a developer's shell or a CI runner may export that changes what the tool prints
# (colour codes, line width) or which key, debug mode or step summary it uses: every test
# starts without them, and one that needs a value sets it. The PostgreSQL variables stay:
# they may be how ONENET_TEST_PG_URL's server lets the developer in.
FROM_THE_SHELL = (
    "FORCE_COLOR",
    "NO_COLOR",
    "CLICOLOR_FORCE",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
    "GITHUB_STEP_SUMMARY",
    "CREDENTIALS_DIRECTORY",
    "ONENET_API_KEY",
    "ONENET_ACCESS_KEY",
    "ONENET_DISPATCH_DEBUG",
    "ONENET_SIM_API_KEY",
    "ONENET_SIM_ACCESS_KEY",
)


@pytest.fixture(autouse=True)
def _no_shell_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FROM_THE_SHELL:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory that is also the working directory, so messages name files as written."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- PostgreSQL (issue 16) ------------------------------------------------------------------
# `pg_url`: a fresh database per test on a real server; how the server is found or started,
# and when the tests that need it skip, is in tests/pg.py.
from tests.pg import ledger_target, pg_server_url, pg_url  # noqa: E402, F401  (fixtures, found by name)
