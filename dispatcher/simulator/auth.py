"""Who may talk to the platform: the legacy `api-key` header or a signed token.

The token is the contract's `authorization` header:

    version=2018-10-31&res=products%2F<id>&et=<unix expiry>&method=<m>&sign=<sign>
    sign = base64(HMAC-<m>(base64decode(access_key), et\\nmethod\\nres\\nversion))

with every value URL-encoded. The check is written from that formula alone. Error
texts name what is wrong but never echo a key, a signature or a token.

The newer console ("studio") takes that token only (an `api-key` header alone is
refused), with version 2022-05-01 and `res=userid/<user id>`. A product token
(`products/<id>`) is accepted there too, signed as version 2022-05-01 or 2018-10-31
(a legacy token config moved over unchanged): the pages we have say a product token
is accepted, not which version it must carry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import unquote

from dispatcher.simulator import errnos
from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.errnos import Rejection

TOKEN_VERSION = "2018-10-31"
STUDIO_VERSION = "2022-05-01"
DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}
_TOKEN_KEYS = frozenset({"version", "res", "et", "method", "sign"})
# "URL-encoded" read strictly: only unreserved characters and %XX escapes, so a raw
# "/" in res or "+" / "=" in a base64 sign is caught rather than guessed at.
_ENCODED = re.compile(r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2})*", re.ASCII)


def check_auth(headers: Mapping[str, str], config: SimulatorConfig, now: float) -> Rejection | None:
    """None when the request may proceed; otherwise errno 2 (no credentials) or 1."""
    token = headers.get("authorization")
    if config.platform == "studio":
        if token is None:
            if headers.get("api-key"):
                return _failed("this console takes a signed authorization token, not api-key")
            return _failed("authorization token required")
        if not config.token_auth:
            return _failed("no token is accepted: the simulator has no access key")
        return check_token(token, config, now)
    if token is not None and config.token_auth:
        return check_token(token, config, now)
    key = headers.get("api-key")
    if key is None or key == "":
        return Rejection.of(errnos.API_KEY_REQUIRED)
    if not hmac.compare_digest(key.encode(), config.api_key.encode()):
        return Rejection.of(errnos.AUTH_FAILED, "api-key does not match")
    return None


def check_token(token: str, config: SimulatorConfig, now: float) -> Rejection | None:
    assert config.access_key is not None
    fields: dict[str, str] = {}
    for part in token.split("&"):
        name, sep, raw = part.partition("=")
        if not sep or name not in _TOKEN_KEYS or name in fields:
            return _failed("token fields must be version, res, et, method, sign, once each")
        if _ENCODED.fullmatch(raw) is None:
            return _failed(f"token field {name} is not URL-encoded")
        fields[name] = unquote(raw)
    if fields.keys() != _TOKEN_KEYS:
        return _failed("token fields must be version, res, et, method, sign, once each")
    rejection = _check_res(fields["res"], fields["version"], config)
    if rejection is not None:
        return rejection
    digest = DIGESTS.get(fields["method"])
    if digest is None:
        return _failed("token method must be md5, sha1 or sha256")
    if not fields["et"].isascii() or not fields["et"].isdigit():
        return _failed("token et must be unix seconds")
    if int(fields["et"]) <= now:
        return _failed("token expired")
    expected = _sign(
        config.access_key,
        et=fields["et"],
        method=fields["method"],
        res=fields["res"],
        version=fields["version"],
    )
    if not hmac.compare_digest(fields["sign"].encode(), expected.encode()):
        return _failed("token signature does not match")
    return None


def _check_res(res: str, version: str, config: SimulatorConfig) -> Rejection | None:
    """The resource must be the configured product or user, at a version that takes it."""
    studio = config.platform == "studio"
    kind, _, name = res.partition("/")
    if kind == "userid" and studio:
        if config.user_id is None or name != config.user_id:
            return _failed("token res is not this user")
        if version != STUDIO_VERSION:
            return _failed(f"a user token's version must be {STUDIO_VERSION}")
        return None
    if kind == "products":
        if config.product_id is None or name != config.product_id:
            return _failed("token res is not this product")
        allowed = (STUDIO_VERSION, TOKEN_VERSION) if studio else (TOKEN_VERSION,)
        if version not in allowed:
            return _failed(f"token version must be {' or '.join(allowed)}")
        return None
    return _failed("token res must be products/<id>" + (" or userid/<id>" if studio else ""))


def _sign(access_key: str, *, et: str, method: str, res: str, version: str = TOKEN_VERSION) -> str:
    """The contract's signature over the decoded field values."""
    message = f"{et}\n{method}\n{res}\n{version}".encode()
    mac = hmac.new(base64.b64decode(access_key), message, DIGESTS[method])
    return base64.b64encode(mac.digest()).decode("ascii")


def _failed(reason: str) -> Rejection:
    return Rejection.of(errnos.AUTH_FAILED, reason)
