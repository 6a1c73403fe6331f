"""A run's report: the model (``model``) read from the ledger, and its renderers (``render``)."""

from __future__ import annotations

from dispatcher.report.model import (
    REPORT_VERSION,
    STATUS_ORDER,
    CellCounts,
    CommandCounts,
    Counts,
    ErrorGroup,
    FleetCounts,
    Report,
    RunInfo,
    SlowAnswer,
    build_report,
)
from dispatcher.report.render import render_json, render_markdown, render_text, shown_statuses

__all__ = [
    "REPORT_VERSION",
    "STATUS_ORDER",
    "CellCounts",
    "CommandCounts",
    "Counts",
    "ErrorGroup",
    "FleetCounts",
    "Report",
    "RunInfo",
    "SlowAnswer",
    "build_report",
    "render_json",
    "render_markdown",
    "render_text",
    "shown_statuses",
]
