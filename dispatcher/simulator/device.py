"""What simulated devices hold: the resource values their confirmed writes set.

A confirmed read answers from these values, so a test can write a value through the
platform and read it back as the device's `cmd_result`. Devices start empty: a
resource no confirmed write has set is simply not there, and a read that matches
nothing answers an empty list. Only devices that confirmed a write take memory.
"""

from __future__ import annotations

from typing import Any

Path = tuple[int, int, int]
"""(obj_id, obj_inst_id, res_id)"""

REPLACE = 1  # write mode 1: the instance keeps only what the write names; 2 updates


class Resources:
    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, dict[Path, Any]] = {}

    def __repr__(self) -> str:
        return f"Resources(devices={len(self._held)})"

    def clear(self) -> None:
        self._held = {}

    def write(
        self, imei: str, obj_id: int, obj_inst_id: int, mode: int, data: list[dict[str, Any]]
    ) -> None:
        """Apply a confirmed write body's `data` to one object instance."""
        held = self._held.setdefault(imei, {})
        if mode == REPLACE:
            for path in [p for p in held if p[0] == obj_id and p[1] == obj_inst_id]:
                del held[path]
        for element in data:
            held[(obj_id, obj_inst_id, element["res_id"])] = element["val"]

    def read(
        self, imei: str, obj_id: int, obj_inst_id: int | None, res_id: int | None
    ) -> list[dict[str, Any]]:
        """The values under a read's path, as its cmd_result lists them (sorted by path)."""
        return [
            entry
            for entry in self.of(imei)
            if entry["obj_id"] == obj_id
            and (obj_inst_id is None or entry["obj_inst_id"] == obj_inst_id)
            and (res_id is None or entry["res_id"] == res_id)
        ]

    def of(self, imei: str) -> list[dict[str, Any]]:
        """Every value the device holds, sorted by path."""
        held = self._held.get(imei, {})
        return [
            {"obj_id": path[0], "obj_inst_id": path[1], "res_id": path[2], "val": held[path]}
            for path in sorted(held)
        ]
