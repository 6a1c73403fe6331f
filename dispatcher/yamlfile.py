"""Safe YAML loading that remembers the line of every key and value.

Users read errors as ``FILE:LINE``, so the loader keeps, for each path into the
document (``("commands", 0, "write", "mode")``), the line it was written on. It is
also the first line of defence against hostile files: aliases are refused (no
"billion laughs"), only the plain YAML tags are accepted (no ``!!python/object``),
and the file must be UTF-8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dispatcher.errors import InputError
from dispatcher.problems import Problem

Path_ = tuple[str | int, ...]

# Largest job or config file we read; a job is a few kB, a fleet belongs in a CSV.
MAX_YAML_BYTES = 4 * 1024 * 1024

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors and aliases."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases (&, *) are not allowed in job files",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


@dataclass
class YamlDoc:
    """A parsed document, the line of every path, and the source text of number scalars."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    raw: dict[Path_, str] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of ``path``, or of its nearest ancestor that was written down."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


def load_yaml(path: Path, display: str) -> YamlDoc:
    """Read ``path`` as one YAML document; raise InputError naming ``display``."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise InputError([Problem(display, None, None, "file not found")]) from None
    except OSError as exc:
        raise InputError([Problem(display, None, None, f"cannot read: {exc.strerror}")]) from None
    if len(blob) > MAX_YAML_BYTES:
        raise InputError([Problem(display, None, None, f"file larger than {MAX_YAML_BYTES} bytes")])
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise InputError([Problem(display, line, None, "not UTF-8 text")]) from None
    try:
        # The reader refuses control characters (NUL, ...) already in the constructor.
        loader = _NoAliasLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        what = f"control character U+{int(exc.character):04X} in the text; is it really YAML?"
        raise InputError([Problem(display, line, None, what)]) from None
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark is not None else None
        what = ", ".join(str(part) for part in (exc.context, exc.problem) if part) or "invalid"
        raise InputError([Problem(display, at, None, f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(display, None, None, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    doc = YamlDoc(file=display, data=None)
    if root is None:
        raise InputError([Problem(display, 1, None, "the file is empty")])
    doc.data = _build(root, (), doc, loader)
    return doc


def _build(node: Node, path: Path_, doc: YamlDoc, loader: yaml.SafeLoader) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        if node.tag != _MAP:
            raise _tag_error(node, doc)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _build_key(key_node, path, doc, loader)
            if key in out:
                raise InputError(
                    [
                        Problem(
                            doc.file,
                            key_node.start_mark.line + 1,
                            _where(path),
                            f'duplicate key "{key}"',
                        )
                    ]
                )
            child = (*path, key)
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, doc, loader)
        return out
    if isinstance(node, SequenceNode):
        if node.tag != _SEQ:
            raise _tag_error(node, doc)
        return [_build(item, (*path, i), doc, loader) for i, item in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    if node.tag == _TIMESTAMP:
        # Times are parsed by our own window rules (zone, UTC+8), not by YAML's.
        return node.value
    if node.tag not in _PLAIN_TAGS:
        raise _tag_error(node, doc)
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str):
        return _unicode(value, node, path, doc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # IMEIs and variables keep the digits as written (YAML would read 0123 as octal).
        doc.raw[path] = node.value
    return value


def _build_key(node: Node, path: Path_, doc: YamlDoc, loader: yaml.SafeLoader) -> str:
    if not isinstance(node, ScalarNode) or node.tag not in _PLAIN_TAGS | {_TIMESTAMP}:
        raise InputError(
            [Problem(doc.file, node.start_mark.line + 1, None, "keys must be plain text")]
        )
    return _unicode(str(node.value), node, path, doc)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(value: str, node: Node, path: Path_, doc: YamlDoc) -> str:
    """YAML's ``\\u`` escapes are UTF-16 halves: a pair is joined into its character; a
    lone half is no text (it cannot be written as UTF-8 to the platform)."""
    if _SURROGATE.search(value) is None:
        return value
    joined = value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    if _SURROGATE.search(joined) is None:
        return joined
    raise InputError(
        [
            Problem(
                doc.file,
                node.start_mark.line + 1,
                _where(path),
                "a \\u escape of half a character (a lone surrogate)",
            )
        ]
    )


def _tag_error(node: Node, doc: YamlDoc) -> InputError:
    return InputError(
        [
            Problem(
                doc.file,
                node.start_mark.line + 1,
                None,
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed",
            )
        ]
    )


def _where(path: Path_) -> str | None:
    return format_path(path) or None


def format_path(path: Path_) -> str:
    """``("commands", 0, "write")`` → ``commands[0].write``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def display_path(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
