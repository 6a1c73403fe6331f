"""The simulator for the benchmarks: ``python -m dispatcher.simulator``, optionally on uvloop.

    python -m bench.simulator [--uvloop] [simulator options...]

uvloop lowers the simulator's own CPU per request, so that on a small machine the
simulator is less likely to be the bound of what is measured. Nothing else changes:
this calls the simulator's own entry point.
"""

from __future__ import annotations

import asyncio
import sys

from dispatcher.simulator.__main__ import main

if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        sys.argv.remove("--uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main()
