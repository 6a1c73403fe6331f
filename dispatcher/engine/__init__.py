"""The engine: sends a run's requests at the job's rate and records every answer.

- ``core``: the ``Engine`` (producer, workers, retries, stop);
- ``settings``: what it is given (``EngineSettings``, ``Rollout``) and counts (``Totals``);
- ``abort``: the job's abort rule and the rate ramp;
- ``breaker``: the circuit breaker that stops a run when the platform, not a device, fails.

It sees the network only as ``onenet.transport.Transport`` and the disk only through the
ledger writer: nothing here imports aiohttp.
"""

from __future__ import annotations

from dispatcher.engine.core import Engine
from dispatcher.engine.settings import EngineSettings, Rollout, Totals

__all__ = ["Engine", "EngineSettings", "Rollout", "Totals"]
