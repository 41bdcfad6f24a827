"""`python -m simulators.acquirer --port 8081 --latency-ms 0`: serve the acquirer simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .core import Acquirer
from .server import DEFAULT_API_KEY, AcquirerServer
from .threeds import DEFAULT_CALLBACK_BASE_URL, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SECRET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.acquirer", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every answer")
    parser.add_argument("--slow-ms", type=int, default=3000, help="how late the slow test cards answer")
    parser.add_argument(
        "--api-key",
        action="append",
        help=f"accepted key (repeatable; default ${'{'}ACQUIRER_API_KEY{'}'} or {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--callback-base-url",
        default=os.environ.get("THREEDS_CALLBACK_BASE_URL", DEFAULT_CALLBACK_BASE_URL),
        help="where 3-D Secure callbacks go: <url>/payments/<id>/3ds/callback "
        "(default $THREEDS_CALLBACK_BASE_URL or %(default)s)",
    )
    parser.add_argument(
        "--threeds-secret",
        default=os.environ.get("THREEDS_CALLBACK_SECRET", DEFAULT_SECRET),
        help="HMAC secret of the 3-D Secure callbacks (default $THREEDS_CALLBACK_SECRET or the local one)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help="seconds between the challenge page's heartbeats (default %(default)s)",
    )
    parser.add_argument("--public-url", help="base of challenge URLs (default: the Host the caller used)")
    args = parser.parse_args(argv)
    if not args.heartbeat_interval > 0:
        parser.error("--heartbeat-interval must be a positive number of seconds")
    keys = set(args.api_key or [os.environ.get("ACQUIRER_API_KEY", DEFAULT_API_KEY)])
    acquirer = Acquirer(
        api_keys=keys,
        latency_ms=args.latency_ms,
        slow_ms=args.slow_ms,
        callback_base_url=args.callback_base_url,
        threeds_secret=args.threeds_secret,
        heartbeat_interval=args.heartbeat_interval,
        public_url=args.public_url,
    )
    try:
        server = AcquirerServer(acquirer, args.host, args.port)
    except OSError as exc:
        print(
            f"acquirer simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    print(
        f"acquirer simulator on {server.url} (latency {args.latency_ms} ms;"
        f" 3-D Secure callbacks to {args.callback_base_url})",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
