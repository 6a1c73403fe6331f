"""Authentication headers: the legacy ``api-key``, or the platform's signed token.

Token: ``version=<v>&res=<res>&et=<expiry>&method=<m>&sign=<sign>`` with
``sign = base64(HMAC-m(base64decode(access_key), et\\nmethod\\nres\\nversion))``, each
value URL-encoded. ``res`` is ``products/<id>`` (both consoles) or ``userid/<id>`` (the
newer console, version 2022-05-01). Tokens are renewed well before they expire, so a
run longer than a token's lifetime never sends an expired one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from dispatcher.config import Secret

TOKEN_VERSION = "2018-10-31"
_DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


def product_res(product_id: str) -> str:
    return f"products/{product_id}"


def user_res(user_id: str) -> str:
    return f"userid/{user_id}"


def sign_token(
    product_id: str,
    access_key: str,
    expires_at: int,
    method: str = "sha1",
    *,
    res: str | None = None,
    version: str = TOKEN_VERSION,
) -> str:
    """The ``authorization`` header value for ``res`` (default: the product) until ``expires_at``."""
    res = res if res is not None else product_res(product_id)
    message = f"{expires_at}\n{method}\n{res}\n{version}".encode()
    digest = hmac.new(base64.b64decode(access_key), message, _DIGESTS[method]).digest()
    sign = base64.b64encode(digest).decode()
    return (
        f"version={quote(version, safe='')}&res={quote(res, safe='')}&et={expires_at}"
        f"&method={method}&sign={quote(sign, safe='')}"
    )


class Authenticator(Protocol):
    def headers(self) -> dict[str, str]: ...


class ApiKeyAuth:
    """The ``api-key`` header."""

    __slots__ = ("_headers",)

    def __init__(self, key: Secret) -> None:
        self._headers = {"api-key": key.reveal()}

    def headers(self) -> dict[str, str]:
        return self._headers

    def identity(self) -> str:
        """What names the key's budget (hashed before it is stored): the key itself."""
        return self._headers["api-key"]

    def __repr__(self) -> str:
        return "ApiKeyAuth(***)"


class TokenAuth:
    """A signed ``authorization`` token, renewed when a fifth of its lifetime is left."""

    __slots__ = ("_expires", "_headers", "_key", "_lifetime", "_method", "_now", "_res", "_version")

    def __init__(
        self,
        product_id: str,
        access_key: Secret,
        *,
        method: str = "sha1",
        lifetime: int = 3600,
        now: Callable[[], float] = time.time,
        res: str | None = None,
        version: str = TOKEN_VERSION,
    ) -> None:
        self._res = res if res is not None else product_res(product_id)
        self._version = version
        self._key = access_key
        self._method = method
        self._lifetime = lifetime
        self._now = now
        self._expires = 0
        self._headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        now = self._now()
        if now >= self._expires - self._lifetime / 5:
            self._expires = int(now) + self._lifetime
            token = sign_token(
                "",
                self._key.reveal(),
                self._expires,
                self._method,
                res=self._res,
                version=self._version,
            )
            self._headers = {"authorization": token}
        return self._headers

    def identity(self) -> str:
        """What names the key's budget (hashed before it is stored): the access key and
        the resource it signs for; a token changes every hour, these do not."""
        return f"{self._res}\0{self._key.reveal()}"

    def __repr__(self) -> str:
        return f"TokenAuth(res={self._res}, version={self._version}, ***)"
