"""Progress counts rows of the whole run on one basis; only ``invocation_sent`` is this invocation's."""

from __future__ import annotations

from dispatcher.engine import Totals
from dispatcher.limiter import RateLimiter
from dispatcher.progress import Meter
from tests.test_limiter import FakeClock


def test_a_resumed_run_counts_earlier_rows_in_done_ok_and_failed() -> None:
    """Resumed with 300 ok, 4 failed, 96 pending: after 50 more answers (48 ok, 2 failed),
    done = ok + failed + ... of the run, and sent is this invocation's requests."""
    totals = Totals()
    meter = Meter(
        totals,
        RateLimiter(50, FakeClock()),
        total=400,
        initial={"ok": 300, "failed": 4, "pending": 90, "sending": 6},
    )
    totals.by_status = {"ok": 48, "failed": 2}
    totals.sent = 51  # one retry
    s = meter.snapshot(1.0)
    assert (354, 400, 348, 6, 51) == (s.done, s.total, s.ok, s.failed, s.sent)
    assert s.done == s.ok + s.failed + s.in_doubt + s.skipped


def test_a_new_run_counts_only_its_answers() -> None:
    totals = Totals()
    meter = Meter(totals, RateLimiter(50, FakeClock()), total=10, initial={})
    totals.by_status = {"ok": 3, "in_doubt": 1, "pending": 2}
    s = meter.snapshot(1.0)
    assert (4, 3, 1) == (s.done, s.ok, s.in_doubt)
