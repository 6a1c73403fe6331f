"""Judging a platform command's detail against what was sent, in every form the page allows.

Each row of the tables is one way a platform may write `args` and `content`; the verdict
says whether it proves the command ours, rules it out, or is no evidence either way.
"""

from __future__ import annotations

import json

import pytest

from dispatcher.evidence import Verdict, compare, judge, parse_field, same_value
from dispatcher.ledger import Queued
from dispatcher.plan import Request
from dispatcher.tracking import delivery_from

IMEI = "865820050000004"
DATA: list[dict[str, object]] = [
    {"res_id": 5850, "val": 1},
    {"res_id": 5750, "type": 1, "val": "0A1B"},
]
BODY = {"data": DATA}
WRITE = Request(
    0,
    "write",
    IMEI,
    (("imei", IMEI), ("obj_id", "3311"), ("obj_inst_id", "0"), ("mode", "1")),
    (),
    json.dumps(BODY, separators=(",", ":")).encode(),
)
READ = Request(
    0,
    "read",
    IMEI,
    (("imei", IMEI), ("obj_id", "3311"), ("obj_inst_id", "0"), ("res_id", "5850")),
    (),
    None,
)
EXECUTE = Request(
    0,
    "execute",
    IMEI,
    (("imei", IMEI), ("obj_id", "3"), ("obj_inst_id", "0"), ("res_id", "4")),
    (),
    b'{"args":"reboot=10.0.0.1"}',
)
BARE_EXECUTE = Request(
    0,
    "execute",
    IMEI,
    (("imei", IMEI), ("obj_id", "3"), ("obj_inst_id", "0"), ("res_id", "4")),
    (),
    None,
)
PARAMS = {"imei": IMEI, "obj_id": "3311", "obj_inst_id": "0", "mode": "1"}

AGREES, DIFFERS, NONE = Verdict.AGREES, Verdict.DIFFERS, Verdict.NO_EVIDENCE

WRITE_FORMS = [
    # (id, args, content, verdict)
    ("body as JSON text", None, json.dumps(BODY), AGREES),
    ("body as an object (the page's example)", PARAMS, BODY, AGREES),
    ("data list as JSON text", None, json.dumps(BODY["data"]), AGREES),
    ("data list as an array", None, BODY["data"], AGREES),
    ("data list reordered", None, list(reversed(BODY["data"])), AGREES),
    (
        "numbers as numeric strings",
        None,
        {"data": [{"res_id": "5850", "val": "1"}, {"res_id": "5750", "type": "1", "val": "0a1b"}]},
        AGREES,
    ),
    ("res_id->val pairs object", None, {"5850": 1, "5750": "0A1B"}, AGREES),
    ("res_id->val pairs as a list", None, [{"5850": 1}, {"5750": "0A1B"}], AGREES),
    ("pairs as JSON text", None, '{"5850": "1", "5750": "0A1B"}', AGREES),
    ("body JSON text inside a JSON string", None, json.dumps(json.dumps(BODY)), AGREES),
    (
        "another value",
        None,
        {"data": [{"res_id": 5850, "val": 2}, {"res_id": 5750, "type": 1, "val": "0A1B"}]},
        DIFFERS,
    ),
    ("another value in pairs", None, {"5850": 2, "5750": "0A1B"}, DIFFERS),
    ("one resource fewer", None, BODY["data"][:1], DIFFERS),
    ("another type", None, [DATA[0], {**DATA[1], "type": 2}], DIFFERS),
    ("args name another object", {**PARAMS, "obj_id": 3312}, json.dumps(BODY), DIFFERS),
    (
        "args name another mode, as text",
        json.dumps({"obj_id": 3311, "obj_inst_id": 0, "mode": 2}),
        None,
        DIFFERS,
    ),
    ("args name another device", {**PARAMS, "imei": "865820050000012"}, None, DIFFERS),
    ("args agree but content is missing: the values are unproven", PARAMS, None, NONE),
    ("content does not parse", PARAMS, "data=5850:1", NONE),
    ("content of an unknown shape", None, {"values": [1, "0A1B"]}, NONE),
    ("empty content", None, [], NONE),
    ("nothing at all", None, None, NONE),
]

READ_FORMS = [
    ("ids as JSON text", None, '{"obj_id":3311,"obj_inst_id":0,"res_id":5850}', AGREES),
    (
        "ids as an object of strings",
        None,
        {"obj_id": "3311", "obj_inst_id": "0", "res_id": "5850"},
        AGREES,
    ),
    (
        "HTTP parameters in args",
        {
            "imei": IMEI,
            "obj_id": 3311,
            "obj_inst_id": 0,
            "res_id": 5850,
            "expired_time": "2026-11-23T10:00:00",
        },
        None,
        AGREES,
    ),
    (
        "ids split over args and content",
        {"obj_id": 3311},
        {"obj_inst_id": 0, "res_id": "5850"},
        AGREES,
    ),
    ("another resource", None, {"obj_id": 3311, "obj_inst_id": 0, "res_id": 5851}, DIFFERS),
    ("not every id given", None, {"obj_id": 3311}, NONE),
    ("does not parse", "obj_id=3311&res_id=5850", "obj_id=3311", NONE),
]

EXECUTE_FORMS = [
    ("body as JSON text", None, '{"args": "reboot=10.0.0.1"}', AGREES),
    (
        "body as an object",
        {"obj_id": "3", "obj_inst_id": "0", "res_id": "4"},
        {"args": "reboot=10.0.0.1"},
        AGREES,
    ),
    ("bare args text", None, "reboot=10.0.0.1", AGREES),
    ("other args in a body", None, {"args": "factory-reset"}, DIFFERS),
    (
        "another resource",
        {"obj_id": 3, "obj_inst_id": 0, "res_id": 5},
        '{"args": "reboot=10.0.0.1"}',
        DIFFERS,
    ),
    # a bare text that differs may be a form we do not know: no evidence, never "differs"
    ("another bare text", None, "factory-reset", NONE),
    ("ids agree, the args are unproven", {"obj_id": 3, "obj_inst_id": 0, "res_id": 4}, None, NONE),
]


def detail(args: object, content: object) -> dict[str, object]:
    return {"cmd_uuid": "u", "imei": IMEI, "args": args, "content": content}


@pytest.mark.parametrize(
    ("args", "content", "verdict"), [f[1:] for f in WRITE_FORMS], ids=[f[0] for f in WRITE_FORMS]
)
def test_write_detail_forms(args: object, content: object, verdict: Verdict) -> None:
    assert judge(detail(args, content), WRITE).verdict is verdict


@pytest.mark.parametrize(
    ("args", "content", "verdict"), [f[1:] for f in READ_FORMS], ids=[f[0] for f in READ_FORMS]
)
def test_read_detail_forms(args: object, content: object, verdict: Verdict) -> None:
    assert judge(detail(args, content), READ).verdict is verdict


@pytest.mark.parametrize(
    ("args", "content", "verdict"),
    [f[1:] for f in EXECUTE_FORMS],
    ids=[f[0] for f in EXECUTE_FORMS],
)
def test_execute_detail_forms(args: object, content: object, verdict: Verdict) -> None:
    assert judge(detail(args, content), EXECUTE).verdict is verdict


def test_an_execute_sent_without_args() -> None:
    """Its ids are the whole command; a body with args is someone else's."""
    ids = {"obj_id": "3", "obj_inst_id": "0", "res_id": "4"}
    assert judge(detail(ids, None), BARE_EXECUTE).verdict is AGREES
    assert judge(detail(ids, {"args": "x"}), BARE_EXECUTE).verdict is DIFFERS


def test_numbers_beyond_reason_in_a_detail_are_other_values_never_a_crash() -> None:
    """A res_id of 5000 digits (an int Python will not print) or values whose difference
    overflows the decimal context: another command, not a traceback in reconcile."""
    huge_id = {"data": [{"res_id": "1e5000", "val": 1}, {"res_id": 5750, "type": 1, "val": "0A1B"}]}
    assert judge(detail(None, huge_id), WRITE).verdict is DIFFERS
    assert judge(detail(None, {"1e5000": 1, "5750": "0A1B"}), WRITE).verdict is DIFFERS
    assert compare("9e999999", "-9e999999") is False


def test_the_detail_names_the_reason() -> None:
    assert "does not parse" in judge(detail("?", "data=1"), WRITE).why
    assert (
        "content as res_id→val pairs" in judge(detail(None, {"5850": 9, "5750": "0A1B"}), WRITE).why
    )


@pytest.mark.parametrize(
    ("theirs", "ours", "equal"),
    [
        ("1", 1, True),
        (1, 1.0, True),
        (" 2.50", 2.5, True),
        ("1e3", 1000, True),
        (2, 1, False),
        ("on", "on", True),
        ("on", "On", False),
        (None, None, True),
        ("", 0, False),
        # a boolean: its JSON text is the same value; 1/0 may be it rewritten, or a number
        ("true", True, True),
        ("FALSE", False, True),
        (True, "true", True),
        ("false", True, False),
        (1, True, None),
        ("0", False, None),
        (0, True, False),
        (True, 1, None),
        (7, True, False),
        ("yes", True, None),
        # numbers equal to a float's (or a float32's) precision cannot be told apart
        (0.10000000149011612, 0.1, None),
        (1.2345678901234567e19, 12345678901234567890, None),
        (0.2, 0.1, False),
        ("100", 101, False),
        # white space a server may have trimmed
        ("on ", "on", None),
        # null where we sent a value: nothing said
        (None, 5, None),
    ],
)
def test_a_value_compares_in_every_form_the_platform_may_write_it(
    theirs: object, ours: object, equal: bool | None
) -> None:
    """True: the same value rewritten; False: another value; None: cannot tell (no evidence)."""
    assert compare(theirs, ours) is equal
    assert same_value(theirs, ours) is (equal is True)


@pytest.mark.parametrize(
    ("theirs", "ours", "kind", "equal"),
    [
        ("0a1b", "0A1B", 1, True),
        ("0a1c", "0A1B", 1, False),
        ("Chs=", "0A1B", 1, None),  # not hex: base64 perhaps, cannot be compared
        (1700000000, 1700000000, 2, True),
        ("1700000000", 1700000000, 2, True),
        (1700000000000, 1700000000, 2, True),  # milliseconds
        ("2023-11-15 06:13:20", 1700000000, 2, True),  # a written date, UTC+8
        ("2023-11-14T22:13:20Z", 1700000000, 2, True),
        ("2023-11-15 07:13:20", 1700000000, 2, None),  # may be another zone: not a difference
        (1700000001, 1700000000, 2, False),
        ("soon", 1700000000, 2, None),
    ],
)
def test_opaque_and_time_values_compare_in_their_forms(
    theirs: object, ours: object, kind: int, equal: bool | None
) -> None:
    assert compare(theirs, ours, kind=kind) is equal


def test_opaque_hex_compares_without_case_only_when_opaque() -> None:
    assert same_value("0a1b", "0A1B", opaque=True)
    assert not same_value("0a1b", "0A1B")


def test_parse_field_reads_text_but_keeps_what_is_not_json() -> None:
    assert parse_field('{"a": 1}') == {"a": 1}
    assert parse_field('"[1, 2]"') == [1, 2]
    assert parse_field('"reboot"') == "reboot"
    assert parse_field({"a": 1}) == {"a": 1}
    assert not isinstance(parse_field("reboot"), str | dict | list)
    # nested deeper than the JSON reader recurses: kept as text, never a RecursionError
    assert not isinstance(parse_field("[" * 5000 + "]" * 5000), str | dict | list)


@pytest.mark.parametrize(
    ("send_status", "state"),
    [
        (3, "sent"),
        ("3", "sent"),
        (" 5 ", "success"),
        (9, "code 9"),
        ("", "undefined"),
        (None, "undefined"),
        (True, "undefined"),
    ],
)
def test_a_detail_send_status_is_read_as_a_number_or_as_text(
    send_status: object, state: str
) -> None:
    """The pages write counts as text too ("remain": "3"): send_status "3" is state 3, not undefined."""
    row = Queued(
        imei="865820040000155", command=0, op="write", fleet="f", uuid="u", send_status=None
    )
    assert state == delivery_from({"send_status": send_status}, row).send_status


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("2017-09-08T08:55:14Z", "2017-09-08 16:55:14"),
        (1504860914000, "2017-09-08 16:55:14"),
        # in UTC+8 beyond the calendar's ends: kept as written, never an OverflowError
        ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59-12:00"),
        ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+14:00"),
        ("0001-01-01 00:00:00", "0001-01-01 00:00:00"),  # the year in four digits
    ],
)
def test_a_detail_time_is_kept_in_the_pages_form_or_as_written(written: object, kept: str) -> None:
    row = Queued(
        imei="865820040000155", command=0, op="write", fleet="f", uuid="u", send_status=None
    )
    delivered = delivery_from({"send_status": 5, "send_time": written}, row)
    assert delivered.send_time == kept


# A write of a boolean, a float, an opaque and a Time value: the values a server is most
# likely to rewrite.
TYPED_DATA: list[dict[str, object]] = [
    {"res_id": 5850, "val": True},
    {"res_id": 5700, "val": 60.5},
    {"res_id": 5750, "type": 1, "val": "0A1B"},
    {"res_id": 5900, "type": 2, "val": 1700000000},
]
TYPED = Request(
    0,
    "write",
    IMEI,
    (("imei", IMEI), ("obj_id", "3311"), ("obj_inst_id", "0"), ("mode", "1")),
    (),
    json.dumps({"data": TYPED_DATA}, separators=(",", ":")).encode(),
)


def typed(**changes: dict[str, object]) -> list[dict[str, object]]:
    """TYPED_DATA with some elements' fields replaced: ``{"5850": {"val": "true"}}``."""
    out = []
    for element in TYPED_DATA:
        element = dict(element)
        element.update(changes.get(f"r{element['res_id']}", {}))
        out.append(element)
    return out


TYPED_FORMS = [
    ("as sent", typed(), AGREES),
    (
        "every value as text",
        typed(
            r5850={"val": "true", "res_id": "5850"},
            r5700={"val": "60.5"},
            r5750={"type": "1", "val": "0a1b"},
            r5900={"type": "2", "val": "1700000000"},
        ),
        AGREES,
    ),
    ("res_id written as 5850.0", typed(r5850={"res_id": 5850.0}), AGREES),
    ("types written as names", typed(r5750={"type": "Opaque"}, r5900={"type": "TIME"}), AGREES),
    ("the Time value in milliseconds", typed(r5900={"val": 1700000000000}), AGREES),
    ("the Time value as a date (UTC+8)", typed(r5900={"val": "2023-11-15 06:13:20"}), AGREES),
    # rewritten in a way that could be ours or not: never "differs", never "agrees"
    ("the boolean as 1", typed(r5850={"val": 1}), NONE),
    ("the float through a float32", typed(r5700={"val": 60.500001}), NONE),
    ("the opaque value in base64", typed(r5750={"val": "Chs="}), NONE),
    ("a type name we do not know", typed(r5750={"type": "bytes"}), NONE),
    ("the Time as a date in another zone", typed(r5900={"val": "2023-11-15 07:13:20"}), NONE),
    # plainly another command
    ("the boolean false", typed(r5850={"val": "false"}), DIFFERS),
    ("the boolean as 0", typed(r5850={"val": 0}), DIFFERS),
    ("another float", typed(r5700={"val": 61.5}), DIFFERS),
    ("another opaque value", typed(r5750={"val": "0a1c"}), DIFFERS),
    ("another type", typed(r5750={"type": 2}), DIFFERS),
    # one sure difference decides, whatever else is unsure
    ("unsure and different", typed(r5850={"val": 1}, r5700={"val": 7}), DIFFERS),
]


@pytest.mark.parametrize(
    ("content", "verdict"), [f[1:] for f in TYPED_FORMS], ids=[f[0] for f in TYPED_FORMS]
)
def test_typed_values_in_every_form(content: object, verdict: Verdict) -> None:
    assert judge(detail(None, {"data": content}), TYPED).verdict is verdict
    assert judge(detail(None, json.dumps(content)), TYPED).verdict is verdict


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        # the call's parameters as the query string they were
        (f"imei={IMEI}&obj_id=3311&obj_inst_id=0&res_id=5850&expired_time=x", AGREES),
        ("?obj_id=3311&obj_inst_id=0&res_id=5850", AGREES),
        ("obj_id=3311&obj_inst_id=0&res_id=5851", DIFFERS),
        ("imei=865820050000012&obj_id=3311&obj_inst_id=0&res_id=5850", DIFFERS),
        # a name given twice cannot be read
        ("obj_id=3311&obj_id=3312&obj_inst_id=0&res_id=5850", NONE),
        # null where a value was sent: nothing said, not a difference
        ({"obj_id": 3311, "obj_inst_id": None, "res_id": 5850}, NONE),
        # the device written as a number
        ({"imei": int(IMEI), "obj_id": 3311, "obj_inst_id": 0, "res_id": 5850}, AGREES),
    ],
)
def test_a_reads_parameters_in_every_form(args: object, verdict: Verdict) -> None:
    assert judge(detail(args, None), READ).verdict is verdict


def test_an_execute_whose_args_text_holds_json_is_compared_parsed() -> None:
    request = Request(0, "execute", IMEI, EXECUTE.head, (), b'{"args":"{\\"delay\\":5}"}')
    assert judge(detail(None, {"args": {"delay": 5}}), request).verdict is AGREES
    assert judge(detail(None, {"args": {"delay": 6}}), request).verdict is DIFFERS
    assert judge(detail(None, {"args": ["delay"]}), request).verdict is DIFFERS


def test_a_field_with_a_byte_order_mark_still_parses() -> None:
    assert parse_field('\ufeff{"a": 1}') == {"a": 1}
