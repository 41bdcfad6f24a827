"""The simulator as a Lambda behind a Function URL (sandbox stage): the same ``Acquirer`` as the HTTP server.

State lives in the execution environment's memory, so a sandbox keeps it only while the environment is warm
(good enough for trying the API; the ledger is not durable).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from .core import Acquirer
from .server import DEFAULT_API_KEY


def _keys() -> set[str]:
    return {os.environ.get("ACQUIRER_API_KEY", DEFAULT_API_KEY)}


ACQUIRER = Acquirer(
    api_keys=_keys(),
    latency_ms=int(os.environ.get("ACQUIRER_LATENCY_MS", "0")),
    slow_ms=int(os.environ.get("ACQUIRER_SLOW_MS", "3000")),
)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Function URL payload format 2.0 in, HTTP response out."""
    http = event["requestContext"]["http"]
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    reply = ACQUIRER.handle(
        http["method"],
        event.get("rawPath", http.get("path", "/")),
        event.get("queryStringParameters") or {},
        event.get("headers") or {},
        body,
    )
    if reply.delay_ms:
        time.sleep(reply.delay_ms / 1000)
    return {
        "statusCode": reply.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(reply.body),
    }
