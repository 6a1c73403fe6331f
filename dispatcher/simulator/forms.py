"""Other forms a faithful server may write its answers in (the `answer_forms` knob).

The pages give a field's type ("int", "string", "json") and one example; a server
written from them independently may still choose another form. Each name below is one
such choice, and any of them may be combined:

- "errno_text": `errno` (or `code`) as a JSON string: `"errno": "0"`;
- "bom": a UTF-8 byte order mark before every JSON answer;
- "gbk": error texts in Chinese, the answer encoded GBK with `charset=GBK`;
- "data_text": `data` written as JSON text: `"data": "{\"uuid\": ...}"`;
- "uuid_upper", "uuid_bare": history and detail write a uuid in capitals, or without
  its dashes (the send's answer keeps the form it was issued in; any form is found);
- "iso_times": answer times with a `T`, milliseconds and a zone
  (`2026-11-22T10:00:00.250+08:00`); "epoch_times": as Unix milliseconds (a number);
  "utc_times": a server keeping UTC: history reads `start`/`end` and writes its times
  without a zone, both in UTC (the pages never name the zone);
- "status_names": `send_status` as a name (`"SUCCESS"`), not a code;
- "text_values": a write's detail `content` with every `res_id`, `type` and `val`
  as text (`true` → `"true"`, `60` → `"60"`);
- "no_total": history pages without `total_count`;
- "unknown_total": history pages whose `total_count` is -1 (a server that does not
  count what it lists);
- "page_ignored": history answers its first page whatever `page` asks (a server that
  does not page: the pages name `page` but say nothing of how it counts).

This module is the simulator's own reading of the pages: it imports nothing of the
product's code.
"""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from aiohttp import web

from dispatcher.simulator.times import PLATFORM_TZ, format_answer_time

AnswerForm = Literal[
    "errno_text",
    "bom",
    "gbk",
    "data_text",
    "uuid_upper",
    "uuid_bare",
    "iso_times",
    "epoch_times",
    "status_names",
    "text_values",
    "no_total",
    "unknown_total",
    "page_ignored",
    "utc_times",
]
ANSWER_FORMS: tuple[AnswerForm, ...] = get_args(AnswerForm)

# The platform's Chinese pages' texts for the errnos the simulator answers.
_CHINESE = {
    1: "鉴权失败",
    2: "缺少api-key",
    3: "缺少参数",
    4: "JSON格式错误",
    5: "请求过大",
    6: "参数错误",
    7: "服务内部错误",
    8: "资源不存在",
    15: "api调用频率超限",
    5006: "系统逻辑限制",
}
_STATUS_NAMES = {
    1: "WAIT",
    2: "CANCELLED",
    3: "SENT",
    4: "EXPIRED",
    5: "SUCCESS",
    6: "FAILED",
    7: "TIMEOUT",
    8: "UNDEFINED",
}


def response(answer: dict[str, Any], forms: frozenset[str]) -> web.Response:
    """The JSON answer, written in the envelope forms chosen."""
    answer = dict(answer)
    charset = "utf-8"
    if "gbk" in forms:
        charset = "gbk"
        number = answer.get("errno", answer.get("code"))
        key = "error" if "error" in answer else "msg"
        if isinstance(number, int) and number != 0 and isinstance(answer.get(key), str):
            answer[key] = _chinese(number, answer[key])
    if "errno_text" in forms:
        for name in ("errno", "code"):
            if name in answer:
                answer[name] = str(answer[name])
    if "data_text" in forms and isinstance(answer.get("data"), dict):
        answer["data"] = json.dumps(answer["data"], ensure_ascii=False)
    body = json.dumps(answer, ensure_ascii=False).encode(charset)
    if "bom" in forms:
        body = codecs.BOM_UTF8 + body
    return web.Response(body=body, content_type="application/json", charset=charset)


def _chinese(errno: int, text: str) -> str:
    """The errno's Chinese text, the simulator's reason (after a colon) kept."""
    zh = _CHINESE.get(errno)
    if zh is None:
        return text
    _, colon, reason = text.partition(": ")
    return f"{zh}: {reason}" if colon else zh


def answer_time(unix: float, forms: frozenset[str]) -> str | int:
    """An answer's time in the form chosen (the pages': `YYYY-MM-DD HH:MM:SS`, UTC+8)."""
    if "epoch_times" in forms:
        return int(unix * 1000)
    if "iso_times" in forms:
        return datetime.fromtimestamp(unix, PLATFORM_TZ).isoformat(timespec="milliseconds")
    if "utc_times" in forms:
        return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return format_answer_time(unix)


def query_shift(forms: frozenset[str]) -> float:
    """Seconds to add to a query time read as UTC+8 to get this server's reading of it."""
    return 8 * 3600.0 if "utc_times" in forms else 0.0


def uuid_form(uuid: str, forms: frozenset[str]) -> str:
    if "uuid_bare" in forms:
        uuid = uuid.replace("-", "")
    return uuid.upper() if "uuid_upper" in forms else uuid


def uuid_key(uuid: str) -> str:
    """How the simulator finds a command by any of the forms above."""
    return uuid.strip().replace("-", "").lower()


def send_status(code: int, forms: frozenset[str]) -> int | str:
    return _STATUS_NAMES.get(code, str(code)) if "status_names" in forms else code


def text_values(content: Any) -> Any:
    """A write's content with res_id, type and val as text, in the form it came (text or object)."""
    if isinstance(content, str):
        try:
            parsed = json.loads(content)
        except ValueError:
            return content
        return json.dumps(text_values(parsed), separators=(",", ":"))
    if isinstance(content, dict) and isinstance(content.get("data"), list):
        return {**content, "data": [_element(e) for e in content["data"]]}
    if isinstance(content, list):
        return [_element(e) for e in content]
    if isinstance(content, dict):  # res_id→val pairs
        return {k: _text(v) for k, v in content.items()}
    return content


def _element(element: Any) -> Any:
    if not isinstance(element, dict):
        return element
    return {k: _text(v) if k in ("res_id", "type", "val") else v for k, v in element.items()}


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value
