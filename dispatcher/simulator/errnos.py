"""The platform's errno values the simulator answers with, and the rejection they travel in.

The numbers and texts come from the contract's errno table (NB column where the two
platform tables disagree). Reasons after a colon are the simulator's own: the real
platform's texts are terser, so the dispatcher must classify by errno and the text's
prefix, never by the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = 0
AUTH_FAILED = 1
API_KEY_REQUIRED = 2
PARAMETER_REQUIRED = 3
INVALID_JSON = 4
REQUEST_TOO_LARGE = 5
INVALID_PARAMETER = 6
SERVICE_INTERNAL_ERROR = 7
NOT_FOUND = 8
API_FREQ_OUT_OF_LIMIT = 15
SYSTEM_LOGIC_LIMIT = 5006

TEXTS: dict[int, str] = {
    OK: "succ",
    AUTH_FAILED: "auth failed",
    API_KEY_REQUIRED: "api-key required",
    PARAMETER_REQUIRED: "parameter required",
    INVALID_JSON: "invalid JSON",
    REQUEST_TOO_LARGE: "request too large",
    INVALID_PARAMETER: "invalid parameter",
    SERVICE_INTERNAL_ERROR: "service internal error",
    NOT_FOUND: "not found",
    API_FREQ_OUT_OF_LIMIT: "api freq out of limit",
    SYSTEM_LOGIC_LIMIT: "system logic limit",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A non-zero errno answer: the request is refused and nothing is queued."""

    errno: int
    error: str

    @classmethod
    def of(cls, errno: int, reason: str | None = None) -> Rejection:
        """The platform's text for `errno`, with the simulator's reason appended."""
        text = TEXTS[errno]
        return cls(errno, f"{text}: {reason}" if reason else text)


def required(name: str) -> Rejection:
    return Rejection.of(PARAMETER_REQUIRED, name)


def invalid(reason: str) -> Rejection:
    return Rejection.of(INVALID_PARAMETER, reason)
