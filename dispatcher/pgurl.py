"""Where a ledger lives: a SQLite file (a path) or a PostgreSQL database (a URL).

The one place that tells them apart, refuses a password written into a URL, and masks
one when a URL is shown. A password belongs in the environment (``PGPASSWORD``) or a
file (``PGPASSFILE``, ``~/.pgpass``), which libpq reads itself: a password on a command
line is visible to every user of the machine (``ps``) and lands in shell histories, CI
logs and Kubernetes manifests, and one in a config file travels with it into version
control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from dispatcher.errors import InputError

SCHEMES = ("postgresql://", "postgres://")
_PASSWORD_IN_NETLOC = re.compile(r"(?<=[:/])([^:/@]*):([^@]*)@")
_PASSWORD_IN_QUERY = re.compile(r"(?i)(?<=[?&])(password=)[^&#]*")
PASSWORD_REFUSED = (
    "a password in the ledger URL is refused (it would show in process lists, shell"
    " histories and logs): give the URL without it and the password in PGPASSWORD"
    " or a password file (PGPASSFILE, ~/.pgpass)"
)


@dataclass(frozen=True, slots=True)
class PgUrl:
    """A PostgreSQL ledger's URL; ``str()`` shows it with any password masked."""

    url: str

    def __str__(self) -> str:
        return mask(self.url)


LedgerTarget = Path | PgUrl


def is_url(text: str) -> bool:
    return text.lower().startswith(SCHEMES)


def has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
        netloc_password = parts.password is not None
    except (
        ValueError
    ):  # a malformed port: libpq will say what is wrong, we only look for a password
        netloc_password = _PASSWORD_IN_NETLOC.search(url.split("?", 1)[0]) is not None
    query = dict((k.lower(), v) for k, v in parse_qsl(url.partition("?")[2]))
    return netloc_password or "password" in query


def mask(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and reports)."""
    head, sep, query = url.partition("?")
    head = _PASSWORD_IN_NETLOC.sub(lambda m: f"{m.group(1)}:***@", head, count=1)
    return head + sep + _PASSWORD_IN_QUERY.sub(r"\1***", query)


def parse_target(text: str, *, where: str) -> LedgerTarget:
    """A LEDGER argument or the config's ``ledger``: a path, or a URL without a password.

    ``where`` names the option or key in the refusal (``--ledger``, ``LEDGER``).
    """
    if not is_url(text):
        return Path(text)
    if has_password(text):
        raise InputError(f"{where}: {PASSWORD_REFUSED}")
    return PgUrl(text)
