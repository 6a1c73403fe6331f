"""`simulate`: serve the simulated platform on loopback."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os

from rich.console import Console

from dispatcher.errors import InputError
from dispatcher.exits import (
    EXIT_OK,
)
from dispatcher.onenet.platforms import LEGACY, STUDIO


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve a simulated OneNET platform on loopback for rehearsals",
        description="Serve a simulated OneNET platform that enforces the wire contract. It accepts the\n"
        "key in the environment variable named by --api-key-env. Its record of queued commands is at\n"
        "GET /_sim/commands (see docs/simulator.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ONENET_API_KEY=test onenet-dispatch simulate --port 8080 &\n"
        "  ONENET_API_KEY=test onenet-dispatch run jobs/example.yaml --base-url http://127.0.0.1:8080",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--api-key-env",
        default="ONENET_API_KEY",
        metavar="VAR",
        help="variable holding the accepted key",
    )
    p.add_argument(
        "--platform",
        choices=("legacy", "studio"),
        default="legacy",
        help=f"the console served: legacy ({LEGACY.prefix}, api-key) or studio ({STUDIO.prefix}, tokens only)",
    )
    p.add_argument("--user-id", metavar="ID", help="accept user tokens (res userid/ID)")
    p.add_argument("--product-id", metavar="ID", help="accept product tokens (res products/ID)")
    p.add_argument(
        "--access-key-env",
        default="ONENET_ACCESS_KEY",
        metavar="VAR",
        help="with --user-id/--product-id: variable holding the base64 access key tokens are signed with",
    )
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="answer delay")
    p.add_argument(
        "--error-rate", type=float, default=0.0, metavar="SHARE", help="share answered errno 7"
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="PER_SECOND",
        help="answer errno 15 above this",
    )
    p.add_argument(
        "--delivery",
        action="store_true",
        help="devices wake up, receive their commands and confirm them (for `track` and `cancel`)",
    )
    p.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="with --delivery: simulated seconds per real second (600: ten minutes a second)",
    )
    p.add_argument(
        "--wake-interval",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="with --delivery: simulated seconds between a device's uplinks (default 600)",
    )
    p.add_argument(
        "--answer-form",
        action="append",
        default=[],
        metavar="NAME",
        help="answer in another form a faithful server may choose (repeatable): errno_text, bom,"
        " gbk, data_text, uuid_upper, uuid_bare, iso_times, epoch_times, utc_times, status_names,"
        " text_values, no_total, unknown_total, page_ignored (docs/simulator.md)",
    )
    p.set_defaults(handler=handle, logs=False)


def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
    import anyio

    from dispatcher.simulator import SimulatorConfig, serve

    token = args.user_id is not None or args.product_id is not None
    if args.platform == "studio" and not token:
        raise InputError("--platform studio takes tokens only: give --user-id or --product-id")
    key = os.environ.get(args.api_key_env, "")
    if not key and args.platform == "legacy":
        raise InputError(f"set {args.api_key_env} to the key the simulator should accept")
    access = os.environ.get(args.access_key_env, "") if token else None
    if token and not access:
        raise InputError(f"set {args.access_key_env} to the access key tokens are signed with")
    try:
        config = SimulatorConfig(
            api_key=key or "unused-on-studio",
            platform=args.platform,
            user_id=args.user_id,
            product_id=args.product_id,
            access_key=access,
            latency=args.latency,
            error_rate=args.error_rate,
            rate_limit=args.rate_limit,
            delivery=args.delivery,
            clock_speed=args.clock_speed,
            wake_interval=args.wake_interval,
            answer_forms=frozenset(args.answer_form),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None

    def ready(base_url: str) -> None:
        err.print(
            f"simulator listening on {base_url} (record: {base_url}/_sim/commands); Ctrl-C stops it"
        )

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(functools.partial(serve, config, args.host, args.port, ready=ready))
    return EXIT_OK
