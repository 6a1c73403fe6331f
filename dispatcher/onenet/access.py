"""Reaching the platform: its base URL, and the credentials the config names."""

from __future__ import annotations

from dispatcher.config import Config, access_key, api_key, check_base_url
from dispatcher.errors import ConfigError
from dispatcher.onenet.auth import ApiKeyAuth, Authenticator, TokenAuth, product_res, user_res


def base_url_from(value: str) -> str:
    """A checked http(s) base URL; ConfigError otherwise."""
    try:
        return check_base_url(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def authenticator_for(config: Config) -> Authenticator:
    """The api-key header or a signed token, as the config says; ConfigError when the key is missing."""
    auth = config.auth
    if auth.method == "token":
        if auth.user_id:
            res = user_res(auth.user_id)
        elif auth.product_id:
            res = product_res(auth.product_id)
        else:
            raise ConfigError("auth.method is token but auth.product_id is not set in the config")
        return TokenAuth(
            auth.product_id or "",
            access_key(config),
            method=auth.sign_method,
            lifetime=auth.token_lifetime,
            res=res,
            version=config.token_version,
        )
    if not config.profile.api_key:
        raise ConfigError(
            f"platform {config.platform} takes a signed token only (auth.method: token)"
        )
    return ApiKeyAuth(api_key(config))


def credentials_source(config: Config) -> str:
    """Where the key comes from, for messages: the variable or the file, never the key."""
    if config.auth.method == "token":
        what, env, file = "access key", config.auth.access_key_env, config.auth.access_key_file
        what = f"the token signed with the {what}"
    else:
        what, env, file = "the API key", config.auth.api_key_env, config.auth.api_key_file
    return f"{what} from the file {file}" if file else f"{what} from the environment variable {env}"


def secret_values(auth: Authenticator) -> tuple[str, ...]:
    """What the client must blank out of any error text."""
    return tuple(auth.headers().values())
