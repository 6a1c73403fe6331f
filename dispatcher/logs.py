"""Logging, configured once at the edge: console lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys

import structlog
from rich.console import Console


def configure_logging(console: Console, fmt: str = "auto", level: int = logging.INFO) -> None:
    """structlog to stderr: human lines on a TTY, JSON lines (one event each) elsewhere."""
    use_json = fmt == "json" or (fmt == "auto" and not console.is_terminal)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=console.is_terminal)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )


class _StderrLogger:
    """Writes each event to whatever ``sys.stderr`` is at that moment (tests swap it)."""

    def __init__(self, *args: object) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg
