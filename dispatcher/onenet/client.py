"""The OneNET client: the one place that speaks HTTP to the platform.

The engine talks to it through ``transport.Transport`` (``send(request, window, now) -> Outcome``); every
aiohttp exception is translated here into one of the outcome classes, and nothing of
a request's headers (the key) ever reaches a message.

aiohttp quietly sends an idempotent request (GET, PUT, ...) a second time when a
pooled connection drops before the answer. A cached *read* is a GET and is not
idempotent: sent twice, it queues two commands. aiohttp has no public switch for
this, so the session's request class counts the times each of our requests is
about to be written and refuses a second: the request then ends ``in_doubt`` (or
``retry`` when not a byte of it was written) instead of being resent behind our back.
"""

from __future__ import annotations

import codecs
import contextvars
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from dispatcher import __version__
from dispatcher.answerforms import count, uuid_text
from dispatcher.config import HttpConfig
from dispatcher.onenet.auth import Authenticator
from dispatcher.onenet.errnos import classify_errno, refuses_credentials
from dispatcher.onenet.platforms import LEGACY, Profile
from dispatcher.onenet.render import build_url, method_of, request_url
from dispatcher.outcome import Kind, Outcome
from dispatcher.plan import Request
from dispatcher.timewindow import Window

MAX_ANSWER_BYTES = 64 * 1024  # a real answer is ~100 bytes; more is garbage, read no further
USER_AGENT = f"onenet-dispatcher/{__version__}"


class _SecondAttempt(Exception):
    """aiohttp tried to send the same request again on a new connection."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    raw: bytes | None  # None: larger than MAX_ANSWER_BYTES, or cut short
    retry_after: float | None
    cut: str | None  # why the body could not be read to its end
    charset: str | None = None  # as the Content-Type declares it


@dataclass(slots=True)
class _Attempt:
    writes: int = 0
    headers_sent: bool = False


# The request being exchanged, for _GuardedRequest (aiohttp builds a new request object
# for its resend, so the count lives here; the exchange and its resend share one task).
_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "onenet_attempt", default=None
)


class _GuardedRequest(aiohttp.ClientRequest):
    """aiohttp's request, refused the second time one of ours is about to be written.

    Refused here, before a byte is written, aiohttp closes the connection it took. (A
    connection trace hook raising instead leaves a connection it took from the pool
    open and held by nobody, until the garbage collector finds it.)
    """

    async def send(self, conn: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        attempt = _ATTEMPT.get()
        if attempt is not None:
            attempt.writes += 1
            if attempt.writes > 1:
                raise _SecondAttempt()
        return await super().send(conn)


async def _on_headers_sent(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, _Attempt):
        attempt.headers_sent = True


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    return trace


class OneNetClient:
    """One aiohttp session per run, its pool sized to the run's concurrency."""

    def __init__(
        self,
        base_url: str,
        auth: Authenticator,
        http: HttpConfig,
        *,
        concurrency: int,
        secrets: tuple[str, ...] = (),
        platform: Profile = LEGACY,
        guard_second_send: bool = True,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._root = platform.root(base_url)  # where the profile's paths hang
        self._auth = auth
        self._http = http
        self._concurrency = concurrency
        # False only to measure what the guard costs (the benchmarks' ablation): without it
        # aiohttp may send a dropped read twice.
        self._guard = guard_second_send
        # Every credential value sent so far: a renewed token is as secret as the first.
        self._secrets: set[str] = {value for value in secrets if value}
        self._session: aiohttp.ClientSession | None = None
        # The first answer refusing our credentials: after it nothing more is sent
        # (each further request would only be refused again, or lock the account).
        self.auth_refusal: Outcome | None = None
        # errno 1 "auth failed" also means "this IMEI is not the key's product's": once
        # the platform has accepted our credentials, it is that one device's failure.
        self._accepted = False

    async def __aenter__(self) -> OneNetClient:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency,
            limit_per_host=self._concurrency,
            # Shorter than the server's idle timeout: a connection is never reused just
            # as the server closes it (that request would die unanswered, in doubt).
            keepalive_timeout=self._http.keepalive,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._http.connect_timeout, sock_read=self._http.read_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            trace_configs=[_trace_config()],
            request_class=_GuardedRequest if self._guard else aiohttp.ClientRequest,
            headers={"User-Agent": USER_AGENT},
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: Request, window: Window, now: datetime) -> Outcome:
        """Send one request once and classify what came back."""
        url = request_url(self._root, request, window, now)
        return await self.call(method_of(request), url, request.body)

    async def call(self, method: str, url: str, body: bytes | None) -> Outcome:
        """One command request, classified into an outcome."""
        if self.auth_refusal is not None:
            return self._not_sent()
        reply = await self._exchange(method, url, body)
        if isinstance(reply, Outcome):
            return reply
        return self._note(
            _classify(reply.status, reply.raw, reply.retry_after, reply.cut, reply.charset)
        )

    def _note(self, outcome: Outcome) -> Outcome:
        if outcome.kind is Kind.OK:
            self._accepted = True
            return outcome
        refused = refuses_credentials(outcome) and (outcome.errno == 2 or not self._accepted)
        if refused != outcome.auth_refused:
            outcome = dataclasses.replace(outcome, auth_refused=refused)
        if refused and self.auth_refusal is None:
            self.auth_refusal = outcome
        return outcome

    def _not_sent(self) -> Outcome:
        refusal = self.auth_refusal
        assert refusal is not None
        return dataclasses.replace(
            refusal, error=f"not sent: the platform refused the credentials ({refusal.error})"
        )

    async def ask(
        self, path: str, pairs: list[tuple[str, str]], *, method: str = "GET"
    ) -> dict[str, Any] | Outcome:
        """A platform query (history, detail) or cancel: its ``data`` object, or why not.

        A failure comes back as an Outcome whose ``error`` (and ``errno``, when the
        platform answered one) says what went wrong.
        """
        if self.auth_refusal is not None:
            return self._not_sent()
        reply = await self._exchange(method, build_url(self._root, path, pairs), None)
        if isinstance(reply, Outcome):
            return reply
        answer = _json(reply.raw, reply.charset)
        envelope = _envelope(answer) if answer is not None else None
        if envelope is not None and envelope[0] != 0:
            number, text = envelope
            refused = classify_errno(number, text, reply.status)
            return self._note(
                Outcome(
                    Kind.FAILED,
                    errno=number,
                    error=text,
                    http_status=reply.status,
                    auth_refused=refused.auth_refused,
                )
            )
        if not 200 <= reply.status < 300 or answer is None or envelope is None:
            return self._note(
                Outcome(
                    Kind.RETRY if reply.status in (429, 503) else Kind.FAILED,
                    error=f"HTTP {reply.status}, no usable answer",
                    http_status=reply.status,
                )
            )
        self._accepted = True
        data = _data(answer)
        return data if isinstance(data, dict) else {}

    async def _exchange(self, method: str, url: str, body: bytes | None) -> _Reply | Outcome:
        """Send once; the raw reply, or the outcome of a request that got none."""
        session = self._session
        if session is None:
            raise RuntimeError("client used outside its context")
        headers = dict(self._auth.headers())
        self._secrets.update(value for value in headers.values() if value)
        if body is not None:
            headers["Content-Type"] = "application/json"
        attempt = _Attempt()
        token = _ATTEMPT.set(attempt)
        try:
            async with session.request(
                method,
                URL(url, encoded=True),
                data=body,
                headers=headers,
                allow_redirects=False,
                trace_request_ctx=attempt,
            ) as resp:
                status = resp.status
                retry_after = _retry_after(resp.headers)
                try:
                    raw = await _read_capped(resp)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    return _Reply(status, None, retry_after, f"answer cut short: {self._text(exc)}")
                return _Reply(status, raw, retry_after, None, resp.charset)
        except _SecondAttempt:
            kind = Kind.IN_DOUBT if attempt.headers_sent else Kind.RETRY
            return Outcome(kind, error="connection dropped before an answer")
        except aiohttp.ConnectionTimeoutError:
            return Outcome(Kind.RETRY, error="connect timeout")
        except aiohttp.ClientConnectorError as exc:
            return Outcome(Kind.RETRY, error=f"cannot connect: {self._text(exc)}")
        except aiohttp.ServerTimeoutError:
            kind = Kind.IN_DOUBT if attempt.headers_sent else Kind.RETRY
            return Outcome(kind, error="no answer within the read timeout")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            kind = Kind.IN_DOUBT if attempt.headers_sent else Kind.RETRY
            return Outcome(kind, error=f"connection failed: {self._text(exc)}")
        finally:
            _ATTEMPT.reset(token)

    def _text(self, exc: BaseException) -> str:
        """An exception as text with any secret blanked (aiohttp's reprs can carry headers)."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than MAX_ANSWER_BYTES (not read further)."""
    if resp.content_length is not None:
        if resp.content_length > MAX_ANSWER_BYTES:
            return None
        # the usual answer: its length is known and small, so one read (not a loop of two)
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(16384)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(when.tzinfo)).total_seconds())


def _classify(
    status: int,
    raw: bytes | None,
    retry_after: float | None,
    cut: str | None,
    charset: str | None = None,
) -> Outcome:
    """An HTTP answer as an outcome; see ``outcome`` for what each class promises."""
    if status in (429, 503):
        return Outcome(
            Kind.RETRY, error=f"HTTP {status}", http_status=status, retry_after=retry_after
        )
    answer = _json(raw, charset)
    envelope = _envelope(answer) if answer is not None else None
    errno = envelope[0] if envelope is not None else None
    if envelope is not None and envelope[0] != 0:
        # The platform says it did not take the command: its errno decides what next.
        outcome = classify_errno(envelope[0], envelope[1], status)
        if retry_after is not None and outcome.kind is Kind.RETRY:
            return dataclasses.replace(outcome, retry_after=retry_after)
        return outcome
    if 200 <= status < 300:
        if cut is not None:
            return Outcome(Kind.IN_DOUBT, error=cut, http_status=status)
        if raw is None:
            return Outcome(
                Kind.IN_DOUBT,
                error=f"answer larger than {MAX_ANSWER_BYTES} bytes",
                http_status=status,
            )
        if answer is None:
            return Outcome(Kind.IN_DOUBT, error="answer is not a JSON object", http_status=status)
        data = _data(answer)
        # The pages' own example uuid (in a history) carries a trailing space: stored stripped.
        uuid = uuid_text(data.get("uuid")) if isinstance(data, dict) else None
        if errno == 0 and uuid is not None:
            return Outcome(
                Kind.OK,
                uuid=uuid,
                errno=0,
                error=str(answer.get("error", answer.get("msg", "succ"))),
                http_status=status,
            )
        return Outcome(Kind.IN_DOUBT, error="answer without errno 0 and a uuid", http_status=status)
    if status == 408:
        return Outcome(Kind.RETRY, error="HTTP 408", http_status=status, retry_after=retry_after)
    if 300 <= status < 500:
        return Outcome(Kind.FAILED, error=f"HTTP {status}", http_status=status)
    return Outcome(Kind.IN_DOUBT, error=f"HTTP {status}", http_status=status)


def _number(value: object) -> int | None:
    """An errno or code: a JSON number, or the same number as text ("0", " 15")."""
    return count(value)


def _data(answer: dict[str, Any]) -> object:
    """The answer's ``data``: an object, or the same object written as JSON text."""
    data = answer.get("data")
    if isinstance(data, str):
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json recurses
            return data
        return parsed if isinstance(parsed, dict) else data
    return data


def _envelope(answer: dict[str, Any]) -> tuple[int, str] | None:
    """The answer's number (0 = success) and text, from either console's envelope.

    ``{"errno", "error"}`` is the documented one. The newer console may answer
    ``{"code", "msg", "request_id"}`` instead; its codes are not in our pages, so a
    code is read against the same errno table (an unknown one is a plain failure),
    and its request_id is kept in the text: the one thing its support desk asks for.
    None: neither envelope (an answer we cannot read).
    """
    errno = _number(answer.get("errno"))
    if errno is not None:
        error = answer.get("error")
        return errno, str(error) if error is not None else ""
    code = _number(answer.get("code"))
    if code is None:
        return None
    msg = answer.get("msg")
    text = str(msg) if msg is not None else ""
    request_id = answer.get("request_id")
    if code != 0 and isinstance(request_id, str | int) and not isinstance(request_id, bool):
        text = f"{text} (request_id {request_id})"
    return code, text


def _json(raw: bytes | None, charset: str | None = None) -> dict[str, Any] | None:
    """The answer as a JSON object, whatever its text encoding; None when it is none.

    A byte order mark is dropped; the text is read in the charset the Content-Type
    names (GBK for Chinese error texts), else UTF-8, else GB18030 (a superset of GBK
    and ASCII): the first reading that is a JSON object wins. The envelope itself is
    ASCII, so the encoding only ever changes the ``error`` text.
    """
    if not raw:
        return None
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    encodings = [charset] if charset else []
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encodings.append("utf-16")
    for encoding in [*encodings, "utf-8", "gb18030"]:
        try:
            value = json.loads(raw.decode(encoding))
        except (LookupError, UnicodeDecodeError, ValueError, RecursionError):
            # RecursionError: nested deeper than the JSON reader recurses (a garbled answer)
            continue
        return value if isinstance(value, dict) else None
    return None
