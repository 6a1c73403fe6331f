"""Progress while sending: a live display on a terminal, periodic log events elsewhere.

On a terminal the display sits at the bottom of stderr and log lines print above it
(rich redirects them), so nothing is garbled. Under systemd or in CI there is no
display: a ``progress`` event is logged every ``interval`` seconds instead, and
never one line per device.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio
import structlog
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dispatcher.engine import Totals
from dispatcher.limiter import RateLimiter

log = structlog.get_logger("dispatcher.progress")


@dataclass
class Snapshot:
    """What the display and the progress events show, computed from the engine's totals.

    Every row count is of the whole run (rows settled by earlier invocations included),
    so ``done``, ``ok`` and ``failed`` add up against ``total`` whether the run is new or
    resumed. ``sent`` alone is this invocation's: requests put on the wire since it started.
    """

    done: int
    total: int
    ok: int
    failed: int
    in_doubt: int
    skipped: int
    sent: int
    rate: float
    limit: float
    eta_seconds: float | None
    wave: int
    waves: int
    paused: str | None


class Meter:
    """Turns the engine's counters into a snapshot, with the rate over the last few seconds."""

    __slots__ = ("_initial", "_limiter", "_samples", "_total", "_totals")

    def __init__(
        self, totals: Totals, limiter: RateLimiter, *, total: int, initial: dict[str, int]
    ) -> None:
        self._totals = totals
        self._limiter = limiter
        self._total = total
        # rows per status settled before this invocation (pending and sending are not settled)
        self._initial = {k: n for k, n in initial.items() if k not in ("pending", "sending")}
        self._samples: deque[tuple[float, int]] = deque(maxlen=20)

    def _run_count(self, status: str) -> int:
        return self._initial.get(status, 0) + self._totals.by_status.get(status, 0)

    def snapshot(self, now: float) -> Snapshot:
        t = self._totals
        by = t.by_status
        answered = (
            by.get("ok", 0) + by.get("failed", 0) + by.get("in_doubt", 0) + by.get("skipped", 0)
        )
        done = min(self._total, sum(self._initial.values()) + answered)
        self._samples.append((now, t.sent))
        first_t, first_sent = self._samples[0]
        rate = (t.sent - first_sent) / (now - first_t) if now > first_t else 0.0
        remaining = self._total - done
        eta = remaining / rate if rate > 0 else None
        return Snapshot(
            done=done,
            total=self._total,
            ok=self._run_count("ok"),
            failed=self._run_count("failed"),
            in_doubt=self._run_count("in_doubt"),
            skipped=self._run_count("skipped"),
            sent=t.sent,
            rate=rate,
            limit=self._limiter.per_second,
            eta_seconds=eta,
            wave=t.wave + 1,
            waves=t.waves,
            paused=t.paused,
        )


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(s: Snapshot) -> RenderableType:
    bar = ProgressBar(total=max(1, s.total), completed=s.done, width=40)
    line = Table.grid(padding=(0, 1))
    line.add_row(
        bar,
        Text(f"{s.done}/{s.total}"),
        Text(f"ok {s.ok}", style="green"),
        Text(f"failed {s.failed}", style="red" if s.failed else ""),
        Text(f"in doubt {s.in_doubt}", style="yellow" if s.in_doubt else ""),
        Text(f"{s.rate:.0f}/s of {s.limit:g}/s"),
        Text(f"ETA {_eta(s.eta_seconds)}"),
        Text(f"wave {s.wave}/{s.waves}") if s.waves > 1 else Text(""),
    )
    if s.paused:
        return Group(line, Text(f"paused: {s.paused}", style="yellow"))
    return line


async def show_progress(meter: Meter, console: Console, *, interval: float) -> None:
    """Until cancelled: a live display on a terminal, else a progress event every ``interval``."""
    if console.is_terminal:
        with Live(
            render(meter.snapshot(anyio.current_time())), console=console, refresh_per_second=4
        ) as live:
            try:
                while True:
                    await anyio.sleep(0.25)
                    live.update(render(meter.snapshot(anyio.current_time())))
            finally:
                live.update(render(meter.snapshot(anyio.current_time())))
    else:
        meter.snapshot(anyio.current_time())  # the first sample, so the first event has a rate
        while True:
            await anyio.sleep(interval)
            s = meter.snapshot(anyio.current_time())
            # run_*: rows of the whole run, earlier invocations included; invocation_*: this one
            log.info(
                "progress",
                run_done=s.done,
                run_total=s.total,
                run_ok=s.ok,
                run_failed=s.failed,
                run_in_doubt=s.in_doubt,
                run_skipped=s.skipped,
                invocation_sent=s.sent,
                rate=round(s.rate, 1),
                limit=s.limit,
                eta_seconds=None if s.eta_seconds is None else round(s.eta_seconds),
                wave=s.wave,
                paused=s.paused,
            )
