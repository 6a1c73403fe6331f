"""Reconciliation on evidence, end to end over loopback HTTP, beside other applications.

The simulator writes a detail's `args`/`content` in each form the platform's page allows
(and one that does not parse), and "another application" queues a command of the same
kind on the device right after each of ours. Lost answers (queued, answer dropped) and
lost requests (an HTML error page: nothing queued) are then reconciled by a second run:
no device is commanded twice, no row is `ok` on a uuid we did not send, and every lost
answer is found wherever the evidence can decide (in doubt, never wrong, where it cannot).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from dispatcher import reconcile
from dispatcher.cli import main
from dispatcher.ledger import Ledger
from dispatcher.simulator import Simulator
from dispatcher.timewindow import PLATFORM_TZ
from tests.helpers import API_KEY, imei, simulator, write_job

DEVICES = 3
JOBS = {
    # a write with a per-device value, so every device's body differs from the others'
    "write": "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1,"
    ' data: [{res_id: 5700, val: 60}, {res_id: 5750, val: "{server_ip}"}]}\n',
    "read": "  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n",
    "execute": '  - execute: {obj_id: 3, obj_inst_id: 0, res_id: 4, args: "reboot={server_ip}"}\n',
}
FORMS = ("text", "data_text", "object", "pairs", "unparseable")


def decides(form: str, op: str) -> bool:
    """Whether the detail form gives evidence that tells our command from the other one.

    An execute's bare args text is evidence only when equal (another text might be a
    form we do not know), so with "data_text" the other application's execute cannot
    be ruled out; text that is not JSON is no evidence at all.
    """
    return form != "unparseable" and not (op == "execute" and form == "data_text")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def run(job: Path, sim: Simulator, ledger: Path) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])


def rows(ledger: Path) -> dict[tuple[str, int], tuple[str, str | None, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        got = db.execute("SELECT imei, command, status, uuid, error FROM items").fetchall()
    finally:
        db.close()
    return {(i, c): (s, u, e) for i, c, s, u, e in got}


def age_in_doubt_rows(ledger: Path) -> None:
    """As if the lost requests had left a minute ago: old enough for "not queued"."""
    db = sqlite3.connect(ledger)
    db.execute("UPDATE items SET sent_at = ? WHERE status = 'in_doubt'", (time.time() - 60,))
    db.commit()
    db.close()


def check_never_wrong(sim: Simulator, ledger: Path, op: str) -> dict[str, str]:
    """The promises that hold on every path; returns each device's own uuid."""
    ours = [c for c in sim.commands if not c.foreign]
    assert all(c.op == op for c in ours)
    per_device = Counter(c.imei for c in ours)
    assert all(n == 1 for n in per_device.values()), "a device was commanded twice"
    assert any(c.foreign for c in sim.commands), "the other application never queued anything"
    mine = {c.imei: c.uuid for c in ours}
    for (device, _), (status, uuid, _error) in rows(ledger).items():
        if status == "ok":
            assert uuid == mine.get(device), "ok on a uuid we did not send"
        if device in mine:
            assert status in ("ok", "in_doubt"), f"{device} was queued but is {status}"
    return mine


@pytest.mark.parametrize("op", sorted(JOBS))
@pytest.mark.parametrize("form", FORMS)
def test_lost_answers_beside_other_applications_are_found(
    tmp_path: Path, form: str, op: str
) -> None:
    """Queued, answer dropped, another app's command right after: found (ok, our uuid) or left in doubt."""
    job = write_job(tmp_path, DEVICES, commands=JOBS[op])
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0, foreign_rate=1.0, detail_form=form) as sim:
        assert 1 == run(job, sim, ledger)
        assert {"in_doubt"} == {r[0] for r in rows(ledger).values()}
        sim.config.drop_after_queue_rate = 0.0
        code = run(job, sim, ledger)
        mine = check_never_wrong(sim, ledger, op)
        assert len(mine) == DEVICES
        got = rows(ledger)
        if decides(form, op):
            assert 0 == code
            assert {(imei(i), 0): ("ok", mine[imei(i)]) for i in range(DEVICES)} == {
                k: v[:2] for k, v in got.items()
            }
        else:
            assert 1 == code
            assert {"in_doubt"} == {r[0] for r in got.values()}
            assert all("cannot be ruled out" in (r[2] or "") for r in got.values())


@pytest.mark.parametrize("op", sorted(JOBS))
@pytest.mark.parametrize("form", FORMS)
def test_lost_requests_beside_other_applications_are_sent_once(
    tmp_path: Path, form: str, op: str
) -> None:
    """Nothing queued, another app's command on the device: never taken for ours; sent once, or left in doubt."""
    job = write_job(tmp_path, DEVICES, commands=JOBS[op])
    ledger = tmp_path / "ledger.sqlite"
    knobs = {"garble": "html_error", "garble_rate": 1.0, "foreign_rate": 1.0}
    with simulator(**knobs, detail_form=form) as sim:
        assert 1 == run(job, sim, ledger)
        assert not [c for c in sim.commands if not c.foreign]
        assert {"in_doubt"} == {r[0] for r in rows(ledger).values()}
        sim.config.garble_rate = 0.0
        age_in_doubt_rows(ledger)
        code = run(job, sim, ledger)
        mine = check_never_wrong(sim, ledger, op)
        got = rows(ledger)
        if decides(form, op):
            assert 0 == code
            assert len(mine) == DEVICES
            assert {(imei(i), 0): ("ok", mine[imei(i)]) for i in range(DEVICES)} == {
                k: v[:2] for k, v in got.items()
            }
        else:
            assert 1 == code
            assert not mine, "sent although another command could have been ours"
            assert {"in_doubt"} == {r[0] for r in got.values()}


def test_the_pages_own_quirks_are_tolerated(tmp_path: Path) -> None:
    """Padded uuids, remain and total_count as text, lower-case type: lost answers still found."""
    job = write_job(tmp_path, DEVICES)  # a write then a read per device
    ledger = tmp_path / "ledger.sqlite"
    knobs = {"page_quirks": True, "type_case": "lower", "detail_form": "object"}
    with simulator(drop_after_queue_rate=1.0, foreign_rate=1.0, **knobs) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        assert 0 == run(job, sim, ledger)
        ours = [c for c in sim.commands if not c.foreign]
        assert Counter((c.imei, c.op) for c in ours) == Counter(
            {(imei(i), op): 1 for i in range(DEVICES) for op in ("write", "read")}
        )
        uuids = {(c.imei, 0 if c.op == "write" else 1): c.uuid for c in ours}
    got = rows(ledger)
    assert {k: ("ok", u) for k, u in uuids.items()} == {k: v[:2] for k, v in got.items()}


def test_report_counts_the_other_applications_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each other application's command seen beside a lost answer is counted once, in report."""
    job = write_job(tmp_path, DEVICES, commands=JOBS["write"])
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0, foreign_rate=1.0) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        capsys.readouterr()
        assert 0 == run(job, sim, ledger)
        assert "3 other applications' commands seen" in capsys.readouterr().out
    assert 0 == main(["report", str(ledger)])
    assert "other applications' commands seen during reconciliation: 3" in capsys.readouterr().out


def test_a_refused_history_or_detail_leaves_the_row_in_doubt_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The platform's rate limit refuses the second query on: the first device's detail, the others' history."""
    job = write_job(tmp_path, DEVICES, commands=JOBS["write"])
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        # A fresh bucket holds one request and refills in 1000 s: one history page passes.
        sim.config.rate_limit = 0.001
        assert 1 == run(job, sim, ledger)
        got = rows(ledger)
        assert {"in_doubt"} == {r[0] for r in got.values()}
        assert "detail not available (api freq out of limit)" in (got[imei(0), 0][2] or "")
        for i in (1, 2):
            assert "history not available (api freq out of limit)" in (got[imei(i), 0][2] or "")
        sim.config.rate_limit = None
        capsys.readouterr()
        assert 0 == main(["reconcile", str(ledger), "--base-url", sim.base_url])
        assert "3 queued (now ok)" in capsys.readouterr().out
        mine = check_never_wrong_alone(sim)
    assert {(imei(i), 0): ("ok", mine[imei(i)]) for i in range(DEVICES)} == {
        k: v[:2] for k, v in rows(ledger).items()
    }


def check_never_wrong_alone(sim: Simulator) -> dict[str, str]:
    per_device = Counter(c.imei for c in sim.commands)
    assert set(per_device.values()) == {1}
    return {c.imei: c.uuid for c in sim.commands}


def queue_writes(sim: Simulator, device: str, n: int) -> None:
    """Another application's writes on ``device``, each cancelled to stay under the cap."""
    expired = (datetime.now(PLATFORM_TZ) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    headers = {"api-key": API_KEY, "Content-Type": "application/json"}
    for k in range(n):
        query = urlencode(
            {"imei": device, "obj_id": 1, "obj_inst_id": 0, "mode": 1, "expired_time": expired}
        )
        body = json.dumps({"data": [{"res_id": 1, "val": k}]}).encode()
        post = Request(f"{sim.base_url}/nbiot/offline?{query}", body, headers, method="POST")
        with urlopen(post) as answer:
            uuid = json.load(answer)["data"]["uuid"]
        cancel = f"{sim.base_url}/nbiot/offline/cancel/{uuid}?imei={device}"
        with urlopen(Request(cancel, headers=headers, method="PUT")) as answer:
            assert json.load(answer)["errno"] == 0


def test_a_history_not_read_to_its_end_leaves_the_row_in_doubt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More commands than the page cap reads: in doubt, not "not queued"; read whole, ours is found."""
    job = write_job(tmp_path, 1, commands=JOBS["write"])
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        queue_writes(sim, imei(0), 10)  # 11 commands: two pages of the default 10
        monkeypatch.setattr(reconcile, "MAX_PAGES", 1)
        assert 1 == run(job, sim, ledger)
        status, _, error = rows(ledger)[imei(0), 0]
        assert ("in_doubt", True) == (status, "not read to its end" in (error or ""))
        monkeypatch.setattr(reconcile, "MAX_PAGES", 2)
        assert 0 == run(job, sim, ledger)
        (mine,) = [c.uuid for c in sim.commands if c.body["data"][0]["res_id"] == 5700]
        assert ("ok", mine) == rows(ledger)[imei(0), 0][:2]
        assert 1 == Counter(c.uuid for c in sim.commands)[mine]
    with Ledger(ledger) as opened:
        assert 10 == opened.foreign_seen("test-job")
