"""What the tool prints for people: the plan of a checked job, problems, summaries."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table

from dispatcher.check import CheckedJob
from dispatcher.timewindow import PLATFORM_TZ


def human_duration(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def both_zones(instant: datetime) -> str:
    """An instant in the platform's UTC+8 and in this machine's local time."""
    platform = instant.astimezone(PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")
    local = instant.astimezone()
    return f"{platform} UTC+8 ({local.strftime('%Y-%m-%d %H:%M:%S %Z')} local)"


def print_plan(console: Console, checked: CheckedJob) -> None:
    """The plan ``validate`` prints: fleets, counts, window, rate and duration."""
    job = checked.plan.job
    stats = checked.stats
    console.print(f"Job {job.name} ({checked.plan.loaded.display}) is valid.", style="bold green")
    table = Table("fleet", "devices", "duplicates dropped", title=None, box=None, pad_edge=False)
    for fleet in stats.fleets:
        table.add_row(fleet.name, str(fleet.devices), str(fleet.duplicates))
    console.print(table)
    ops = ", ".join(t.op for t in checked.plan.templates)
    console.print(f"devices:             {stats.devices} ({stats.duplicates} duplicates dropped)")
    console.print(f"commands per device: {checked.plan.commands_per_device} ({ops})")
    console.print(f"requests:            {checked.total_requests}")
    window = checked.window
    valid = "now (the platform's clock)" if window.valid is None else both_zones(window.valid)
    console.print(f"valid from:          {valid}")
    console.print(f"expires:             {both_zones(window.expired)}")
    rate = job.rate
    console.print(
        f"rate:                {rate.per_second:g}/s, {rate.concurrency} in flight"
        f" -> about {human_duration(checked.duration)}"
    )
