"""The ledger failing under a run: nothing is sent that cannot be recorded."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.helpers import API_KEY, simulator, write_job


def _limit_file_size(limit: int) -> None:
    # In the child only: files may not grow past `limit` bytes, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_stops_the_run_and_loses_nothing(tmp_path: Path) -> None:
    """The ledger cannot grow: the run stops with a clear message; every queued command is in the ledger."""
    job = write_job(tmp_path, 5000, rate=1000, concurrency=8)
    ledger = tmp_path / "l.sqlite"
    with simulator() as sim:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "dispatcher",
                "run",
                str(job),
                "--base-url",
                sim.base_url,
                "--ledger",
                str(ledger),
            ],
            env={**os.environ, "ONENET_API_KEY": API_KEY},
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: _limit_file_size(1024 * 1024),
        )
        queued = {(c.imei, c.op): c.uuid for c in sim.commands}
    assert 2 == proc.returncode, proc.stderr[-2000:]
    assert "ledger" in proc.stderr and "Traceback" not in proc.stderr
    assert 0 < len(queued) < 10000
    db = sqlite3.connect(ledger)
    rows = {
        (imei, "write" if command == 0 else "read"): (status, uuid)
        for imei, command, status, uuid in db.execute(
            "SELECT imei, command, status, uuid FROM items"
        )
    }
    db.close()
    for key, uuid in queued.items():
        status, recorded = rows[key]
        # answered and recorded, or marked sending before it left (in doubt on the next run)
        assert (status == "ok" and recorded == uuid) or status == "sending", (key, status)
