"""Answers in the other forms a faithful server may write, over loopback HTTP.

The public pages give each field a type and one example; the simulator's
`answer_forms` knob writes the same answers another way (errno as text, a byte order
mark, GBK with Chinese error texts, `data` as JSON text, uuids in capitals or without
dashes, times with a T or as epoch milliseconds, send_status names, a write's values as
text, no total_count). Whatever the form: a queued command is ok, a refusal is classified
by its errno, a lost answer is found by reconciliation (never a device commanded twice),
and `track` records the same delivery states.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from dispatcher.cli import main
from dispatcher.config import HttpConfig, Secret
from dispatcher.ledger import Ledger
from dispatcher.onenet.auth import ApiKeyAuth
from dispatcher.onenet.client import OneNetClient, _classify
from dispatcher.onenet.errnos import classify_errno
from dispatcher.outcome import Kind, Outcome
from dispatcher.simulator import Simulator, SimulatorConfig, running_simulator
from dispatcher.simulator.forms import ANSWER_FORMS
from tests.helpers import API_KEY, imei, simulator, write_job
from tests.test_client import live, write_request
from tests.test_reconcile_evidence import JOBS, age_in_doubt_rows, queue_writes

ENVELOPE_FORMS = ("errno_text", "bom", "gbk", "data_text")
HISTORY_FORMS = (
    "uuid_upper",
    "uuid_bare",
    "iso_times",
    "epoch_times",
    "text_values",
    "no_total",
    "status_names",
)
# Every form at once, but a history that does not page (its own test, below).
EVERY = ",".join(f for f in ANSWER_FORMS if f != "page_ignored")
JOBS_WRITE = JOBS["write"]
DEVICES = 3
# A boolean and a float beside the per-device text: "true" and "60.5" must read as ours.
WRITE = (
    "  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1,"
    ' data: [{res_id: 5700, val: 60.5}, {res_id: 5850, val: true}, {res_id: 5750, val: "{server_ip}"}]}\n'
)


def forms(names: str) -> frozenset[str]:
    return frozenset(names.split(","))


async def send_once(config: SimulatorConfig, key: str = "k") -> tuple[Outcome, Simulator]:
    async with (
        running_simulator(config) as sim,
        OneNetClient(sim.base_url, ApiKeyAuth(Secret(key)), HttpConfig(), concurrency=1) as client,
    ):
        return await client.send(write_request(), *live()), sim


@pytest.mark.anyio
@pytest.mark.parametrize("names", [*ENVELOPE_FORMS, EVERY])
async def test_a_queued_command_is_ok_whatever_the_envelope_form(names: str) -> None:
    """errno "0", a BOM, GBK, data as JSON text: ok with the uuid queued, never in doubt."""
    outcome, sim = await send_once(SimulatorConfig(api_key="k", answer_forms=forms(names)))
    (queued,) = sim.commands
    assert (Kind.OK, queued.uuid) == (outcome.kind, outcome.uuid)


@pytest.mark.anyio
@pytest.mark.parametrize("names", [*ENVELOPE_FORMS, EVERY])
@pytest.mark.parametrize(("errno", "kind"), [(7, Kind.RETRY), (15, Kind.RETRY), (6, Kind.FAILED)])
async def test_a_refusal_is_classified_by_its_errno_whatever_the_form(
    names: str, errno: int, kind: Kind
) -> None:
    """A refusal written in any form keeps its class (retry, slow down, failed) and its errno."""
    config = SimulatorConfig(
        api_key="k", answer_forms=forms(names), error_rate=1.0, error_errno=errno
    )
    outcome, sim = await send_once(config)
    assert not sim.commands
    assert (kind, errno, errno == 15) == (outcome.kind, outcome.errno, outcome.slow_down)


@pytest.mark.anyio
async def test_a_chinese_error_text_is_read_in_its_charset() -> None:
    """GBK with its charset declared: the text as the platform wrote it, not mojibake."""
    config = SimulatorConfig(api_key="k", answer_forms=forms("gbk,bom"), error_rate=1.0)
    outcome, _ = await send_once(config)
    assert (Kind.RETRY, "服务内部错误") == (outcome.kind, outcome.error)


@pytest.mark.anyio
async def test_a_chinese_auth_refusal_stops_sending() -> None:
    """ "鉴权失败" is "auth failed": the key is refused, not one device (nothing more is sent)."""
    async with running_simulator(SimulatorConfig(api_key="k", answer_forms=forms("gbk"))) as sim:
        async with OneNetClient(
            sim.base_url, ApiKeyAuth(Secret("wrong")), HttpConfig(), concurrency=1
        ) as client:
            first = await client.send(write_request(), *live())
            second = await client.send(write_request(), *live())
        assert 1 == len(sim.requests)
    assert (Kind.FAILED, 1, True) == (first.kind, first.errno, first.auth_refused)
    assert "鉴权失败" in (first.error or "")
    assert second.error is not None and second.error.startswith("not sent")


# --- reconciliation: lost answers beside another application's commands -------------


@pytest.fixture
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)


def run(job: Path, sim: Simulator, ledger: Path) -> int:
    return main(["run", str(job), "--base-url", sim.base_url, "--ledger", str(ledger)])


def key(uuid: str | None) -> str | None:
    """A uuid as the platform may rewrite it: a reconciled row keeps the history's form."""
    return None if uuid is None else uuid.strip().replace("-", "").lower()


def rows(ledger: Path) -> dict[tuple[str, int], tuple[str, str | None]]:
    db = sqlite3.connect(ledger)
    try:
        got = db.execute("SELECT imei, command, status, uuid FROM items").fetchall()
    finally:
        db.close()
    return {(i, c): (s, key(u)) for i, c, s, u in got}


@pytest.mark.usefixtures("_key")
@pytest.mark.parametrize("names", [*HISTORY_FORMS, *ENVELOPE_FORMS, EVERY])
@pytest.mark.parametrize("detail_form", ["text", "object", "pairs"])
def test_lost_answers_are_found_whatever_the_history_form(
    tmp_path: Path, names: str, detail_form: str
) -> None:
    """Queued, answer dropped, another application's write right after: found, each device commanded once."""
    job = write_job(tmp_path, DEVICES, commands=WRITE)
    ledger = tmp_path / "ledger.sqlite"
    knobs = {"detail_form": detail_form, "answer_forms": forms(names), "foreign_rate": 1.0}
    with simulator(drop_after_queue_rate=1.0, **knobs) as sim:
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        assert 0 == run(job, sim, ledger)
        ours = [c for c in sim.commands if not c.foreign]
        assert Counter(c.imei for c in ours) == {imei(i): 1 for i in range(DEVICES)}
        mine = {(c.imei, 0): ("ok", key(c.uuid)) for c in ours}
    assert mine == rows(ledger)


@pytest.mark.usefixtures("_key")
@pytest.mark.parametrize("names", ["uuid_upper", "uuid_bare", EVERY])
def test_a_command_we_know_is_never_taken_for_another_application(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    """A uuid the send's answer wrote in lower case and the history in capitals is one command.

    The first write of each device was answered (its uuid in the ledger), the second's
    answer was lost: reconciling the second finds it, and does not count the first as
    another application's command.
    """
    another = WRITE.replace("60.5", "61.5")
    job = write_job(tmp_path, DEVICES, commands=WRITE + another)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(drop_after_queue_rate=1.0, answer_forms=forms(names)) as sim:
        assert 1 == run(job, sim, ledger)  # the first writes sent, answers lost
        first = {c.imei: c.uuid for c in sim.commands}
        # As if the first write's answer had arrived: ok, with the uuid as the send answered it.
        db = sqlite3.connect(ledger)
        for device, uuid in first.items():
            db.execute(
                "UPDATE items SET status = 'ok', uuid = ?, error = NULL"
                " WHERE imei = ? AND command = 0",
                (uuid, device),
            )
        db.commit()
        db.close()
        assert 1 == run(job, sim, ledger)  # the second writes sent, answers lost
        second = {c.imei: c.uuid for c in sim.commands if c.uuid not in first.values()}
        sim.config.drop_after_queue_rate = 0.0
        assert 0 == run(job, sim, ledger)
        assert 2 * DEVICES == len(sim.commands)
    expected = {(device, 1): ("ok", key(uuid)) for device, uuid in second.items()}
    assert expected == {k: v for k, v in rows(ledger).items() if k[1] == 1}
    with Ledger(ledger) as opened:
        assert 0 == opened.foreign_seen("test-job")


@pytest.mark.usefixtures("_key")
@pytest.mark.parametrize("names", ["status_names", "iso_times", "epoch_times", EVERY])
def test_track_records_the_same_states_whatever_the_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    """send_status "SUCCESS" is success (final: never asked again); confirm times are kept."""
    job = write_job(tmp_path, DEVICES)
    ledger = tmp_path / "l.sqlite"
    with simulator(delivery=True, answer_forms=forms(names)) as sim:
        assert 0 == run(job, sim, ledger)
        # An hour later on the platform: every device has woken and confirmed.
        advance = Request(
            f"{sim.base_url}/_sim/advance", json.dumps({"seconds": 3600}).encode(), method="POST"
        )
        with urlopen(advance) as answer:
            assert 200 == answer.status
        args = ["track", str(ledger), "--run-id", "test-job", "--base-url", sim.base_url]
        assert 0 == main(args)
        assert {5} == {c.send_status for c in sim.commands}
        asked = len(sim.requests)
        assert 0 == main(args)
        assert asked == len(sim.requests), "a final state was asked about again"
    capsys.readouterr()
    assert 0 == main(["export", str(ledger)])
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 2 * DEVICES == len(exported)
    assert {"success"} == {r["send_status"] for r in exported}
    # times recorded in the pages' own form, whatever form they came in
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["confirm_time"]) for r in exported)


@pytest.mark.usefixtures("_key")
def test_a_history_that_does_not_page_is_not_taken_as_read_to_its_end(tmp_path: Path) -> None:
    """A server answering page 1 to every page: ours (on page 2) is never seen, so the row
    stays in doubt, never "not queued" (which would send the device a second command)."""
    job = write_job(tmp_path, 1, commands=JOBS_WRITE)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(answer_forms=forms("page_ignored")) as sim:
        queue_writes(sim, imei(0), 10)  # another application's ten, listed before ours
        sim.config.drop_after_queue_rate = 1.0
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        age_in_doubt_rows(ledger)
        assert 1 == run(job, sim, ledger)
        assert 11 == len(sim.commands)
        status, _ = rows(ledger)[imei(0), 0]
        assert "in_doubt" == status
        assert "lists only commands of earlier pages" in error_of(ledger)
        sim.config.answer_forms = frozenset()  # a server that pages: found
        assert 0 == run(job, sim, ledger)
        assert 11 == len(sim.commands)
        assert "ok" == rows(ledger)[imei(0), 0][0]


@pytest.mark.usefixtures("_key")
def test_a_history_that_does_not_count_is_read_to_its_end(tmp_path: Path) -> None:
    """total_count -1 (a server that does not count): no count ends the history. Read as
    "every one of -1 seen" after page 1, ours (on page 2) was never looked for and the
    row was settled "not queued": the device commanded a second time."""
    job = write_job(tmp_path, 1, commands=JOBS_WRITE)
    ledger = tmp_path / "ledger.sqlite"
    with simulator(answer_forms=forms("unknown_total")) as sim:
        queue_writes(sim, imei(0), 10)  # another application's ten, listed before ours
        sim.config.drop_after_queue_rate = 1.0
        assert 1 == run(job, sim, ledger)
        sim.config.drop_after_queue_rate = 0.0
        age_in_doubt_rows(ledger)
        assert 0 == run(job, sim, ledger)
        assert 11 == len(sim.commands), "the device was commanded twice"
        assert "ok" == rows(ledger)[imei(0), 0][0]


def error_of(ledger: Path) -> str:
    db = sqlite3.connect(ledger)
    try:
        (error,) = db.execute("SELECT error FROM items ORDER BY rowid").fetchone()
    finally:
        db.close()
    return str(error)


@pytest.mark.usefixtures("_key")
def test_a_server_keeping_utc_never_has_a_device_commanded_twice(tmp_path: Path) -> None:
    """History times without a zone, meant as UTC: a lost answer is never "not queued".

    Read as UTC+8, our command looks created 8 h before its send. It is listed (the
    history is asked from well before) and, agreeing, keeps the row in doubt: it may be
    ours, or an earlier twin. A lost request beside another application's command is
    still sent, once.
    """
    job = write_job(tmp_path, DEVICES, commands=WRITE)
    lost_answers, lost_requests = tmp_path / "answers.sqlite", tmp_path / "requests.sqlite"
    with simulator(drop_after_queue_rate=1.0, answer_forms=forms("utc_times")) as sim:
        assert 1 == run(job, sim, lost_answers)
        sim.config.drop_after_queue_rate = 0.0
        age_in_doubt_rows(lost_answers)
        assert 1 == run(job, sim, lost_answers)
        assert DEVICES == len(sim.commands), "a device was commanded twice"
        assert {"in_doubt"} == {status for status, _ in rows(lost_answers).values()}
        assert "create_time (no zone) is before the send" in error_of(lost_answers)
    knobs = {"garble": "html_error", "garble_rate": 1.0, "foreign_rate": 1.0}
    with simulator(answer_forms=forms("utc_times"), **knobs) as sim:
        assert 1 == run(job, sim, lost_requests)
        sim.config.garble_rate = 0.0
        age_in_doubt_rows(lost_requests)
        assert 0 == run(job, sim, lost_requests)
        ours = [c for c in sim.commands if not c.foreign]
        assert Counter(c.imei for c in ours) == {imei(i): 1 for i in range(DEVICES)}


# --- the classifier alone, on bodies no simulator form writes --------------------------

UUID = "42742677-adc3-54ca-83a1-5aaaf71482f8"


@pytest.mark.parametrize(
    ("body", "charset", "kind", "errno"),
    [
        (b'{"errno":"0","error":"succ","data":{"uuid":"%s"}}' % UUID.encode(), None, Kind.OK, 0),
        (b'{"errno":0.0,"data":{"uuid":"%s"}}' % UUID.encode(), None, Kind.OK, 0),
        (b'{"errno":" 15 ","error":"api freq out of limit"}', None, Kind.RETRY, 15),
        (b'{"code":"7","msg":"service internal error"}', None, Kind.RETRY, 7),
        (b'{"errno":"zero","data":{"uuid":"u"}}', None, Kind.IN_DOUBT, None),
        (b'\xef\xbb\xbf{"errno":6,"error":"invalid parameter"}', None, Kind.FAILED, 6),
        ('{"errno":6,"error":"参数错误"}'.encode("gbk"), None, Kind.FAILED, 6),  # no charset said
        ('{"errno":6,"error":"参数错误"}'.encode("gbk"), "GBK", Kind.FAILED, 6),
        ('{"errno":6,"error":"参数错误"}'.encode("utf-16"), None, Kind.FAILED, 6),
        (b'{"errno":0,"data":"{\\"uuid\\":\\"%s\\"}"}' % UUID.encode(), None, Kind.OK, 0),
        (b'{"errno":0,"data":"not json"}', None, Kind.IN_DOUBT, None),
        (b'{"errno":0,"data":{"uuid":"  "}}', None, Kind.IN_DOUBT, None),
        (b"<html><body>502</body></html>", None, Kind.IN_DOUBT, None),
        # a refusal's data, whatever it holds, is not read
        (b'{"errno":6,"error":"invalid parameter","data":null}', None, Kind.FAILED, 6),
        (b'{"errno":6,"error":"invalid parameter","data":{}}', None, Kind.FAILED, 6),
        (b'{"errno":6,"data":{"uuid":"%s"}}' % UUID.encode(), None, Kind.FAILED, 6),
        (b'{"errno":15}', None, Kind.RETRY, 15),
    ],
)
def test_an_answer_is_classified_in_every_form(
    body: bytes, charset: str | None, kind: Kind, errno: int | None
) -> None:
    outcome = _classify(200, body, None, None, charset)
    assert (kind, errno) == (outcome.kind, outcome.errno)


def test_a_padded_uuid_is_stored_stripped() -> None:
    body = b'{"errno":0,"error":"succ","data":{"uuid":" %s "}}' % UUID.encode()
    assert UUID == _classify(200, body, None, None).uuid


@pytest.mark.parametrize(
    ("errno", "text", "refused", "kind"),
    [
        (1, "鉴权失败", True, Kind.FAILED),
        (1, "token expired", True, Kind.FAILED),
        (3, "签名错误", True, Kind.FAILED),
        (1, "服务器内部错误", False, Kind.RETRY),  # the generic table's internal error
        (5106, "UNSUCESS: 设备离线", False, Kind.RETRY),
        (5106, "UNSUCESS: 超时", False, Kind.RETRY),
        (5106, "UNSUCESS: 资源不存在", False, Kind.FAILED),
        (1, "", True, Kind.FAILED),  # no text: the NB table's "auth failed"
        (3, "", False, Kind.FAILED),  # no text: "parameter required" or "auth failed"
        (6, "", False, Kind.FAILED),
    ],
)
def test_a_chinese_text_is_classified_as_its_english_twin(
    errno: int, text: str, refused: bool, kind: Kind
) -> None:
    outcome = classify_errno(errno, text, 200)
    assert (refused, kind) == (outcome.auth_refused, outcome.kind)


def test_simulate_names_every_answer_form_and_refuses_another(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`simulate --help` lists the forms the simulator knows; an unknown one is exit 2, nothing served."""
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(name in shown for name in ANSWER_FORMS)
    monkeypatch.setenv("ONENET_API_KEY", API_KEY)
    assert 2 == main(["simulate", "--port", "0", "--answer-form", "errno_as_words"])
    assert "answer_forms must be among" in capsys.readouterr().err
