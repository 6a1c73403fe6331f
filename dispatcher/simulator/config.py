"""The simulator's knobs: one mutable dataclass, read afresh by every request.

Tests change a knob either on the live object (`sim.config.error_rate = 1.0`) or over
HTTP (`POST /_sim/config` with a partial JSON object); both take effect on the next
request. The keys are secrets: they never appear in a repr or in `GET /_sim/config`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from dispatcher.simulator import errnos
from dispatcher.simulator.forms import ANSWER_FORMS

Clock = Callable[[], float]
"""Returns the simulator's "now" as unix seconds."""

_REDACTED = "<redacted>"
_RATES = (
    "error_rate",
    "http_503_rate",
    "http_429_rate",
    "drop_after_queue_rate",
    "stall_after_queue_rate",
    "garble_rate",
    "confirm_fail_rate",
    "offline_rate",
    "foreign_rate",
)
_DURATIONS = ("latency", "latency_jitter", "stall_seconds")
_UPLINKS = (1, 2, 4)
# The contract's smallest `timeout` is 5 s: answering faster means the platform never
# gives up waiting, so no timeout needs modelling.
MAX_CONFIRM_DELAY = 5.0

DetailForm = Literal["text", "data_text", "object", "pairs", "unparseable"]
"""How a detail writes `args` and `content`: the page leaves the form open (history.py)."""
DETAIL_FORMS: tuple[DetailForm, ...] = get_args(DetailForm)
TypeCase = Literal["upper", "lower"]
TYPE_CASES: tuple[TypeCase, ...] = get_args(TypeCase)
Platform = Literal["legacy", "studio"]
"""Which console is served: legacy under /nbiot/ (api-key or product token), studio
under /nb-iot/ (signed tokens only)."""
PLATFORMS: tuple[Platform, ...] = get_args(Platform)
Envelope = Literal["errno", "code"]
"""How answers are written: {"errno", "error", "data"}, or {"code", "msg", "data",
"request_id"} (what the newer console may answer)."""
ENVELOPES: tuple[Envelope, ...] = get_args(Envelope)

Garble = Literal["not_json", "no_uuid", "wrong_content_type", "huge", "html_error"]
"""The kinds of unreadable or misleading answer the `garble` knob picks from."""
GARBLES: tuple[Garble, ...] = get_args(Garble)

CONFIRM_STATUSES = (
    "SUCCESS",
    "METHOD_NOT_ALLOWED",
    "FORBIDDEN",
    "NOT_FOUND",
    "INTERNAL_SERVER_ERROR",
    "TIME_OUT",
    "REQ_PARAM_ERROR",
    "RESP_ERROR",
    "UNAUTHORIZED",
    "BAD_REQUEST",
    "NOT_ACCEPTABLE",
    "UNSUPPORTED_CONTENT_FORMAT",
    "OFFLINE",
    "ADDR_OCCUPIED",
)
"""The platform's `confirm_status` values, 0..13 in its detail page's order."""
CONFIRM_FAILURES = CONFIRM_STATUSES[1:]
# What a device itself answers when it refuses a command it did receive.
_DEVICE_FAILURES = ("METHOD_NOT_ALLOWED", "NOT_FOUND", "INTERNAL_SERVER_ERROR", "BAD_REQUEST")


@dataclass(slots=True)
class SimulatorConfig:
    """How the simulated platform behaves.

    Auth:
        platform: "legacy" serves /nbiot/... and takes the `api-key` header (and a
            token when configured); "studio" serves /nb-iot/... and takes a token only.
        api_key: the one `api-key` header value accepted (legacy).
        product_id, user_id, access_key: with `access_key` and either id set, an
            `authorization` token signed with `access_key` (base64) is accepted for
            `products/<product_id>` (version 2018-10-31; on studio 2022-05-01 too) or
            `userid/<user_id>` (studio only, version 2022-05-01).
        envelope: "errno" (the contract's) or "code" (code/msg/request_id).
    Timing:
        latency: seconds slept before every platform answer.
        latency_jitter: up to this many seconds more, drawn uniformly.
        now: the platform's clock. None = the real clock; a number = the real clock
            shifted by that many seconds; a callable = whatever it returns (unix s).
    Faults (each a share 0..1 of platform requests, drawn from `seed`):
        http_503_rate: answer HTTP 503 before looking at the request.
        http_429_rate: answer HTTP 429 before looking at the request (after the 503 draw).
        retry_after: whole seconds sent in a `Retry-After` header with those 503 and 429
            answers; None = no header.
        error_rate: answer `error_errno`/`error_text` to an otherwise valid request.
        drop_after_queue_rate: queue the command, then abort the connection unanswered.
        stall_after_queue_rate: queue the command, then answer `stall_seconds` late.
        garble_rate, garble: share of cached writes and reads answered in the `garble`
            way (one of GARBLES):
            - "not_json": queued, then a JSON text cut off inside the uuid;
            - "no_uuid": queued, then `{"errno":0,"error":"succ","data":{}}`;
            - "wrong_content_type": the true answer (queued or refused) as text/html;
            - "huge": queued, then the true answer followed by `huge_answer_bytes` of
              white space, streamed in chunks (valid JSON, if one read it all);
            - "html_error": before anything is looked at, HTTP 200 with an HTML error
              page; nothing is queued (the client cannot know that).
        huge_answer_bytes: the padding of a "huge" answer.
        rate_limit: requests per second accepted (token bucket, burst = max(1, rate));
            beyond it errno 15. None = no limit.
        fail_imeis: devices the platform does not know: errno 8.
        foreign_imeis: devices of another product than the key's: errno 1 "auth failed"
            (the contract's "key and IMEI do not match").
    History and detail (docs/simulator.md, "How history and detail are written"):
        detail_form: how a detail writes `args` and `content` (one of DETAIL_FORMS):
            "text" JSON text as received; "data_text" the write's data list (an
            execute's bare args text); "object" JSON objects, every parameter a string
            (the page's example); "pairs" res_id→val pairs for a write; "unparseable"
            text that is not JSON.
        type_case: "upper" ("READ", the page's example) or "lower".
        page_quirks: what the page's own examples show: `cmd_uuid` with a trailing
            space, `remain` and `total_count` as strings.
        answer_forms: other forms a faithful server may write its answers in, any of
            ANSWER_FORMS together (forms.py): errno as text, a byte order mark, GBK,
            `data` as JSON text, uuids in capitals or without dashes, times with a T
            or as epoch milliseconds, send_status names, a write's values as text, no
            total_count.
    Other applications:
        foreign_rate: share of cached write/read/execute requests (queued, lost or
            refused alike, once the query is valid) right after which another
            application queues a command of the same kind on the same device, with
            other content. Such commands are marked `foreign` in `/_sim/commands`.
    Cancel:
        cancel_only_before_valid_time: refuse a cancel once the command's valid_time
            has passed (the platform page's stricter reading); off = cancel any
            waiting command.
    Delivery (docs/simulator.md, "Delivery"): off by default, and then commands only
    wait or are cancelled and the clock runs at the speed `now` gives.
        delivery: devices wake, receive their commands and answer them.
        clock_speed: simulated seconds per real second while delivery is on (600 =
            a ten-minute wake interval passes in one real second).
        wake_interval: simulated seconds between a device's uplinks.
        wake_uplink: the uplink every device sends: 1 REGISTER, 2 UPDATE, 4 NOTIFY; a
            command is delivered when its trigger_msg includes that bit.
        confirm_delay: simulated seconds a device takes to answer one command, 0..5.
        confirm_fail_rate: share of delivered commands a device answers with failure.
        confirm_fail_statuses: the confirm_status a failure draws from.
        offline_imeis: devices that never wake (their commands wait, then expire).
        offline_rate: share of all devices that never wake, drawn per IMEI from `seed`.
    """

    api_key: str = field(default="simulator-api-key", repr=False)
    product_id: str | None = None
    access_key: str | None = field(default=None, repr=False)
    platform: Platform = "legacy"
    user_id: str | None = None
    envelope: Envelope = "errno"
    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    error_errno: int = errnos.SERVICE_INTERNAL_ERROR
    error_text: str = errnos.TEXTS[errnos.SERVICE_INTERNAL_ERROR]
    rate_limit: float | None = None
    http_503_rate: float = 0.0
    http_429_rate: float = 0.0
    retry_after: int | None = None
    drop_after_queue_rate: float = 0.0
    stall_after_queue_rate: float = 0.0
    stall_seconds: float = 0.0
    garble_rate: float = 0.0
    garble: Garble = "not_json"
    huge_answer_bytes: int = 20 * 1024 * 1024
    fail_imeis: set[str] = field(default_factory=set)
    foreign_imeis: set[str] = field(default_factory=set)
    seed: int | None = 0
    now: Clock | float | None = None
    cancel_only_before_valid_time: bool = False
    delivery: bool = False
    clock_speed: float = 1.0
    wake_interval: float = 600.0
    wake_uplink: int = 2
    confirm_delay: float = 2.0
    confirm_fail_rate: float = 0.0
    confirm_fail_statuses: tuple[str, ...] = _DEVICE_FAILURES
    offline_imeis: set[str] = field(default_factory=set)
    offline_rate: float = 0.0
    detail_form: DetailForm = "text"
    type_case: TypeCase = "upper"
    page_quirks: bool = False
    answer_forms: frozenset[str] = frozenset()
    foreign_rate: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def token_auth(self) -> bool:
        return self.access_key is not None and (
            self.product_id is not None or self.user_id is not None
        )

    def validate(self) -> None:
        """Raise ValueError on a knob no test could mean."""
        for name in _RATES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate!r}")
        for name in _DURATIONS:
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{name} must be a non-negative number of seconds")
        if self.rate_limit is not None and not (
            math.isfinite(self.rate_limit) and self.rate_limit > 0
        ):
            raise ValueError("rate_limit must be a positive number of requests/s or None")
        if self.retry_after is not None and (
            isinstance(self.retry_after, bool)
            or not isinstance(self.retry_after, int)
            or self.retry_after < 0
        ):
            raise ValueError("retry_after must be a whole number of seconds >= 0, or None")
        if self.detail_form not in DETAIL_FORMS:
            raise ValueError(f"detail_form must be one of {', '.join(DETAIL_FORMS)}")
        unknown = set(self.answer_forms) - set(ANSWER_FORMS)
        if unknown:
            raise ValueError(
                f"answer_forms must be among {', '.join(ANSWER_FORMS)}; not {', '.join(sorted(unknown))}"
            )
        if self.type_case not in TYPE_CASES:
            raise ValueError(f"type_case must be one of {', '.join(TYPE_CASES)}")
        if self.garble not in GARBLES:
            raise ValueError(f"garble must be one of {', '.join(GARBLES)}, got {self.garble!r}")
        if (
            isinstance(self.huge_answer_bytes, bool)
            or not isinstance(self.huge_answer_bytes, int)
            or self.huge_answer_bytes < 0
        ):
            raise ValueError("huge_answer_bytes must be a whole number of bytes >= 0")
        for name in ("clock_speed", "wake_interval"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number")
        if not (math.isfinite(self.confirm_delay) and 0 <= self.confirm_delay <= MAX_CONFIRM_DELAY):
            raise ValueError(f"confirm_delay must be between 0 and {MAX_CONFIRM_DELAY:g} seconds")
        if isinstance(self.wake_uplink, bool) or self.wake_uplink not in _UPLINKS:
            raise ValueError("wake_uplink must be 1 (REGISTER), 2 (UPDATE) or 4 (NOTIFY)")
        if not self.confirm_fail_statuses or not set(self.confirm_fail_statuses) <= set(
            CONFIRM_FAILURES
        ):
            raise ValueError(
                f"confirm_fail_statuses must be a non-empty list of {', '.join(CONFIRM_FAILURES)}"
            )
        if self.error_errno == errnos.OK:
            raise ValueError("error_errno must not be 0: it would read as success")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}")
        if self.envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}")
        has_id = self.product_id is not None or self.user_id is not None
        if has_id != (self.access_key is not None):
            raise ValueError("access_key is set together with product_id or user_id, or not at all")
        if self.access_key is not None:
            try:
                base64.b64decode(self.access_key, validate=True)
            except binascii.Error:
                raise ValueError("access_key must be base64, as the platform issues it") from None

    def to_json(self) -> dict[str, Any]:
        """The knobs as `GET /_sim/config` shows them, secrets redacted."""
        shown: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_key", "access_key"):
                value = None if value is None else _REDACTED
            elif f.name in ("fail_imeis", "foreign_imeis", "offline_imeis", "answer_forms"):
                value = sorted(value)
            elif f.name == "confirm_fail_statuses":
                value = list(value)
            elif f.name == "now" and callable(value):
                value = "<callable>"
            shown[f.name] = value
        return shown

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial JSON update in place; all or nothing.

        Raises ValueError naming the first bad key; the live config is then unchanged.
        """
        candidate = dataclasses.replace(self)  # validates nothing yet: fields copied as is
        for key, value in changes.items():
            setattr(candidate, key, _coerce(key, value))
        candidate.validate()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(candidate, f.name))


def _coerce(key: str, value: Any) -> Any:
    """Check one JSON value against the knob's type; JSON has no sets or callables."""
    if key in (
        "api_key",
        "error_text",
        "garble",
        "detail_form",
        "type_case",
        "platform",
        "envelope",
    ):
        return _expect(key, value, str)
    if key in ("product_id", "access_key", "user_id"):
        return None if value is None else _expect(key, value, str)
    if key in (*_RATES, *_DURATIONS, "clock_speed", "wake_interval", "confirm_delay"):
        return float(_expect_number(key, value))
    if key in ("rate_limit", "now"):
        return None if value is None else float(_expect_number(key, value))
    if key in ("error_errno", "seed", "retry_after", "huge_answer_bytes", "wake_uplink"):
        if key in ("seed", "retry_after") and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer")
        return value
    if key in ("fail_imeis", "foreign_imeis", "offline_imeis"):
        return set(_expect_strings(key, value))
    if key == "answer_forms":
        return frozenset(_expect_strings(key, value))
    if key == "confirm_fail_statuses":
        return tuple(_expect_strings(key, value))
    if key in ("cancel_only_before_valid_time", "delivery", "page_quirks"):
        return _expect(key, value, bool)
    raise ValueError(f"unknown knob {key!r}")


def _expect(key: str, value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be a {kind.__name__}")
    return value


def _expect_strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def _expect_number(key: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return value
