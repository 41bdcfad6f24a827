"""The simulator as a Lambda behind a Function URL (sandbox stage): the same ``Acquirer`` as the HTTP server.

State lives in the execution environment's memory, so a sandbox keeps it only while the environment is warm
(good enough for trying the API; the ledger is not durable).
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from .core import DEFAULT_API_KEY, Acquirer  # not .server: werkzeug is not in the Lambda's package
from .threeds import DEFAULT_CALLBACK_BASE_URL, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SECRET


def _keys() -> set[str]:
    return {os.environ.get("ACQUIRER_API_KEY", DEFAULT_API_KEY)}


ACQUIRER = Acquirer(
    api_keys=_keys(),
    latency_ms=int(os.environ.get("ACQUIRER_LATENCY_MS", "0")),
    slow_ms=int(os.environ.get("ACQUIRER_SLOW_MS", "3000")),
    callback_base_url=os.environ.get("THREEDS_CALLBACK_BASE_URL", DEFAULT_CALLBACK_BASE_URL),
    threeds_secret=os.environ.get("THREEDS_CALLBACK_SECRET", DEFAULT_SECRET),
    heartbeat_interval=float(os.environ.get("THREEDS_HEARTBEAT_INTERVAL", DEFAULT_HEARTBEAT_INTERVAL)),
)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Function URL payload format 2.0 in, HTTP response out."""
    http = event["requestContext"]["http"]
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    headers = dict(event.get("headers") or {})
    headers.setdefault("x-forwarded-proto", "https")  # Function URLs are https-only
    reply = ACQUIRER.handle(
        http["method"],
        event.get("rawPath", http.get("path", "/")),
        event.get("queryStringParameters") or {},
        headers,
        body,
    )
    if reply.delay_ms:
        time.sleep(reply.delay_ms / 1000)
    return {
        "statusCode": reply.status,
        "headers": {k.lower(): v for k, v in reply.all_headers().items()},
        "body": reply.payload().decode(),
    }
