"""The tool's config file: where the platform is, how to authenticate, timeouts, ledger.

The API key itself never lives in the config: the file names an environment
variable or a file holding it, so configs can be committed and shared.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from dispatcher.errors import ConfigError
from dispatcher.jobfile import display_path, translate_errors
from dispatcher.problems import Problem
from dispatcher.yamlfile import load_yaml

DEFAULT_BASE_URL = "http://api.heclouds.com"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    method: Literal["api-key", "token"] = Field(
        "api-key", description="api-key header, or a signed token"
    )
    api_key_env: str = Field("ONENET_API_KEY", description="environment variable holding the key")
    api_key_file: str | None = Field(
        None, description="file holding the key (wins over the variable)"
    )
    product_id: str | None = Field(None, description="product id, for token authentication")
    access_key_env: str = Field(
        "ONENET_ACCESS_KEY", description="variable holding the product's access key"
    )
    access_key_file: str | None = Field(None, description="file holding the access key")
    sign_method: Literal["md5", "sha1", "sha256"] = Field(
        "sha1", description="token signature method"
    )
    token_lifetime: StrictInt = Field(
        3600, ge=60, le=30 * 86400, description="seconds a token is valid"
    )

    @field_validator("api_key_env", "access_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        # A key pasted here by mistake would otherwise be echoed in "set the variable ...".
        if not _ENV_NAME.fullmatch(value):
            raise PydanticCustomError(
                "env_name",
                "must be the name of an environment variable (such as ONENET_API_KEY), "
                "not the key itself",
            )
        return value


class HttpConfig(_Model):
    connect_timeout: float = Field(5.0, gt=0, le=120, description="seconds to open a connection")
    read_timeout: float = Field(30.0, gt=0, le=600, description="seconds to wait for an answer")
    # Below the idle timeout of the platform's load balancers, so that a pooled
    # connection is never reused just as the server closes it.
    keepalive: float = Field(4.0, gt=0, le=300, description="seconds an idle connection is kept")


class RetryConfig(_Model):
    attempts: StrictInt = Field(
        5, ge=1, le=20, description="tries per request for provably-unsent failures"
    )
    backoff_base: float = Field(0.5, gt=0, le=60, description="first backoff ceiling in seconds")
    backoff_max: float = Field(30.0, gt=0, le=600, description="largest backoff in seconds")


class BreakerConfig(_Model):
    window: StrictInt = Field(20, ge=5, le=10000, description="recent request outcomes looked at")
    threshold: float = Field(
        0.8, gt=0, le=1, description="share of them failing platform-wide that stops the run"
    )


class ShutdownConfig(_Model):
    # Below systemd's default 90 s stop timeout, so the ledger is flushed before SIGKILL.
    grace: float = Field(
        30.0, ge=0, le=3600, description="seconds in-flight requests get after SIGTERM/SIGINT"
    )


class Config(_Model):
    base_url: str = Field(DEFAULT_BASE_URL, description="the platform's API base URL")
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    retries: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    ledger: str | None = Field(
        None, description="ledger path; default ledger.sqlite beside the job"
    )
    log_format: Literal["auto", "console", "json"] = "auto"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_base_url(value)


def check_base_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'base URL must be http:// or https:// with a host, got "{value}"')
    if parts.username or parts.password:
        raise ValueError("base URL must not carry credentials")
    return value.rstrip("/")


def load_config(path: Path | None) -> Config:
    """The config at ``path``, or the defaults when no file is given."""
    if path is None:
        return Config()
    doc = load_yaml(path, display_path(path))
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(doc.file, 1, None, "a config file is a mapping of settings")])
    try:
        return Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(translate_errors(exc, doc, Config)) from None


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string whose repr and str never show it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def _expand(path: str, what: str) -> str:
    """``${VAR}`` in a key file's path: systemd hands credentials over in ``$CREDENTIALS_DIRECTORY``."""

    def var(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"the {what} file {path} names ${{{name}}}, which is not set"
                " (under systemd: LoadCredential= in the unit)"
            )
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", var, path)


def _read_secret(env: str, file: str | None, what: str) -> Secret:
    if file is not None:
        file = _expand(file, what)
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} file {file}: {exc.strerror}") from None
        source = f"file {file}"
    else:
        raw = os.environ.get(env)
        if raw is None:
            raise ConfigError(
                f"no {what}: set the environment variable {env} (or name a file in the config)"
            )
        value, source = raw, f"environment variable {env}"
    if not value:
        raise ConfigError(f"the {what} in {source} is empty")
    if any(ch.isspace() for ch in value):
        raise ConfigError(f"the {what} in {source} contains white space; check how it was pasted")
    return Secret(value)


def api_key(config: Config) -> Secret:
    """The api-key for the legacy header, from the file or environment the config names."""
    return _read_secret(config.auth.api_key_env, config.auth.api_key_file, "API key")


def access_key(config: Config) -> Secret:
    """The product access key for signed tokens."""
    return _read_secret(config.auth.access_key_env, config.auth.access_key_file, "access key")
