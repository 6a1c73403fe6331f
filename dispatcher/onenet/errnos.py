"""The platform's errno table, and which answers are permanent and which transient.

The platform's pages give two tables that disagree on small numbers, so errno 1 and
5106 are classified by their text too. An errno we do not know is ``failed``: the
platform answered, so nothing was queued, and the errno and text are kept for the
operator instead of being guessed at.
"""

from __future__ import annotations

from dispatcher.outcome import Kind, Outcome

_PERMANENT = {2, 3, 4, 5, 6, 8, 10, 13, 14, 2001, 5006}
# The words the classifier looks for, in English and as the platform's Chinese pages
# write them: an error text in Chinese must not turn "auth failed" into a device's failure.
_AUTH = ("auth", "token", "鉴权", "认证", "授权", "签名", "令牌")
_INTERNAL = ("internal", "内部")
_TRANSIENT_5106 = ("time_out", "timeout", "offline", "超时", "离线", "不在线")


def _says(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


TRANSIENT = {7, 17, 5117}
RATE_LIMITED = 15


def classify_errno(errno: int, error: str, http_status: int) -> Outcome:
    """The outcome of an answer carrying ``errno`` (not 0) and its ``error`` text."""
    text = error.lower()
    kind = Kind.FAILED
    slow = False
    cap: int | None = None
    if errno in TRANSIENT:
        kind = Kind.RETRY
    elif errno == RATE_LIMITED:
        kind, slow = Kind.RETRY, True
    elif errno == 1:
        # "auth failed" (NB table) is permanent; "internal server error" (generic table) is not.
        kind = Kind.RETRY if _says(text, _INTERNAL) and not _says(text, _AUTH) else Kind.FAILED
    elif errno == 5106:
        kind = Kind.RETRY if _says(text, _TRANSIENT_5106) else Kind.FAILED
    elif errno == 5108:
        kind, cap = Kind.RETRY, 2  # "retry once, then permanent"
    elif errno in _PERMANENT:
        kind = Kind.FAILED
    return Outcome(
        kind,
        errno=errno,
        error=error,
        http_status=http_status,
        slow_down=slow,
        max_attempts=cap,
        auth_refused=auth_refusal(errno, text),
    )


def auth_refusal(errno: int, text: str) -> bool:
    """Does this answer refuse our credentials (not one device)? errno 2 "api-key
    required", or errno 1/3 whose text says auth (the tables give both numbers).

    errno 1 without any text is read by the NB table ("auth failed"), the one this API's
    pages point to: taken for every device's failure, a wrong key would fail the whole
    fleet instead of stopping the run with its rows still pending.
    """
    if errno == 1 and not text.strip():
        return True
    return errno == 2 or (errno in (1, 3) and _says(text.lower(), _AUTH))


def refuses_credentials(outcome: Outcome) -> bool:
    """Does this answer say the key or token itself is refused (not one device's trouble)?

    errno 2 ("api-key required") always; errno 1 ("auth failed" in the NB table) and 3
    ("auth failed" in the generic table) when their text says auth; an HTTP 401/403
    without an errno.
    """
    if outcome.errno is not None:
        return auth_refusal(outcome.errno, outcome.error or "")
    return outcome.http_status in (401, 403)


def platform_level(outcome: Outcome) -> bool:
    """Is this outcome a sign of an outage rather than of one device's trouble?

    What the circuit breaker counts: our credentials refused, the platform's backlog
    errnos (the transient ones), no HTTP answer at all, or an HTTP status that speaks
    for the whole service.
    """
    if outcome.kind is Kind.OK:
        return False
    if outcome.errno is not None:
        return auth_refusal(outcome.errno, outcome.error or "") or outcome.errno in TRANSIENT
    if outcome.http_status is None:
        return True  # no HTTP answer at all: refused, reset, timed out
    return outcome.http_status >= 500 or outcome.http_status in (401, 403, 429)
