"""What the tool prints for people: the plan of a checked job, problems, summaries."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from dispatcher.check import CheckedJob
from dispatcher.formatting import human_seconds
from dispatcher.rolloutspec import RolloutSpec
from dispatcher.shards import shard_of
from dispatcher.timewindow import PLATFORM_TZ
from dispatcher.waves import wave_bounds

# Type names only: `validate` prints a plan and must not load the ledger or the engine.
if TYPE_CHECKING:
    from dispatcher.ledger import RunRecord
    from dispatcher.runopts import RunResult


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
        f" -> about {human_seconds(checked.duration.total_seconds(), tenths=False)} of sending"
    )
    if rate.ramp is not None:
        console.print(
            f"ramp:                from {rate.ramp.start:g}/s, x{rate.ramp.factor:g} every {rate.ramp.every}"
        )
    rollout = job.rollout
    if len(rollout.waves) > 1:
        bounds = wave_bounds(rollout, stats.devices)
        sizes = [b - a for a, b in zip([0, *bounds], bounds, strict=False)]
        pause = (
            "wait for `onenet-dispatch confirm-wave`"
            if rollout.confirm
            else f"pause {rollout.pause_between_waves}"
        )
        console.print(
            f"waves:               {len(bounds)} waves of {', '.join(map(str, sizes))} devices"
            f" ({rollout.order} order), {pause} between waves"
        )
    if rollout.abort is not None:
        rule = []
        if rollout.abort.failure_rate:
            rule.append(
                f"failure rate reaches {rollout.abort.failure_rate} once {rollout.abort.min_answered} answered"
            )
        if rollout.abort.errnos:
            rule.append(f"errno {', '.join(map(str, rollout.abort.errnos))}")
        console.print(f"abort when:          {' or '.join(rule) or 'never'}")
    if job.dispatch_window is not None:
        window_spec = job.dispatch_window
        console.print(
            f"dispatch window:     {', '.join(window_spec.daily)} {window_spec.timezone}"
            f" on {', '.join(window_spec.days)}"
        )


def print_run_summary(console: Console, result: RunResult) -> None:
    """What this invocation did; the run's report (``report.render_text``) follows it."""
    t = result.totals
    line = (
        f"this invocation: {t.sent} requests sent, {t.already_done} devices already done,"
        f" {t.held_in_doubt} devices held on an in-doubt command"
    )
    if result.reconciled is not None and result.reconciled.looked_at:
        r = result.reconciled
        line += f"; in-doubt rows reconciled: {r.found} found queued, {r.not_found} not queued, {r.undecided} undecided"
        if r.foreign:
            line += f" ({r.foreign} other applications' commands seen)"
    console.print(line)
    if result.paused is not None:
        console.print(f"paused: {result.paused}; the same command resumes", style="yellow")
    if result.partial:
        console.print(
            f"partial: {result.remaining} devices of the job are not settled yet;"
            f" send them with: {result.next_command}",
            style="yellow",
            soft_wrap=True,
            markup=False,
        )
    if result.counts.get("in_doubt"):
        console.print(
            f"{result.counts['in_doubt']} rows are in doubt: they may have been queued. They are not sent again"
            " unless you run with --resend-in-doubt (see docs/reliability.md).",
            style="yellow",
        )


def status_record(
    record: RunRecord, counts: dict[str, int], remaining: int | None = None
) -> dict[str, object]:
    """A run's standing as plain data (``status --format json``)."""
    answered = counts.get("ok", 0) + counts.get("failed", 0)
    failure_rate = counts.get("failed", 0) / answered if answered else 0.0
    abort: dict[str, object] | None = None
    if record.rollout:
        spec = RolloutSpec.model_validate_json(record.rollout)
        if spec.abort is not None:
            abort = {
                "failure_rate": spec.abort.failure_rate,
                "min_answered": spec.abort.min_answered,
                "errnos": spec.abort.errnos,
            }
    return {
        "run_id": record.run_id,
        "job": record.job_name,
        "state": record.state,
        "reason": record.reason,
        "target": record.target,
        "wave": record.wave + 1,
        "waves": record.waves,
        "devices": record.devices,
        "remaining_devices": remaining,
        "counts": counts,
        "answered": answered,
        "failure_rate": round(failure_rate, 4),
        "abort_rule": abort,
        "started_at": datetime.fromtimestamp(record.first_started_at)
        .astimezone()
        .isoformat(timespec="seconds"),
        "last_started_at": datetime.fromtimestamp(record.started_at)
        .astimezone()
        .isoformat(timespec="seconds"),
        "ended_at": None
        if record.ended_at is None
        else datetime.fromtimestamp(record.ended_at).astimezone().isoformat(timespec="seconds"),
    }


def shard_counts(rows: Iterable[Any], count: int) -> list[dict[str, object]]:
    """Rows per status and devices of each shard of a run (``status``'s per-shard lines).

    Computed from the rows' IMEIs with the split ``run --shard`` uses, so it is the same
    whether the shards shared one ledger or each kept a file.
    """
    statuses: list[Counter[str]] = [Counter() for _ in range(count)]
    devices = [0] * count
    # A device's rows are registered together by its shard's one process, so among its
    # shard's rows they come one after another. Not among the run's rows: shards
    # registering side by side in one PostgreSQL ledger draw row ids from one sequence,
    # so another shard's row may sit between a device's two. Hence the last IMEI seen
    # per shard (a set of every IMEI would cost a million-device run its memory).
    last = [""] * count
    for row in rows:
        imei = row["imei"]
        k = shard_of(imei, count)
        if imei != last[k]:
            last[k] = imei
            devices[k] += 1
        statuses[k][row["status"]] += 1
    return [
        {
            "shard": f"{k}/{count}",
            "devices": devices[k],
            "counts": dict(sorted(statuses[k].items())),
        }
        for k in range(count)
    ]


def print_status(
    console: Console,
    record: RunRecord,
    counts: dict[str, int],
    *,
    as_json: bool,
    remaining: int | None = None,
    shards: list[dict[str, object]] | None = None,
) -> None:
    data = status_record(record, counts, remaining)
    if shards is not None:
        data["shards"] = shards
    if as_json:
        console.print_json(json.dumps(data))
        return
    console.print(f"run {record.run_id} ({record.job_name}) -> {record.target}", style="bold")
    state = record.state if not record.reason else f"{record.state}: {record.reason}"
    console.print(f"state:        {state}")
    console.print(f"wave:         {record.wave + 1} of {record.waves}")
    console.print(
        f"devices:      {record.devices}"
        + ("" if remaining is None else f" ({remaining} not settled yet)")
    )
    console.print("rows:         " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for shard in shards or ():
        rows = shard["counts"]
        assert isinstance(rows, dict)
        listed = ", ".join(f"{k} {v}" for k, v in rows.items()) or "no rows yet"
        console.print(f"  shard {shard['shard']}: {shard['devices']} devices; {listed}")
    rule = data["abort_rule"]
    rate = f"{data['failure_rate']:.1%} failed of {data['answered']} answered"
    if isinstance(rule, dict) and rule.get("failure_rate"):
        rate += f" (abort at {rule['failure_rate']} once {rule['min_answered']} answered)"
    console.print(f"failure rate: {rate}")
    console.print(f"started:      {data['started_at']}   last start: {data['last_started_at']}")
    if data["ended_at"]:
        console.print(f"ended:        {data['ended_at']}")
