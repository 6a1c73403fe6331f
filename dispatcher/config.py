"""The tool's config file: where the platform is, how to authenticate, timeouts, ledger.

The API key itself never lives in the config: the file names an environment
variable or a file holding it, so configs can be committed and shared.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dispatcher.errors import ConfigError
from dispatcher.onenet.platforms import LEGACY, PROFILES, PlatformName, Profile
from dispatcher.pgurl import PASSWORD_REFUSED, has_password, is_url
from dispatcher.problems import Problem
from dispatcher.schema_errors import translate_errors
from dispatcher.yamlfile import YamlDoc, display_path, load_yaml

DEFAULT_BASE_URL = LEGACY.base_url
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
    product_id: str | None = Field(
        None, description="product id: a product token (res products/<id>)"
    )
    user_id: str | None = Field(
        None, description="user id: a user token (res userid/<id>), newer console only"
    )
    token_version: str | None = Field(
        None,
        description="token version; default the platform's (2018-10-31 / 2022-05-01)",
    )
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

    @field_validator("token_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value, re.ASCII):
            raise PydanticCustomError(
                "token_version",
                'must be a date such as 2022-05-01, got "{value}"',
                {"value": value},
            )
        return value

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
    platform: PlatformName = Field(
        "legacy", description="legacy (api.heclouds.com) or studio (iot-api.heclouds.com)"
    )
    base_url: str = Field(
        DEFAULT_BASE_URL, description="scheme, host and port; default the platform's"
    )
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    retries: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    ledger: str | None = Field(
        None,
        description="ledger path, or a postgresql:// URL without password (PGPASSWORD,"
        " ~/.pgpass); default ledger.sqlite beside the job",
    )
    log_format: Literal["auto", "console", "json"] = "auto"
    key_budget: float | None = Field(
        None,
        gt=0,
        le=100000,
        description="requests per second the API key may make, shared by every run, shard,"
        " track and reconcile on one ledger (the platform's public limit is 300); unset:"
        " the largest rate any of them asks for",
    )

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, data: Any) -> Any:
        # The platform decides the defaults of the base URL and of the auth method
        # (the newer console takes tokens only), unless the file says otherwise.
        if not isinstance(data, dict) or data.get("platform") not in PROFILES:
            return data
        profile = PROFILES[data["platform"]]
        data = dict(data)
        data.setdefault("base_url", profile.base_url)
        auth = data.get("auth")
        if not profile.api_key and (
            auth is None or (isinstance(auth, dict) and "method" not in auth)
        ):
            data["auth"] = {**(auth or {}), "method": "token"}
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("ledger")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # A config file is copied, committed and shown: the password stays in the
        # environment or a password file (the message never repeats the URL).
        if value is not None and is_url(value) and has_password(value):
            raise ValueError(PASSWORD_REFUSED)
        return value

    @property
    def profile(self) -> Profile:
        return PROFILES[self.platform]

    @property
    def token_version(self) -> str:
        return self.auth.token_version or self.profile.token_version


def check_base_url(value: str) -> str:
    """Scheme, host and port: the platform profile adds its path prefix (``onenet.platforms``).

    A path is refused rather than ignored: a URL copied with its prefix from an old
    script would otherwise be silently reinterpreted, and a proxy path would be lost.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f'base URL must be http:// or https:// with a host, got "{value}"')
    if parts.username or parts.password:
        raise ValueError("base URL must not carry credentials")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(
            "base URL is scheme, host and port only (the platform setting adds the"
            f' path, {" or ".join(p.prefix for p in PROFILES.values())}), got "{value}"'
        )
    return value.rstrip("/")


def load_config(path: Path | None) -> Config:
    """The config at ``path``, or the defaults when no file is given."""
    if path is None:
        return Config()
    doc = load_yaml(path, display_path(path))
    if not isinstance(doc.data, dict):
        raise ConfigError([Problem(doc.file, 1, None, "a config file is a mapping of settings")])
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(translate_errors(exc, doc, Config)) from None
    problems = platform_problems(config, doc)
    if problems:
        raise ConfigError(problems)
    return config


def platform_problems(config: Config, doc: YamlDoc) -> list[Problem]:
    """What the platform and auth settings lack or contradict, each at its line."""
    auth = config.auth
    profile = config.profile
    problems: list[Problem] = []

    def problem(loc: tuple[str, ...], what: str) -> None:
        problems.append(Problem(doc.file, doc.line_of(loc), ".".join(loc), what))

    if auth.method == "api-key" and not profile.api_key:
        problem(
            ("auth", "method"),
            f"platform {profile.name} takes a signed token only, not an api-key header;"
            " set auth.method: token with auth.user_id or auth.product_id",
        )
    if auth.method == "token":
        if auth.product_id and auth.user_id:
            problem(("auth", "user_id"), "set auth.user_id or auth.product_id, not both")
        elif not auth.product_id and not auth.user_id:
            problem(
                ("auth",),
                "token authentication needs auth.product_id"
                + (" or auth.user_id" if not profile.api_key else ""),
            )
        elif auth.user_id and profile.api_key:
            problem(
                ("auth", "user_id"),
                "a user token (userid/<id>) is for platform: studio; legacy takes auth.product_id",
            )
    elif auth.user_id or auth.token_version:
        key = "user_id" if auth.user_id else "token_version"
        problem(("auth", key), "is used only with auth.method: token")
    return problems


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
