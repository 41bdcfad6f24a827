"""`python -m simulators.merchant_webhooks --port 8082`: a merchant webhook endpoint until Ctrl-C.

Deliveries: POST /webhooks/<merchant>. Control: POST /_sim/fail {"count": N} | {"mode": "always" | "off"},
GET /_sim/deliveries (each with signature_valid), DELETE /_sim/deliveries.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from .core import DEFAULT_SECRETS, Receiver
from .server import ReceiverServer


def _secret(text: str) -> tuple[str, str]:
    merchant, sep, secret = text.partition("=")
    if not sep or not merchant or not secret:
        raise argparse.ArgumentTypeError("expected MERCHANT=whsec_...")
    return merchant, secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.merchant_webhooks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument(
        "--secret",
        type=_secret,
        action="append",
        default=[],
        help="MERCHANT=whsec_... (repeatable; default: the template's local secrets for merchant_a/b)",
    )
    args = parser.parse_args(argv)
    secrets = {**DEFAULT_SECRETS, **dict(args.secret)}
    try:
        server = ReceiverServer(Receiver(secrets=secrets), args.host, args.port)
    except OSError as exc:
        print(
            f"merchant webhooks simulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    print(f"merchant webhooks simulator on {server.url}/webhooks/<merchant>", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
