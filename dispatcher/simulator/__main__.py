"""Run the simulator by hand: `python -m dispatcher.simulator --port 8080`.

The accepted key is read from the environment variable ONENET_SIM_API_KEY (default
"simulator-api-key") so it never shows in a process list; it is never printed. With
--user-id or --product-id, tokens signed with the base64 access key in
ONENET_SIM_ACCESS_KEY are accepted (on --platform studio, only tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dispatcher.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--platform", choices=("legacy", "studio"), default="legacy")
    parser.add_argument("--user-id", default=None, help="accept tokens for res userid/ID")
    parser.add_argument("--product-id", default=None, help="accept tokens for res products/ID")
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long (default: aiohttp's)",
    )
    parser.add_argument(
        "--delivery", action="store_true", help="devices wake and answer their commands"
    )
    parser.add_argument(
        "--clock-speed", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--wake-interval", type=float, default=600.0, help="simulated seconds between wakes"
    )
    args = parser.parse_args()
    try:
        config = SimulatorConfig(
            api_key=os.environ.get("ONENET_SIM_API_KEY", "simulator-api-key"),
            platform=args.platform,
            user_id=args.user_id,
            product_id=args.product_id,
            access_key=(
                os.environ.get("ONENET_SIM_ACCESS_KEY") if args.user_id or args.product_id else None
            ),
            latency=args.latency,
            seed=args.seed,
            delivery=args.delivery,
            clock_speed=args.clock_speed,
            wake_interval=args.wake_interval,
        )
    except ValueError as exc:  # a knob out of range: a usage error, not a traceback
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                config,
                args.host,
                args.port,
                ready=_announce,
                keepalive_timeout=args.keepalive_timeout,
            )
        )


def _announce(base_url: str) -> None:
    print(f"simulator listening on {base_url} (knobs: {base_url}/_sim/config)", flush=True)


if __name__ == "__main__":
    main()
