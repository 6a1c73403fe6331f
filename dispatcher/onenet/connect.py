"""The one factory for an authenticated client: run, reconcile, track and cancel use it."""

from __future__ import annotations

from dispatcher.config import Config
from dispatcher.onenet.access import secret_values
from dispatcher.onenet.auth import Authenticator
from dispatcher.onenet.client import OneNetClient


def connect(
    config: Config,
    base_url: str,
    auth: Authenticator,
    *,
    concurrency: int,
    secrets: tuple[str, ...] | None = None,
    guard_second_send: bool = True,
) -> OneNetClient:
    """A client for ``base_url`` on the config's platform, its pool sized to ``concurrency``.

    ``secrets`` are the values never to show in a message (default: the authenticator's;
    a simulated run adds the simulator's key).
    """
    return OneNetClient(
        base_url,
        auth,
        config.http,
        concurrency=concurrency,
        secrets=secret_values(auth) if secrets is None else secrets,
        platform=config.profile,
        guard_second_send=guard_second_send,
    )
