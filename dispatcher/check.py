"""One full pass over a job before anything is sent: every problem, and the plan's figures."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from dispatcher import __version__
from dispatcher.errors import InputError, JobSchemaError, TimeSpecError
from dispatcher.fleets import csv_path, iter_fleet
from dispatcher.jobfile import (
    PLATFORM_PUBLIC_RATE,
    FleetSpec,
    LoadedJob,
    WindowSpec,
    load_job,
)
from dispatcher.plan import DeviceWork, Plan
from dispatcher.planstats import PlanStats
from dispatcher.problems import Problem, Problems
from dispatcher.timewindow import Window, load_zone, parse_time_spec, resolve_window
from dispatcher.waves import WaveMap, key_thresholds, shuffle_key, wave_bounds
from dispatcher.yamlfile import YamlDoc


@dataclass
class CheckedJob:
    """A job that passed every check, with what the pass counted."""

    plan: Plan
    stats: PlanStats
    window: Window
    problems: Problems  # warnings only, once checked

    @property
    def total_requests(self) -> int:
        return self.stats.devices * self.plan.commands_per_device

    def wave_map(self, run_id: str) -> WaveMap:
        """Which wave each device falls in, for ``run_id`` (a shuffled order is seeded by it)."""
        spec = self.plan.job.rollout
        bounds = wave_bounds(spec, self.stats.devices)
        thresholds = None
        if spec.order == "shuffle":
            keys = (shuffle_key(run_id, work.device.imei) for work in self.plan.devices(Problems()))
            thresholds = key_thresholds(keys, bounds)
        return WaveMap(bounds, thresholds, run_id)

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.total_requests / self.plan.job.rate.per_second)


def check_job(
    path: Path,
    *,
    now: datetime,
    strict: bool = False,
    start: datetime | None = None,
    loaded: LoadedJob | None = None,
    consume: Callable[[Iterable[DeviceWork]], None] | None = None,
) -> CheckedJob:
    """Load ``path``, stream every fleet, check every device; InputError lists all problems.

    ``start`` is the run's first start when resuming (relative window times count
    from it); it defaults to ``now``. ``loaded``: the job already loaded from ``path``.
    ``consume``: takes the pass's devices as they are checked (it must read them all);
    a resume compares each device's request hashes with its ledger rows on this one
    pass instead of rendering the fleet again. Whatever it learns counts only if the
    check passes: the pass's problems are raised after it.
    """
    if loaded is None:
        try:
            loaded = load_job(path)
        except JobSchemaError as exc:
            raise InputError(exc.problems + _salvage(path, exc.doc, now, strict)) from None
    plan = Plan(loaded, strict=strict)
    problems = Problems()
    window: Window | None = None
    try:
        window = plan.window_at(start or now)
    except TimeSpecError as exc:
        problems.error(
            loaded.display,
            loaded.doc.line_of(("window", "expired_time")),
            "window.expired_time",
            str(exc),
        )
    if window is not None and window.valid is not None and window.valid <= now:
        problems.warning(
            loaded.display,
            loaded.doc.line_of(("window", "valid_time")),
            "window.valid_time",
            "already passed; commands are sent without valid_time (valid from the platform's now)",
        )
    rate = plan.job.rate.per_second
    if rate > PLATFORM_PUBLIC_RATE:
        problems.warning(
            loaded.display,
            loaded.doc.line_of(("rate", "per_second")),
            "rate.per_second",
            f"{rate:g}/s is above the platform's public limit of {PLATFORM_PUBLIC_RATE} calls/s",
        )
    stats = PlanStats()
    if consume is not None:
        consume(plan.devices(problems, stats))
    else:
        for _ in plan.devices(problems, stats):
            pass
    if stats.devices == 0 and not problems:
        problems.error(
            loaded.display, loaded.doc.line_of(("fleets",)), "fleets", "no devices in any fleet"
        )
    if problems:
        raise InputError(problems.shown, problems.notes(), errors=problems.errors)
    assert window is not None
    return CheckedJob(plan, stats, window, problems)


def _salvage(path: Path, doc: YamlDoc, now: datetime, strict: bool) -> list[Problem]:
    """Problems in the parts of a job that passed the schema, so one run shows them all."""
    problems = Problems()
    data = doc.data
    try:
        window = WindowSpec.model_validate(data.get("window"))
    except ValidationError:
        pass
    else:
        zone = load_zone(window.timezone)
        try:
            resolve_window(
                parse_time_spec(window.valid_time, zone),
                parse_time_spec(window.expired_time, zone),
                now,
            )
        except TimeSpecError as exc:
            problems.error(
                doc.file, doc.line_of(("window", "expired_time")), "window.expired_time", str(exc)
            )
    fleets = data.get("fleets")
    for index, raw in enumerate(fleets if isinstance(fleets, list) else []):
        try:
            spec = FleetSpec.model_validate(raw)
        except ValidationError:
            continue
        for _ in iter_fleet(spec, index, path, doc, problems, strict=strict):
            pass
    return [p for p in problems.shown if p.severity == "error"]


def inputs_hash(loaded: LoadedJob, *, strict: bool) -> str | None:
    """A hash of everything a check reads: the job file, its fleet files, the rules' version.

    Equal hashes mean a new check would find exactly what the last one found; None
    when a fleet file cannot be read (the full check will say why).
    """
    digest = hashlib.sha256(f"{__version__}\0{strict}\0".encode())
    try:
        digest.update(loaded.path.read_bytes())
        for spec in loaded.job.fleets:
            if spec.csv is not None:
                with csv_path(loaded.path, spec).open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
