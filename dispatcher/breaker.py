"""The circuit breaker: stop a run when the platform, not the devices, is failing.

When the API is down, the network is cut or the key was revoked, every request
fails the same way. Without a breaker each row would burn its retries and end
``failed``, and the next run would not send them again. Instead, once most of the
recent outcomes are platform-level failures, the run stops (exit 4) with the rows
still ``pending``: the same command resumes when the platform is back.
"""

from __future__ import annotations

from collections import deque

from dispatcher.outcome import Kind, Outcome

# errnos that say the platform (or our key) is the problem, not the device
_AUTH_ERRNOS = {1, 2, 3}
_BACKLOG_ERRNOS = {7, 17, 5117}


def platform_level(outcome: Outcome) -> bool:
    """Is this outcome a sign of an outage rather than of one device's trouble?"""
    if outcome.kind is Kind.OK:
        return False
    if outcome.errno is not None:
        if outcome.errno in _AUTH_ERRNOS:
            return "auth" in (outcome.error or "").lower() or outcome.errno == 2
        return outcome.errno in _BACKLOG_ERRNOS
    if outcome.http_status is None:
        return True  # no HTTP answer at all: refused, reset, timed out
    return outcome.http_status >= 500 or outcome.http_status in (401, 403, 429)


class CircuitBreaker:
    """Trips when ``threshold`` of the last ``window`` outcomes are platform-level failures."""

    __slots__ = ("_bad", "_recent", "threshold", "tripped", "window")

    def __init__(self, window: int, threshold: float) -> None:
        self.window = window
        self.threshold = threshold
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad = 0
        self.tripped = False

    def record(self, outcome: Outcome) -> bool:
        """Count one outcome; True the moment the breaker trips."""
        bad = platform_level(outcome)
        if len(self._recent) == self.window and self._recent[0]:
            self._bad -= 1
        self._recent.append(bad)
        self._bad += bad
        if (
            not self.tripped
            and len(self._recent) == self.window
            and self._bad >= self.threshold * self.window
        ):
            self.tripped = True
            return True
        return False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self._bad}/{len(self._recent)} bad, window={self.window}, tripped={self.tripped})"
