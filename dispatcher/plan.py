"""The plan: a job turned into a stream of devices, each with its rendered requests.

``validate``, ``run --dry-run`` and ``run`` all go through here, so what is checked
is exactly what is sent. Rendering is the bytes-to-be: query parameters in the
contract's names and order, and the compact JSON body of a write.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from dispatcher.fleets import SETTLED_ROW, Device, csv_path, iter_fleet
from dispatcher.jobfile import (
    HEX_TEXT,
    MAX_BODY_BYTES,
    LoadedJob,
)
from dispatcher.planstats import FleetCount, PlanStats
from dispatcher.problems import Problems
from dispatcher.seen import (
    DEDUP_BATCH,
    MAX_KNOWN_DUPLICATES,
    Known,
    SeenImeis,
    file_stamps,
)
from dispatcher.template import Op as Op
from dispatcher.template import Template as _Template
from dispatcher.timewindow import Window, load_zone, parse_time_spec, resolve_window, wire_time
from dispatcher.yamlfile import format_path

Params = tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=256)
def _shared_text(op: str, params: Params, tail: Params) -> tuple[str, str]:
    """A request digest's text before and after the IMEI pair, the same for every device."""
    before = f"2:op{len(op)}:{op}"
    after = "".join(f"{len(k)}:{k}{len(v)}:{v}" for k, v in (*params, ("|", ""), *tail))
    return before, after


@dataclass(frozen=True, slots=True)
class Request:
    """One command for one device, rendered; the window's times are added at send time.

    Its method and path are the wire contract's: ``onenet.render`` gives them.
    """

    index: int
    op: Op
    imei: str
    head: Params  # imei, object ids, mode: everything before the times
    tail: Params  # retry, timeout, trigger_msg when the job sets them
    body: bytes | None

    @property
    def digest(self) -> str:
        """A hash of what this request sends, times aside (a run's window never changes).

        Stored with the request's ledger row: a resume whose fleet files render another
        request for a device already sent is found before anything leaves.
        """
        # Length-prefixed, so no value's text can pass for another split of the pairs.
        # Computed twice per request on a resume (the comparison and the registration):
        # the pairs every device of a command shares are encoded once (_shared_text).
        head = self.head
        key, value = head[0] if head else ("", "")
        if key == "imei":
            before, after = _shared_text(self.op, head[1:], self.tail)
            text = f"{before}4:imei{len(value)}:{value}{after}"
        else:
            text = "".join(
                f"{len(k)}:{k}{len(v)}:{v}"
                for k, v in (("op", self.op), *self.head, ("|", ""), *self.tail)
            )
        h = hashlib.blake2b(text.encode(), digest_size=16)
        h.update(self.body or b"")
        return h.hexdigest()

    def query(self, window: Window, now: datetime) -> list[tuple[str, str]]:
        """The query string's pairs as sent at ``now``.

        ``valid_time`` is left out when the window starts at the platform's "now", and
        also when it has already passed (a resumed run): the platform refuses a read
        whose valid_time is not later than its own clock.
        """
        pairs = list(self.head)
        if window.valid is not None and window.valid > now:
            pairs.append(("valid_time", wire_time(window.valid)))
        pairs.append(("expired_time", wire_time(window.expired)))
        pairs.extend(self.tail)
        return pairs


@dataclass(frozen=True, slots=True)
class DeviceWork:
    """A device and its requests, in the job's order."""

    device: Device
    # empty for a device a resume found settled: not rendered, nothing to send (``devices``)
    requests: tuple[Request, ...]


def _skip(
    settled: Callable[[int, str], bool],
    known: Known,
    index: int,
    stats: PlanStats,
    position: int,
    imei: str,
) -> bool:
    """A device (the position-th of fleet ``index``, the pass's next) a resume found settled;
    the pass's count so far is its ordinal. A duplicate row is never the settled one."""
    return (index, position) not in known.duplicates and settled(stats.devices, imei)


def _skip_unique(
    settled: Callable[[int, str], bool], stats: PlanStats, position: int, imei: str
) -> bool:
    """``_skip`` for a job without duplicates (the usual one): one call per row fewer."""
    return settled(stats.devices, imei)


class Plan:
    """A checked job ready to stream; ``problems`` collects what each pass finds."""

    def __init__(self, loaded: LoadedJob, *, strict: bool = False) -> None:
        self.loaded = loaded
        self.job = loaded.job
        self.strict = strict
        self.templates = [
            _Template(i, c, self.job.platform) for i, c in enumerate(self.job.commands)
        ]
        self.zone = load_zone(self.job.window.timezone)
        self.valid_spec = parse_time_spec(self.job.window.valid_time, self.zone)
        self.expired_spec = parse_time_spec(self.job.window.expired_time, self.zone)
        self.known: Known | None = None  # set by the check pass
        self._places: dict[int, tuple[str, str]] = {}  # fleet index: its file and name

    @property
    def commands_per_device(self) -> int:
        return len(self.templates)

    def window_at(self, start: datetime) -> Window:
        """The window resolved against a run's first start (TimeSpecError if it is wrong)."""
        return resolve_window(self.valid_spec, self.expired_spec, start)

    def devices(
        self,
        problems: Problems,
        stats: PlanStats | None = None,
        settled: Callable[[int, str], bool] | None = None,
    ) -> Iterator[DeviceWork]:
        """Every device of every fleet once, in job order, with its rendered requests.

        Devices with a problem are reported to ``problems`` and left out; a caller
        that must send nothing when anything is wrong makes one full pass first.

        ``settled(ordinal, imei)``: True for a device (the ordinal-th yielded) whose rows
        a resume found all settled; it is yielded without requests, not rendered. Only
        on a pass after the check, with the check's duplicate positions still valid.
        """
        doc = self.loaded.doc
        for t in self.templates:
            # A body without variables is the same for every device: one problem, at the job.
            if t.static_body is not None and len(t.static_body) > MAX_BODY_BYTES:
                problems.error(
                    doc.file,
                    doc.line_of(t.body_path),
                    format_path(t.body_path),
                    f"body is {len(t.static_body)} bytes; the platform takes at most {MAX_BODY_BYTES}",
                )
        # The check pass (the one given ``stats``) reads, checks and de-duplicates every
        # row; the passes after it (the resume's comparison, the engine's producer) keep
        # what it learned instead of de-duplicating again: the positions of the
        # duplicates, valid while the fleet files are the ones it read (size and mtime).
        checking = stats is not None
        stats = stats if stats is not None else PlanStats()
        known = None if checking else self.known
        if known is not None and known.stamps != self._stamps():
            known = None  # a fleet file changed since the check: de-duplicate again
        stamps = self._stamps() if checking else None
        duplicates: set[tuple[int, int]] = set()
        seen = SeenImeis() if known is None else None
        try:
            for index, spec in enumerate(self.job.fleets):
                count = FleetCount(spec.name)
                stats.fleets.append(count)
                names = sorted(
                    {n for t in self.templates for n, _ in t.names} - set(spec.variables)
                )
                if spec.imeis is not None and names:
                    problems.error(
                        doc.file,
                        self.loaded.fleet_line(index),
                        f"fleets[{index}]",
                        f'fleet "{spec.name}" lists bare IMEIs, but the commands use variables '
                        f"{', '.join('{' + n + '}' for n in names)}; give them in the fleet's variables, or use devices or csv",
                    )
                    continue
                missing_reported: set[str] = set()
                batch: list[tuple[int, Device, tuple[Request, ...]]] = []
                skip = None
                if settled is not None and known is not None:
                    skip = (
                        functools.partial(_skip, settled, known, index, stats)
                        if known.duplicates
                        else functools.partial(_skip_unique, settled, stats)
                    )
                for position, device in enumerate(
                    iter_fleet(
                        spec,
                        index,
                        self.loaded.path,
                        doc,
                        problems,
                        strict=self.strict,
                        settled=skip,  # a CSV row found settled: not even checked again
                    )
                ):
                    if skip is not None and (
                        device.variables is SETTLED_ROW  # a CSV row iter_fleet found settled
                        if spec.csv is not None
                        else skip(position, device.imei)
                    ):
                        count.devices += 1
                        stats.devices += 1
                        yield DeviceWork(device, ())
                        continue
                    requests = self._render(device, index, problems, missing_reported)
                    if requests is None:
                        continue
                    if known is not None:
                        if (index, position) in known.duplicates:
                            count.duplicates += 1
                            stats.duplicates += 1
                            continue
                        count.devices += 1
                        stats.devices += 1
                        yield DeviceWork(device, requests)
                        continue
                    batch.append((position, device, requests))
                    if len(batch) >= DEDUP_BATCH:
                        yield from self._dedup(
                            batch, index, seen, count, stats, problems, duplicates
                        )
                        batch = []
                if batch:
                    yield from self._dedup(batch, index, seen, count, stats, problems, duplicates)
        finally:
            if seen is not None:
                seen.close()
        if checking and len(duplicates) <= MAX_KNOWN_DUPLICATES:
            self.known = Known(frozenset(duplicates), stamps)

    def _stamps(self) -> tuple[tuple[int, int], ...] | None:
        return file_stamps(csv_path(self.loaded.path, f) for f in self.job.fleets if f.csv)

    def _dedup(
        self,
        batch: list[tuple[int, Device, tuple[Request, ...]]],
        index: int,
        seen: SeenImeis | None,
        count: FleetCount,
        stats: PlanStats,
        problems: Problems,
        duplicates: set[tuple[int, int]],
    ) -> Iterator[DeviceWork]:
        """A batch of rendered devices, each once across the job (one lookup per batch)."""
        assert seen is not None
        # a place is (fleet, line) in one number; a fleet's devices share its file and name
        first_device = batch[0][1]
        self._places[index] = (first_device.file, first_device.fleet)
        firsts = seen.add_many([(d.imei, index << 32 | d.line) for _, d, _ in batch])
        for (position, device, requests), place in zip(batch, firsts, strict=True):
            if place is not None:
                file, fleet = self._places[place >> 32]
                first = f"{file}:{place & 0xFFFFFFFF} (fleet {fleet})"
                count.duplicates += 1
                stats.duplicates += 1
                duplicates.add((index, position))
                problems.warning(
                    device.file,
                    device.line,
                    None,
                    f'imei "{device.imei}" already listed at {first}; sent once',
                )
                continue
            count.devices += 1
            stats.devices += 1
            yield DeviceWork(device, requests)

    def _render(
        self, device: Device, fleet_index: int, problems: Problems, missing_reported: set[str]
    ) -> tuple[Request, ...] | None:
        ok = True
        out: list[Request] = []
        for t in self.templates:
            for name, where in t.names:
                value = device.variables.get(name)
                if value:
                    continue
                ok = False
                if device.from_csv and value is None:
                    # A missing column is one problem of the file, not one per row.
                    if name not in missing_reported:
                        missing_reported.add(name)
                        doc = self.loaded.doc
                        problems.error(
                            doc.file,
                            doc.line_of(("fleets", fleet_index, "csv")),
                            f"fleets[{fleet_index}].csv",
                            f'"{self.job.fleets[fleet_index].csv}" has no column "{name}" (used in {where})',
                        )
                elif value is None:
                    problems.error(
                        device.file,
                        device.line,
                        where,
                        f'device {device.imei} has no variable "{name}"',
                    )
                else:
                    problems.error(
                        device.file,
                        device.line,
                        where,
                        f'device {device.imei}: variable "{name}" is empty',
                    )
            if not ok:
                continue
            body = t.render(device)
            if body is not None and t.filled_opaque:
                ok = self._check_filled(t, body, device, problems) and ok
            if body is not None and len(body) > MAX_BODY_BYTES:
                ok = False
                if not t.names:
                    continue  # reported once, at the job
                problems.error(
                    device.file,
                    device.line,
                    format_path(t.body_path),
                    f"body is {len(body)} bytes for device {device.imei}; the platform takes at most {MAX_BODY_BYTES}",
                )
            out.append(
                Request(
                    t.index, t.op, device.imei, (("imei", device.imei), *t.params), t.tail, body
                )
            )
        return tuple(out) if ok else None

    def _check_filled(self, t: _Template, body: bytes, device: Device, problems: Problems) -> bool:
        assert t.command.write is not None
        data = json.loads(body)["data"]
        ok = True
        for j, item in enumerate(t.command.write.data):
            if item.type == 1 and not HEX_TEXT.fullmatch(data[j]["val"]):
                problems.error(
                    device.file,
                    device.line,
                    f"commands[{t.index}].write.data[{j}].val",
                    f'device {device.imei}: type 1 (Opaque) needs an even-length hex string, got "{data[j]["val"]}"',
                )
                ok = False
        return ok
