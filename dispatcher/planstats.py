"""What a pass over the plan saw: devices and duplicates, per fleet and in all."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FleetCount:
    name: str
    devices: int = 0
    duplicates: int = 0


@dataclass
class PlanStats:
    """What a pass over the plan saw; filled while devices are streamed."""

    fleets: list[FleetCount] = field(default_factory=list)
    devices: int = 0
    duplicates: int = 0
