"""`python -m simulators.acquirer --port 8081 --latency-ms 0`: serve the acquirer simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .core import Acquirer
from .server import DEFAULT_API_KEY, AcquirerServer


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
    args = parser.parse_args(argv)
    keys = set(args.api_key or [os.environ.get("ACQUIRER_API_KEY", DEFAULT_API_KEY)])
    try:
        server = AcquirerServer(
            Acquirer(api_keys=keys, latency_ms=args.latency_ms, slow_ms=args.slow_ms), args.host, args.port
        )
    except OSError as exc:
        print(
            f"acquirer simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    print(f"acquirer simulator on {server.url} (latency {args.latency_ms} ms)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
