"""Rollout controls: waves, abort rules, dispatch windows, dry runs and targeting."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import pytest

from dispatcher.cli import main
from dispatcher.dispatch_window import DispatchWindow
from dispatcher.engine.abort import AbortRule, ramp_rate
from dispatcher.rolloutspec import AbortSpec, DispatchWindowSpec, RampSpec, RolloutSpec
from dispatcher.runner import RunOptions, run_job
from dispatcher.waves import WaveMap, key_thresholds, shuffle_key, wave_bounds
from tests.helpers import API_KEY, JOB, WRITE_AND_READ, imei, simulator, write_fleet

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def job_with(
    directory: Path, devices: int, extra: str, *, rate: float = 1000, concurrency: int = 4
) -> Path:
    imeis = [imei(i) for i in range(devices)]
    write_fleet(
        directory / "fleet.csv", imeis, {"server_ip": [f"10.0.0.{i % 250}" for i in range(devices)]}
    )
    job = directory / "job.yaml"
    text = JOB.format(
        name="roll", commands=WRITE_AND_READ, rate=rate, concurrency=concurrency, valid_time="now"
    )
    job.write_text(text + extra, encoding="utf-8")
    return job


# -- pure rules ----------------------------------------------------------------------


def test_wave_bounds_are_cumulative_and_capped() -> None:
    """Counts and percentages become cumulative device counts; the last wave is the whole fleet."""
    spec = RolloutSpec(waves=[10, "1%", "10%", "100%"])
    assert [10, 10, 100, 1000] == wave_bounds(spec, 1000)
    assert [10, 20, 200, 2000] == wave_bounds(spec, 2000)
    assert [5, 5, 5, 5] == wave_bounds(spec, 5)


def test_shuffled_waves_have_exact_sizes_and_are_stable() -> None:
    """A shuffled order puts exactly the wave's count in each wave, the same for the same run id."""
    imeis = [imei(i) for i in range(500)]
    bounds = [7, 50, 500]
    thresholds = key_thresholds((shuffle_key("r1", i) for i in imeis), bounds)
    waves = WaveMap(bounds, thresholds, "r1")
    counts = Counter(waves.wave_of(p, i) for p, i in enumerate(imeis))
    assert {0: 7, 1: 43, 2: 450} == counts
    other = WaveMap(bounds, key_thresholds((shuffle_key("r2", i) for i in imeis), bounds), "r2")
    first = {i for p, i in enumerate(imeis) if waves.wave_of(p, i) == 0}
    assert first != {i for p, i in enumerate(imeis) if other.wave_of(p, i) == 0}
    assert first != set(imeis[:7])


def test_abort_rule_fires_on_rate_after_minimum_and_on_errno() -> None:
    """The failure rate counts only once enough rows were answered; an abort errno fires at once."""
    rule = AbortRule(AbortSpec(failure_rate="20%", min_answered=10))
    results = [rule.record(ok=i % 2 == 0, errno=None if i % 2 == 0 else 6) for i in range(10)]
    assert [None] * 9 == results[:9]
    assert results[9] is not None and "5/10" in results[9]
    by_errno = AbortRule(AbortSpec(errnos=[5006]))
    assert by_errno.record(ok=False, errno=8) is None
    assert "errno 5006" in str(by_errno.record(ok=False, errno=5006))


def test_ramp_grows_by_factor_until_the_rate() -> None:
    """start x factor^(elapsed // every), capped at per_second."""
    ramp = RampSpec(start=5, factor=2, every="1m")
    assert [5, 5, 10, 20, 40, 50, 50] == [
        ramp_rate(ramp, 50, t) for t in (0, 59, 60, 120, 180, 240, 10_000)
    ]


def test_dispatch_window_opens_closes_and_crosses_midnight() -> None:
    """A 22:00-02:00 range on fridays is open friday night into saturday, and next opens a week later."""
    window = DispatchWindow(DispatchWindowSpec(daily=["22:00-02:00"], days=["fri"]))
    friday = datetime(2026, 11, 27, 21, 0, tzinfo=SHANGHAI)  # a friday
    assert not window.is_open(friday)
    assert datetime(2026, 11, 27, 22, 0, tzinfo=SHANGHAI) == window.next_open(friday)
    assert window.is_open(datetime(2026, 11, 28, 1, 59, tzinfo=SHANGHAI))
    saturday = datetime(2026, 11, 28, 2, 0, tzinfo=SHANGHAI)
    assert not window.is_open(saturday)
    assert datetime(2026, 12, 4, 22, 0, tzinfo=SHANGHAI) == window.next_open(saturday)
    # the zone is the window's, not the machine's: 14:00 UTC is 22:00 in Shanghai
    assert window.is_open(datetime(2026, 11, 27, 14, 0, tzinfo=UTC))


# -- runs against the simulator ---------------------------------------------------------


def arrivals_by_device(commands: list[object]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for c in commands:
        out.setdefault(c.imei, []).append(c.received_at)  # type: ignore[attr-defined]
    return out


def test_waves_go_in_order_and_respect_their_sizes(tmp_path: Path) -> None:
    """Waves of 3, 10 and the rest: each wave's devices are all done before the next starts."""
    job = job_with(tmp_path, 20, "rollout: {waves: [3, 50%, 100%]}\n")
    with simulator() as sim:
        assert 0 == main(
            ["run", str(job), "--base-url", sim.base_url, "--ledger", str(tmp_path / "l.sqlite")]
        )
        times = arrivals_by_device(list(sim.commands))
    waves = [
        [imei(i) for i in range(0, 3)],
        [imei(i) for i in range(3, 10)],
        [imei(i) for i in range(10, 20)],
    ]
    for earlier, later in itertools.pairwise(waves):
        assert max(max(times[d]) for d in earlier) < min(min(times[d]) for d in later)
    assert 20 == len(times)


def test_abort_on_errno_stops_near_the_failing_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An abort errno stops the run (exit 3) within the requests in flight; a rerun is refused until overridden."""
    job = job_with(tmp_path, 100, "rollout: {abort: {errnos: [8]}}\n", rate=200, concurrency=4)
    ledger = tmp_path / "l.sqlite"
    args = ["run", str(job), "--ledger", str(ledger)]
    with simulator(fail_imeis={imei(20)}) as sim:
        assert 3 == main([*args, "--base-url", sim.base_url])
        commanded = {c.imei for c in sim.commands}
        # devices after the failing one that still got a command: at most those in flight
        assert len(commanded - {imei(i) for i in range(20)}) <= 4
        assert 3 == main([*args, "--base-url", sim.base_url])
        assert "--override-abort" in capsys.readouterr().err
        before = len(sim.commands)
        assert 1 == main([*args, "--base-url", sim.base_url, "--override-abort"])
        assert 99 * 2 == len(sim.commands)
        assert before < len(sim.commands)
    assert Counter(c.imei for c in sim.commands).most_common(1)[0][1] == 2


def test_abort_on_failure_rate_after_min_answered(tmp_path: Path) -> None:
    """Half the answers fail: the 20 % rule fires once 20 rows are answered, within what is in flight."""
    job = job_with(
        tmp_path, 200, "rollout: {abort: {failure_rate: 20%, min_answered: 20}}\n", concurrency=4
    )
    ledger = tmp_path / "l.sqlite"
    with simulator(error_rate=0.5, error_errno=6, error_text="invalid parameter") as sim:
        assert 3 == main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])
    db = sqlite3.connect(ledger)
    answered = db.execute("SELECT count(*) FROM items WHERE status IN ('ok', 'failed')").fetchone()[
        0
    ]
    state, reason = db.execute("SELECT state, reason FROM runs").fetchone()
    db.close()
    assert 20 <= answered <= 20 + 4 + 2
    assert "aborted" == state and "failure rate" in reason


def test_dry_run_sends_nothing_and_matches_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints every request with the key masked; the simulator receives nothing."""
    job = job_with(tmp_path, 12, "")
    out_file = tmp_path / "requests.jsonl"
    with simulator() as sim:
        base_url = sim.base_url
        args = [
            "run",
            str(job),
            "--base-url",
            base_url,
            "--dry-run",
            "--requests-out",
            str(out_file),
        ]
        assert 0 == main(args)
        assert 0 == len(sim.requests)
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert 24 == len(records)
    assert {"api-key": "***"} == records[1]["headers"]
    assert records[0]["url"].startswith(f"{base_url}/nbiot/offline?imei={imei(0)}&obj_id=3300")
    assert API_KEY not in out_file.read_text() + capsys.readouterr().out
    assert 0 == main(["validate", str(job)])
    assert "requests:            24" in capsys.readouterr().out


def test_targeting_is_remembered_by_the_full_run(tmp_path: Path) -> None:
    """--limit, then --imei-file, then a full run: every device commanded exactly once."""
    job = job_with(tmp_path, 30, "")
    ledger = tmp_path / "l.sqlite"
    picks = tmp_path / "picks.txt"
    picks.write_text(f"# the lab meters\n{imei(25)}\n{imei(26)}\n")
    with simulator() as sim:
        base = ["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)]
        assert 0 == main([*base, "--limit", "5"])  # partial: the rest wait for a later run
        assert {imei(i) for i in range(5)} == {c.imei for c in sim.commands}
        assert 0 == main([*base, "--imei-file", str(picks)])
        assert {imei(i) for i in (*range(5), 25, 26)} == {c.imei for c in sim.commands}
        assert 0 == main([*base])
        assert Counter(c.imei for c in sim.commands) == {imei(i): 2 for i in range(30)}


def test_unknown_fleet_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--fleet naming no fleet of the job: exit 2, nothing sent."""
    job = job_with(tmp_path, 3, "")
    with simulator() as sim:
        assert 2 == main(
            [
                "run",
                str(job),
                "--base-url",
                sim.base_url,
                "--ledger",
                str(tmp_path / "l"),
                "--fleet",
                "nope",
            ]
        )
        assert 0 == len(sim.requests)
    assert "no such fleet" in capsys.readouterr().err


def test_confirm_pause_exits_and_resume_lets_the_next_wave_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With confirm and --no-wait, each run does one wave and exits 0; `resume` confirms the next."""
    job = job_with(tmp_path, 10, "rollout: {waves: [2, 100%], pause_between_waves: confirm}\n")
    ledger = tmp_path / "l.sqlite"
    with simulator() as sim:
        args = ["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger), "--no-wait"]
        assert 0 == main(args)
        assert {imei(0), imei(1)} == {c.imei for c in sim.commands}
        assert 0 == main(args)  # not confirmed yet: nothing more
        assert 4 == len(sim.commands)
        capsys.readouterr()
        assert 0 == main(["status", str(ledger), "--run-id", "roll", "--format", "json"])
        status = json.loads(capsys.readouterr().out)
        assert ("paused", 1, 2) == (status["state"], status["wave"], status["waves"])
        assert 0 == main(["resume", str(ledger), "--run-id", "roll"])
        assert 0 == main(args)
        assert 20 == len(sim.commands)


class VirtualClock:
    """Wall and monotonic time that jump forward when slept on: no real waiting."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


def test_dispatch_window_pauses_and_wakes_on_a_virtual_clock(tmp_path: Path) -> None:
    """Started at 00:30 for a 01:00-05:00 window, the run sleeps until 01:00 (virtually) and then sends."""
    window = 'dispatch_window: {timezone: Asia/Shanghai, daily: ["01:00-05:00"]}\n'
    job = job_with(tmp_path, 5, window)
    clock = VirtualClock(datetime(2026, 11, 23, 0, 30, tzinfo=SHANGHAI))
    with simulator() as sim:
        result = run_job(
            RunOptions(job=job, ledger=tmp_path / "l.sqlite", base_url=sim.base_url, clock=clock)
        )
        assert 10 == len(sim.commands)
    assert {"ok": 10} == result.counts
    assert (
        datetime(2026, 11, 23, 1, 0, tzinfo=SHANGHAI)
        <= clock.wall()
        < datetime(2026, 11, 23, 5, 0, tzinfo=SHANGHAI)
    )
    assert any(abs(s - 1800) < 1 for s in clock.slept)


def test_no_wait_outside_the_window_exits_zero_and_sends_nothing(tmp_path: Path) -> None:
    """Outside the window with --no-wait: exit 0, nothing sent, the run resumable."""
    window = 'dispatch_window: {timezone: Asia/Shanghai, daily: ["01:00-05:00"]}\n'
    job = job_with(tmp_path, 5, window)
    clock = VirtualClock(datetime(2026, 11, 23, 6, 0, tzinfo=SHANGHAI))
    with simulator() as sim:
        result = run_job(
            RunOptions(
                job=job,
                ledger=tmp_path / "l.sqlite",
                base_url=sim.base_url,
                clock=clock,
                no_wait=True,
            )
        )
        assert 0 == len(sim.requests)
    assert "outside the dispatch window" == result.paused
    assert clock.wall() - datetime(2026, 11, 23, 6, 0, tzinfo=SHANGHAI) < timedelta(seconds=1)
