"""onenet-dispatcher: roll out OneNET NB-IoT cached commands to whole device fleets."""

from __future__ import annotations

__version__ = "0.1.0"
