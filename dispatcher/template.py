"""A job command pre-rendered once: its query pairs, its body with placeholders to fill.

``plan`` fills a template per device; only a body with variables differs between
devices, and only where its placeholders stand.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from dispatcher.fleets import Device
from dispatcher.jobfile import PLACEHOLDER, Command, PlatformOptions

Op = Literal["write", "read", "execute"]

# What json.dumps(..., ensure_ascii=False) escapes in a string: quotes, backslashes and
# control characters (json.encoder.ESCAPE); any other text stands in the body as it is.
_ESCAPED = re.compile(r'[\x00-\x1f\\"]')


class Template:
    """One job command, pre-rendered once; only placeholders are filled per device."""

    __slots__ = (
        "_parts",
        "body",
        "body_path",
        "command",
        "filled_opaque",
        "index",
        "names",
        "op",
        "params",
        "static_body",
        "tail",
    )

    def __init__(self, index: int, command: Command, defaults: PlatformOptions) -> None:
        self.index = index
        self.command = command
        self.op: Op = command.op
        spec: PlatformOptions
        params: list[tuple[str, str]] = []
        if command.write is not None:
            w = command.write
            spec = w
            params += [
                ("obj_id", str(w.obj_id)),
                ("obj_inst_id", str(w.obj_inst_id)),
                ("mode", str(w.mode)),
            ]
            items: list[dict[str, Any]] = []
            for item in w.data:
                entry: dict[str, Any] = {"res_id": item.res_id}
                if item.type is not None:
                    entry["type"] = item.type
                entry["val"] = item.val
                items.append(entry)
            self.body: dict[str, Any] | None = {"data": items}
        elif command.execute is not None:
            x = command.execute
            spec = x
            params += [
                ("obj_id", str(x.obj_id)),
                ("obj_inst_id", str(x.obj_inst_id)),
                ("res_id", str(x.res_id)),
            ]
            # no args: no body at all (and no Content-Type), as for a read
            self.body = {"args": x.args} if x.args else None
        else:
            r = command.read
            assert r is not None
            spec = r
            params.append(("obj_id", str(r.obj_id)))
            if r.obj_inst_id is not None:
                params.append(("obj_inst_id", str(r.obj_inst_id)))
            if r.res_id is not None:
                params.append(("res_id", str(r.res_id)))
            self.body = None
        self.params = tuple(params)
        tail: list[tuple[str, str]] = []
        for key in ("retry", "timeout", "trigger_msg"):
            value = getattr(spec, key)
            if value is None:
                value = getattr(defaults, key)
            if value is not None:
                tail.append((key, str(value)))
        self.tail = tuple(tail)
        self.names: list[tuple[str, str]] = []  # (variable, where it is used)
        self.filled_opaque = False  # an Opaque value with variables: re-checked per device
        if command.write is not None:
            for j, item in enumerate(command.write.data):
                if isinstance(item.val, str):
                    for name in PLACEHOLDER.findall(item.val):
                        self.names.append((name, f"commands[{index}].write.data[{j}].val"))
                        self.filled_opaque = self.filled_opaque or item.type == 1
        if command.execute is not None and command.execute.args:
            for name in PLACEHOLDER.findall(command.execute.args):
                self.names.append((name, f"commands[{index}].execute.args"))
        # where a too-large body is reported
        self.body_path: tuple[str | int, ...] = (
            ("commands", index, "write", "data")
            if command.write is not None
            else ("commands", index, "execute", "args")
        )
        self.static_body = _encode(self.body) if self.body is not None and not self.names else None
        # The body encoded once; per device only the placeholders are replaced, by their
        # JSON-escaped values. A placeholder can only stand in a string value, and JSON
        # escapes neither braces nor identifier characters, so each "{name}" of the
        # encoded text is one of them.
        encoded = _encode(self.body).decode() if self.body is not None else ""
        # Split once at the placeholders: text, name, text, name, ..., text. Filled per
        # device by joining (a million devices are rendered by every check pass).
        self._parts = PLACEHOLDER.split(encoded)

    def render(self, device: Device) -> bytes | None:
        if self.body is None:
            return None
        if self.static_body is not None:
            return self.static_body
        variables = device.variables
        parts = self._parts
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            name = parts[i]
            value = variables.get(name)
            if value is None:
                out.append("{" + name + "}")  # left as written: the check reports it
            elif _ESCAPED.search(value) is None:
                out.append(value)  # nothing JSON would escape (the common case)
            else:
                out.append(json.dumps(value, ensure_ascii=False)[1:-1])
            out.append(parts[i + 1])
        return "".join(out).encode()


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
