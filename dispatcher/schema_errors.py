"""pydantic's validation errors as ``FILE:LINE: where: what`` problems.

Shared by the job file and the config: the wording says what to write instead, and the
line comes from the YAML document the value was read from.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dispatcher.problems import Problem
from dispatcher.yamlfile import YamlDoc, format_path


def translate_errors(exc: ValidationError, doc: YamlDoc, root: type[BaseModel]) -> list[Problem]:
    """pydantic's errors as ``FILE:LINE: where: what`` problems, in file order."""
    problems = [_problem(err, doc, root) for err in exc.errors(include_url=False)]
    return sorted(problems, key=lambda p: p.line or 0)


def _problem(err: ErrorDetails, doc: YamlDoc, root: type[BaseModel]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    where = format_path(loc)
    line = doc.line_of(loc)
    if kind == "missing":
        what = "required key missing"
    elif kind == "extra_forbidden":
        key = str(loc[-1])
        what = f'unknown key "{key}"'
        allowed = _allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            what += f' (did you mean "{close[0]}"?)'
        elif allowed:
            what += f"; expected one of: {', '.join(sorted(allowed))}"
    elif kind in ("int_type", "int_parsing"):
        what = f"must be an integer, got {value!r}"
    elif kind in ("string_type", "str_type"):
        what = f"must be text, got {value!r}"
    elif kind in ("float_type", "float_parsing"):
        what = f"must be a number, got {value!r}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }
        bound = next(iter(ctx.values()), "?")
        what = f"must be {words[kind]} {bound}, got {value!r}"
    elif kind == "literal_error":
        what = f"must be {ctx.get('expected')}, got {value!r}"
    elif kind in ("list_type",):
        what = "must be a list"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        what = "must be a mapping of keys to values"
    elif kind == "too_short":
        what = "must not be empty"
    elif kind in ("string_too_short", "string_too_long"):
        what = (
            f"must be exactly one character, got {value!r}"
            if loc and loc[-1] == "delimiter"
            else err["msg"]
        )
    else:
        what = err["msg"].removeprefix("Value error, ")
    if kind == "dup" and isinstance(ctx.get("index"), int):
        # located at the second use of the name, not at the list
        where = format_path((*loc, ctx["index"], "name"))
        line = doc.line_of((*loc, ctx["index"], "name"))
    # model-level custom errors carry a "key: msg" prefix naming the field they concern
    if kind in ("opaque", "time") and loc:
        head, _, rest = what.partition(": ")
        if head in ("val", "valid_time", "expired_time"):
            where = format_path((*loc, head))
            line = doc.line_of((*loc, head))
            what = rest
    return Problem(doc.file, line, where or None, what)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts, for "did you mean" hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Optional and Annotated around a model or list type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp
