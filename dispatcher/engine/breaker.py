"""The circuit breaker: stop a run when the platform, not the devices, is failing.

When the API is down, the network is cut or the key was revoked, every request
fails the same way. Without a breaker each row would burn its retries and end
``failed``, and the next run would not send them again. Instead, once most of the
recent outcomes are platform-level failures, the run stops (exit 4) with the rows
still ``pending``: the same command resumes when the platform is back.
"""

from __future__ import annotations

from collections import deque

from dispatcher.onenet.errnos import platform_level
from dispatcher.outcome import Outcome


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
