"""Devices that wake, take their cached commands and answer them: the delivery model.

Each device wakes every `wake_interval` simulated seconds, at a phase drawn per IMEI
from the seed, and sends the `wake_uplink` message. At a wake W it receives, in
creation order, each command that is waiting, valid (valid_time <= W), not expired
and whose trigger_msg includes that uplink. It answers each one `confirm_delay`
after it was sent, and the platform sends the next one then: a command is sent
(send_status 3) from its send_time, confirmed (5 or 6) from its confirm_time. A
waiting command past its expired_time becomes expired (4) at a wake, or whenever a
request looks at it.

Nothing runs in the background. Every platform request, and every /_sim/ view,
first calls `catch_up(now)`, which plays every wake and answer due up to `now` in
time order; the clock only moves forward, so nothing is played twice. A heap holds
one entry per device that has something deliverable — the wake at which it will
next be served — so however far the clock jumps, a pass costs one heap pop and one
scan of the device's short command list per wake that delivers something.
Offline devices, and commands no uplink of theirs can trigger, never reach the heap:
they wait until they expire.

Fates are hashed, not drawn in sequence: whether a device's n-th command fails, with
which confirm_status, and the device's phase depend only on the seed, the IMEI and
n. A seeded run ends the same whatever the order and timing of its requests.
"""

from __future__ import annotations

import heapq
import math
import secrets
from dataclasses import dataclass
from typing import Any

from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.device import Resources
from dispatcher.simulator.faults import hashed_chance, hashed_unit
from dispatcher.simulator.state import (
    EXPIRED,
    FAILED,
    SENT,
    SUCCESS,
    WAIT,
    CommandRecord,
    Record,
)


@dataclass(slots=True)
class _Answer:
    """A device's answer to a sent command, applied at its confirm_time."""

    command: CommandRecord
    status: int
    confirm_status: str
    cmd_result: Any


class Delivery:
    __slots__ = (
        "_answers",
        "_config",
        "_horizon",
        "_next",
        "_offline_seen",
        "_plan",
        "_record",
        "_unseeded_salt",
        "_wakes",
        "resources",
    )

    def __init__(self, config: SimulatorConfig, record: Record) -> None:
        self._config = config
        self._record = record
        self.resources = Resources()
        self.reset()

    def __repr__(self) -> str:
        return (
            f"Delivery(horizon={self._horizon!r}, scheduled={len(self._next)}, "
            f"answers_due={len(self._answers)})"
        )

    def reset(self) -> None:
        self.resources.clear()
        self._wakes: list[tuple[float, str]] = []
        self._next: dict[str, float] = {}  # the one live heap entry per device
        self._answers: list[tuple[float, int, _Answer]] = []
        self._horizon: float | None = None  # everything due up to here has been played
        self._plan: tuple[float, int, str, float] | None = None
        self._offline_seen: set[str] = set()
        self._unseeded_salt = secrets.token_hex(8)

    # -- driving -----------------------------------------------------------------------

    def catch_up(self, now: float) -> None:
        """Play every wake and answer due up to `now`."""
        if not self._config.delivery:
            # Frozen: whatever was due while off is not replayed when it comes back on.
            self._horizon = None
            return
        horizon = self._horizon
        if horizon is None:
            horizon = now
            self._replan(now)
        elif self._plan_changed():
            self._replan(horizon)
        if now <= horizon:
            return
        wakes, scheduled = self._wakes, self._next
        while wakes and wakes[0][0] <= now:
            at, imei = heapq.heappop(wakes)
            if scheduled.get(imei) != at:
                continue  # superseded by an earlier wake pushed later
            del scheduled[imei]
            self._wake(imei, at, now)
        answers = self._answers
        while answers and answers[0][0] <= now:
            confirm_at, _, answer = heapq.heappop(answers)
            self._confirm(answer, confirm_at)
        self._horizon = now

    def queued(self, command: CommandRecord) -> None:
        """A new command: its device may now need an earlier wake."""
        if self._config.delivery and self._horizon is not None:
            self._schedule(command.imei, [command], self._horizon)

    # -- views -------------------------------------------------------------------------

    def online(self, imei: str) -> bool:
        config = self._config
        if imei in config.offline_imeis:
            return False
        return not hashed_chance(config.offline_rate, self._salt(), "offline", imei)

    def next_wake(self, imei: str) -> float | None:
        """The wake at which the device will next be served something, if any."""
        return self._next.get(imei) if self._config.delivery else None

    # -- scheduling --------------------------------------------------------------------

    def _salt(self) -> str:
        seed = self._config.seed
        return self._unseeded_salt if seed is None else str(seed)

    def _plan_changed(self) -> bool:
        config = self._config
        return self._plan != self._plan_key() or config.offline_imeis != self._offline_seen

    def _plan_key(self) -> tuple[float, int, str, float]:
        config = self._config
        return (config.wake_interval, config.wake_uplink, self._salt(), config.offline_rate)

    def _replan(self, after: float) -> None:
        """Schedule every device afresh: a knob that shapes the schedule has changed."""
        self._plan = self._plan_key()
        self._offline_seen = set(self._config.offline_imeis)
        self._horizon = after
        self._next = {}
        for imei, commands in self._record.devices():
            at = self._next_wake(imei, commands, after)
            if at is not None:
                self._next[imei] = at
        self._wakes = [(at, imei) for imei, at in self._next.items()]
        heapq.heapify(self._wakes)

    def _schedule(self, imei: str, commands: list[CommandRecord], after: float) -> None:
        at = self._next_wake(imei, commands, after)
        if at is None:
            return
        current = self._next.get(imei)
        if current is not None and current <= at:
            return
        self._next[imei] = at
        heapq.heappush(self._wakes, (at, imei))

    def _next_wake(self, imei: str, commands: list[CommandRecord], after: float) -> float | None:
        """The first wake after `after` at which one of `commands` would be delivered."""
        config = self._config
        uplink = config.wake_uplink
        best: float | None = None
        phase: float | None = None
        for command in commands:
            if command.send_status != WAIT or not command.trigger & uplink:
                continue
            if phase is None:
                if not self.online(imei):
                    return None
                phase = hashed_unit(self._salt(), "phase", imei) * config.wake_interval
            at = _wake_at(phase, config.wake_interval, after, command.valid_at)
            if at < command.expires_at and (best is None or at < best):
                best = at
        return best

    # -- a wake and its answers ----------------------------------------------------------

    def _wake(self, imei: str, at: float, now: float) -> None:
        config = self._config
        uplink, delay = config.wake_uplink, config.confirm_delay
        commands = self._record.of_device(imei)
        send_at = at
        for index, command in enumerate(commands):
            if command.send_status != WAIT:
                continue
            if command.expires_at <= at:
                self._record.set_status(command, EXPIRED)
            elif command.trigger & uplink and command.valid_at <= at:
                if command.expires_at <= send_at:  # its turn came too late
                    self._record.set_status(command, EXPIRED)
                    continue
                self._send(command, index, send_at, now)
                send_at += delay
        following = self._next_wake(imei, commands, at)
        if following is not None:
            self._next[imei] = following
            heapq.heappush(self._wakes, (following, imei))

    def _send(self, command: CommandRecord, index: int, at: float, now: float) -> None:
        config, salt, n = self._config, self._salt(), str(index)
        self._record.set_status(command, SENT)
        command.sent_at = at
        if hashed_chance(config.confirm_fail_rate, salt, "fail", command.imei, n):
            statuses = config.confirm_fail_statuses
            pick = int(hashed_unit(salt, "status", command.imei, n) * len(statuses))
            answer = _Answer(command, FAILED, statuses[pick], None)
        else:
            answer = _Answer(command, SUCCESS, "SUCCESS", self._perform(command))
        confirm_at = at + config.confirm_delay
        if confirm_at <= now:
            self._confirm(answer, confirm_at)
        else:
            heapq.heappush(self._answers, (confirm_at, command.seq, answer))

    def _confirm(self, answer: _Answer, at: float) -> None:
        command = answer.command
        self._record.set_status(command, answer.status)
        command.confirmed_at = at
        command.confirm_status = answer.confirm_status
        command.cmd_result = answer.cmd_result

    def _perform(self, command: CommandRecord) -> Any:
        """What the device does on receiving the command; a read's cmd_result."""
        if command.op == "execute":
            return None  # nothing the simulator models changes
        ids = command.int_params(_IDS)
        if command.op == "write":
            self.resources.write(
                command.imei, ids["obj_id"], ids["obj_inst_id"], ids["mode"], command.body["data"]
            )
            return None
        return self.resources.read(
            command.imei, ids["obj_id"], ids.get("obj_inst_id"), ids.get("res_id")
        )


_IDS = frozenset({"obj_id", "obj_inst_id", "res_id", "mode"})


def _wake_at(phase: float, interval: float, after: float, valid: float) -> float:
    """The first wake on the grid phase + k*interval that is > after and >= valid."""
    start = max(after, valid)
    at = phase + math.floor((start - phase) / interval) * interval
    while at <= after or at < valid:  # at most a step or two: the floor may round down
        at += interval
    return at
