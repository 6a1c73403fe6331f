"""The tool's config file and the secrets it points at; a key's value never shows in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.config import DEFAULT_BASE_URL, Config, Secret, access_key, api_key, load_config
from dispatcher.errors import ConfigError
from tests.jobtools import BASE_JOB, validate, write

KEY = "Ijp=J3dWRj3=zpc8j2w8=Dk=3tM="  # shaped like a OneNET master key


def config_lines(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.lines()


def test_no_config_means_defaults() -> None:
    """Without --config the documented defaults apply."""
    config = load_config(None)
    assert (DEFAULT_BASE_URL, "api-key", "ONENET_API_KEY", None, "auto") == (
        config.base_url,
        config.auth.method,
        config.auth.api_key_env,
        config.ledger,
        config.log_format,
    )


def test_a_full_config_loads(tmp_path: Path) -> None:
    """Every section of the config is read, and a trailing slash of the base URL is dropped."""
    path = write(
        tmp_path,
        "config.yaml",
        """\
        base_url: https://api.heclouds.com/
        auth:
          method: token
          product_id: "123456"
          access_key_file: /run/secrets/onenet
          sign_method: sha256
        http: {connect_timeout: 3, read_timeout: 20}
        retries: {attempts: 3}
        ledger: runs/ledger.sqlite
        log_format: json
        """,
    )
    config = load_config(path)
    assert ("https://api.heclouds.com", "token", "sha256", 20.0, 3, "json") == (
        config.base_url,
        config.auth.method,
        config.auth.sign_method,
        config.http.read_timeout,
        config.retries.attempts,
        config.log_format,
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "base_ur: http://api.heclouds.com\n",
            ['config.yaml:1: base_ur: unknown key "base_ur" (did you mean "base_url"?)'],
        ),
        (
            "auth:\n  api_key_evn: MY_KEY\n",
            [
                'config.yaml:2: auth.api_key_evn: unknown key "api_key_evn" (did you mean "api_key_env"?)'
            ],
        ),
        (
            "base_url: ftp://api.heclouds.com\n",
            [
                'config.yaml:1: base_url: base URL must be http:// or https:// with a host, got "ftp://api.heclouds.com"'
            ],
        ),
        (
            "base_url: api.heclouds.com\n",
            [
                'config.yaml:1: base_url: base URL must be http:// or https:// with a host, got "api.heclouds.com"'
            ],
        ),
        (
            "base_url: 'http://'\n",
            [
                'config.yaml:1: base_url: base URL must be http:// or https:// with a host, got "http://"'
            ],
        ),
        (
            "auth: {method: password}\n",
            ["config.yaml:1: auth.method: must be 'api-key' or 'token', got 'password'"],
        ),
        (
            "log_format: xml\n",
            ["config.yaml:1: log_format: must be 'auto', 'console' or 'json', got 'xml'"],
        ),
        (
            "- base_url\n",
            ["config.yaml:1: a config file is a mapping of settings"],
        ),
    ],
)
def test_bad_config(workdir: Path, content: str, expected: list[str]) -> None:
    """A config breaking one rule is a ConfigError at its line."""
    assert expected == config_lines(write(workdir, "config.yaml", content))


def test_bad_config_through_the_cli(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate --config with a bad config exits 2 and names the config's line."""
    write(workdir, "job.yaml", BASE_JOB)
    write(workdir, "config.yaml", "base_url: gopher://x\n")
    result = validate(capsys, "job.yaml", "--config", "config.yaml")
    assert (2, "") == (result.code, result.out)
    assert [
        'config.yaml:1: base_url: base URL must be http:// or https:// with a host, got "gopher://x"'
    ] == result.problems


def test_missing_config_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config that does not exist is an input error."""
    write(workdir, "job.yaml", BASE_JOB)
    result = validate(capsys, "job.yaml", "--config", "nope.yaml")
    assert (2, ["nope.yaml: file not found"]) == (result.code, result.problems)


def test_validate_needs_no_key(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate sends nothing, so it works without an API key in the environment."""
    monkeypatch.delenv("ONENET_API_KEY", raising=False)
    write(workdir, "job.yaml", BASE_JOB)
    assert 0 == validate(capsys, "job.yaml").code


# --- the key ------------------------------------------------------------------------


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is read from ONENET_API_KEY by default and never shown by repr or str."""
    monkeypatch.setenv("ONENET_API_KEY", KEY)
    secret = api_key(Config())
    assert KEY == secret.reveal()
    assert ("Secret(***)", "Secret(***)") == (repr(secret), str(secret))
    assert KEY not in f"{secret} {secret!r} {Secret(KEY)}"


def test_key_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key file wins over the variable; its surrounding new lines are dropped."""
    monkeypatch.setenv("ONENET_API_KEY", "from-the-environment")
    path = write(tmp_path, "key", f"{KEY}\n")
    config = Config.model_validate({"auth": {"api_key_file": str(path)}})
    assert KEY == api_key(config).reveal()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            None,
            "no API key: set the environment variable ONENET_API_KEY (or name a file in the config)",
        ),
        ("", "the API key in environment variable ONENET_API_KEY is empty"),
        (
            " " + KEY,
            "the API key in environment variable ONENET_API_KEY contains white space; check how it was pasted",
        ),
        (
            KEY + "\n",
            "the API key in environment variable ONENET_API_KEY contains white space; check how it was pasted",
        ),
        (
            KEY[:10] + " " + KEY[10:],
            "the API key in environment variable ONENET_API_KEY contains white space; check how it was pasted",
        ),
    ],
)
def test_unusable_key_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, expected: str
) -> None:
    """A missing, empty or badly pasted key is a clear ConfigError that does not repeat the key."""
    if env is None:
        monkeypatch.delenv("ONENET_API_KEY", raising=False)
    else:
        monkeypatch.setenv("ONENET_API_KEY", env)
    with pytest.raises(ConfigError) as caught:
        api_key(Config())
    assert [expected] == caught.value.lines()
    assert KEY[:10] not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the API key file {path}: No such file or directory"),
        ("", "the API key in file {path} is empty"),
        ("  \n\t\n", "the API key in file {path} is empty"),
        (
            f"{KEY}\n{KEY}\n",
            "the API key in file {path} contains white space; check how it was pasted",
        ),
    ],
)
def test_unusable_key_file(tmp_path: Path, content: str | None, expected: str) -> None:
    """A missing, empty or two-line key file is a clear ConfigError that does not repeat the key."""
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    config = Config.model_validate({"auth": {"api_key_file": str(path)}})
    with pytest.raises(ConfigError) as caught:
        api_key(config)
    assert [expected.format(path=path)] == caught.value.lines()
    assert KEY not in str(caught.value)


def test_access_key_for_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token method's access key follows the same rules under its own variable."""
    monkeypatch.delenv("ONENET_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        access_key(Config())
    assert [
        "no access key: set the environment variable ONENET_ACCESS_KEY (or name a file in the config)"
    ] == caught.value.lines()
    monkeypatch.setenv("ONENET_ACCESS_KEY", KEY)
    assert KEY == access_key(Config()).reveal()


@pytest.mark.parametrize("field", ["api_key_env", "access_key_env"])
def test_a_key_pasted_as_the_variable_name_is_not_echoed(workdir: Path, field: str) -> None:
    """A key written where the variable's name belongs is refused without repeating it."""
    path = write(workdir, "config.yaml", f'auth:\n  {field}: "{KEY}"\n')
    lines = config_lines(path)
    assert [
        f"config.yaml:2: auth.{field}: must be the name of an environment variable "
        "(such as ONENET_API_KEY), not the key itself"
    ] == lines
    assert KEY not in "\n".join(lines)


def test_a_key_written_into_the_config_is_not_echoed(workdir: Path) -> None:
    """A key written straight into the config is an unknown key, and its value is not repeated."""
    path = write(workdir, "config.yaml", f'auth:\n  api_key: "{KEY}"\n')
    lines = config_lines(path)
    assert [
        'config.yaml:2: auth.api_key: unknown key "api_key" (did you mean "api_key_env"?)'
    ] == lines
    assert KEY not in "\n".join(lines)


def test_credentials_in_the_base_url_are_not_echoed(workdir: Path) -> None:
    """A base URL carrying a password is refused without repeating it."""
    path = write(workdir, "config.yaml", f"base_url: http://user:{KEY}@api.heclouds.com\n")
    lines = config_lines(path)
    assert ["config.yaml:1: base_url: base URL must not carry credentials"] == lines


def test_the_example_config_shows_the_defaults() -> None:
    """config.example.yaml loads, and every value it shows is the default."""
    root = Path(__file__).resolve().parent.parent
    assert Config() == load_config(root / "config.example.yaml")
