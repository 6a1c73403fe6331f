"""The registry of benchmark sections: each one's name, the module that owns its figures
and targets, and what it measures.

- A *suite* section runs inside ``python -m bench`` (the whole suite, or ``--only``): its
  module has ``run(suite) -> dict`` (the figures, stored in ``bench/results.json``) and
  ``rows(result, add)`` (the table's lines, each with its target).
- A *standalone* section measures one question on its own and writes its own JSON beside
  it (``bench/NAME.json``): its module has ``main(argv)``.

Both run as ``python -m bench SECTION [ARGS...]``; see docs/performance.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Section:
    name: str
    module: str  # owns the section's figures and targets
    summary: str
    suite: bool  # part of `python -m bench` (else standalone)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


ALL: tuple[Section, ...] = (
    Section(
        "throughput",
        "bench.throughput",
        "the dispatcher's ceiling against aiohttp, requests and curl; the ledger's and the"
        " trace hooks' cost; uvloop",
        True,
    ),
    Section(
        "hotpath",
        "bench.paced",
        "CPU per request at 1,000/s against a bare loop paced alike; the rate with a core busy",
        True,
    ),
    Section("rate", "bench.rate", "rate accuracy over the run and in its worst second", True),
    Section("memory", "bench.memory", "peak memory against the fleet's size", True),
    Section("ledger", "bench.ledger_rate", "the ledger's rows per second by batch size", True),
    Section("resume", "bench.resume", "a rerun of a completed million-row run", True),
    Section("startup", "bench.startup", "start-up of --help and validate", True),
    Section("profile", "bench.hotpath", "where the CPU goes while sending, by layer", True),
    Section("fleet_memory", "bench.fleet_memory", "checking a fleet file: time and memory", False),
    Section("report_speed", "bench.report_speed", "report, export and outputs of a big run", False),
    Section("run_memory", "bench.run_memory", "a whole run's peak memory", False),
    Section("sim_delivery", "bench.sim_delivery", "the simulator's delivery model at scale", False),
    Section(
        "stale_keepalive",
        "bench.stale_keepalive",
        "requests lost to a server closing idle connections, by keep-alive",
        False,
    ),
)
SECTIONS: dict[str, Section] = {s.name: s for s in ALL}
SUITE: tuple[Section, ...] = tuple(s for s in ALL if s.suite)
