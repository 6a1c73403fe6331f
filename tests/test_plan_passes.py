"""The passes after the check keep what it learned: duplicates are not looked up again,
unless a fleet file changed since the check read it."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.check import check_job
from dispatcher.plan import DeviceWork, Op, Request
from dispatcher.problems import Problems
from dispatcher.seen import SeenImeis
from tests.helpers import imei
from tests.jobtools import write

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

JOB = """\
version: 1
name: t
fleets:
  - name: a
    csv: a.csv
  - name: b
    csv: b.csv
window:
  expired_time: +1h
commands:
  - write: {obj_id: 3300, obj_inst_id: 0, mode: 1, data: [{res_id: 5750, val: "{v}"}]}
"""


def fleets(workdir: Path, a: list[int], b: list[int]) -> None:
    write(workdir, "job.yaml", JOB)
    write(workdir, "a.csv", "imei,v\n" + "".join(f"{imei(i)},a{i}\n" for i in a))
    write(workdir, "b.csv", "imei,v\n" + "".join(f"{imei(i)},b{i}\n" for i in b))


def listed(workdir: Path, a: list[int], b: list[int]) -> list[tuple[str, bytes | None]]:
    """What a full de-duplication says: every IMEI once, its first row's body."""
    out: dict[str, bytes] = {}
    for name, rows in (("a", a), ("b", b)):
        for i in rows:
            out.setdefault(imei(i), f'{{"data":[{{"res_id":5750,"val":"{name}{i}"}}]}}'.encode())
    return list(out.items())


def stream(plan_devices: Iterable[DeviceWork]) -> list[tuple[str, bytes | None]]:
    return [(w.device.imei, w.requests[0].body) for w in plan_devices]


class NoLookups:
    def __init__(self) -> None:
        raise AssertionError("a pass after the check looked duplicates up again")


def test_later_passes_skip_the_duplicates_the_check_found(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeded fleets with duplicates within and across files, spanning several lookup batches."""
    rng = random.Random(15)
    a = [rng.randrange(3000) for _ in range(2500)]
    b = [rng.randrange(3000) for _ in range(1500)]
    fleets(workdir, a, b)
    checked = check_job(workdir / "job.yaml", now=NOW)
    expected = listed(workdir, a, b)
    assert len(expected) == checked.stats.devices
    known = checked.plan.known
    assert known is not None
    assert len(a) + len(b) - len(expected) == len(known.duplicates) == checked.stats.duplicates
    monkeypatch.setattr("dispatcher.plan.SeenImeis", NoLookups)
    assert expected == stream(checked.plan.devices(Problems()))


def test_a_fleet_file_changed_after_the_check_is_de_duplicated_again(workdir: Path) -> None:
    """A row added after the check repeats an IMEI: the later pass looks every row up again."""
    fleets(workdir, [1, 2, 3], [4, 5])
    checked = check_job(workdir / "job.yaml", now=NOW)
    assert checked.plan.known is not None and not checked.plan.known.duplicates
    path = workdir / "b.csv"
    before = path.stat()
    path.write_text(f"imei,v\n{imei(4)},b4\n{imei(5)},b5\n{imei(1)},b1\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    devices = stream(checked.plan.devices(Problems()))
    assert listed(workdir, [1, 2, 3], [4, 5, 1]) == devices


def test_a_batch_lookup_says_what_one_lookup_at_a_time_says() -> None:
    rng = random.Random(7)
    rows = [(imei(rng.randrange(400)), n) for n in range(1200)]
    with SeenImeis() as one, SeenImeis() as many:
        singly = [one.add(i, p) for i, p in rows]
        batched = many.add_many(rows[:700]) + many.add_many(rows[700:])
    assert singly == batched
    assert any(x is not None for x in batched)


def test_a_batch_lookup_with_shared_places_says_what_one_lookup_at_a_time_says() -> None:
    """Rows may share a place: a flow list (``imeis: [a, b, b]``) is one line. A later
    row of a device is a duplicate even where its place is the first row's."""
    rng = random.Random(11)
    rows = [(imei(rng.randrange(300)), n // 100) for n in range(1200)]
    with SeenImeis() as one, SeenImeis() as many:
        singly = [one.add(i, p) for i, p in rows]
        batched = many.add_many(rows[:700]) + many.add_many(rows[700:])
    assert singly == batched


def test_a_device_listed_twice_on_one_line_is_sent_once(tmp_path: Path) -> None:
    """``imeis: [z, x, x]`` after another fleet's z: x once, never yielded twice (which
    would hand the device to two workers: commanded twice)."""
    z, x = imei(1), imei(2)
    write(
        tmp_path,
        "job.yaml",
        "version: 1\nname: t\nfleets:\n"
        f"  - name: a\n    imeis: [{z}]\n"
        f"  - name: b\n    imeis: [{z}, {x}, {x}]\n"
        "window:\n  expired_time: +1h\n"
        "commands:\n  - read: {obj_id: 3300, obj_inst_id: 0, res_id: 5700}\n",
    )
    checked = check_job(tmp_path / "job.yaml", now=NOW)
    assert (2, 2) == (checked.stats.devices, checked.stats.duplicates)
    devices = [w.device.imei for w in checked.plan.devices(Problems())]
    assert [z, x] == devices


def spelled_out(r: Request) -> str:
    """The request hash as the ledger has always stored it (length-prefixed pairs, then the body)."""
    text = "".join(
        f"{len(k)}:{k}{len(v)}:{v}" for k, v in (("op", r.op), *r.head, ("|", ""), *r.tail)
    )
    h = hashlib.blake2b(text.encode(), digest_size=16)
    h.update(r.body or b"")
    return h.hexdigest()


def test_the_request_hash_is_what_ledgers_already_hold() -> None:
    """The shared parts are encoded once per command; the hash must not change for it."""
    rng = random.Random(1115)
    ops: list[Op] = ["write", "read", "execute"]
    for _ in range(500):
        device = imei(rng.randrange(10**6))
        params = tuple((f"k{j}", str(rng.randrange(1000))) for j in range(rng.randrange(4)))
        tail = tuple((f"t{j}", "x" * rng.randrange(5)) for j in range(rng.randrange(3)))
        head = (("imei", device), *params) if rng.random() < 0.9 else params
        body = rng.choice([None, b"{}", b'{"data":[{"res_id":1,"val":"a"}]}'])
        request = Request(rng.randrange(3), rng.choice(ops), device, head, tail, body)
        assert spelled_out(request) == request.digest
