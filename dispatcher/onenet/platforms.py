"""The platform profiles: which OneNET console a job talks to, and every path it calls.

Both consoles serve the same cached-command calls with the same query parameters and
bodies; they differ in host, path prefix and the credentials they accept:

- ``legacy``: ``http://api.heclouds.com/nbiot/...``, an ``api-key`` header or a
  product token (version 2018-10-31);
- ``studio``: ``https://iot-api.heclouds.com/nb-iot/...``, a signed token only
  (version 2022-05-01; ``res`` a user or a product).

Paths are spelled here once, relative to the profile's prefix; the client joins
``base URL + prefix + path``. A base URL names scheme, host and port only, so the
simulator (or a proxy) stands in for either console without touching the paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PlatformName = Literal["legacy", "studio"]

OFFLINE = "/offline"  # write (POST) and read (GET)
EXECUTE = "/execute/offline"
HISTORY = "/offline/history"


def detail_path(uuid: str) -> str:
    """One command's detail: ``GET {prefix}/offline/history/{uuid}``."""
    return f"{HISTORY}/{uuid}"


def cancel_path(uuid: str) -> str:
    """Take back one waiting command: ``PUT {prefix}/offline/cancel/{uuid}``."""
    return f"/offline/cancel/{uuid}"


CANCEL_ALL = "/offline/cancel/all"


@dataclass(frozen=True, slots=True)
class Profile:
    name: PlatformName
    base_url: str  # scheme, host and port only
    prefix: str  # put before every path
    api_key: bool  # whether the legacy ``api-key`` header is accepted
    token_version: str  # the token version signed when the config names none

    def root(self, base_url: str) -> str:
        """Where the paths hang: the base URL (scheme, host, port) and this prefix."""
        return base_url.rstrip("/") + self.prefix


LEGACY = Profile("legacy", "http://api.heclouds.com", "/nbiot", True, "2018-10-31")
STUDIO = Profile("studio", "https://iot-api.heclouds.com", "/nb-iot", False, "2022-05-01")
PROFILES: dict[str, Profile] = {p.name: p for p in (LEGACY, STUDIO)}
