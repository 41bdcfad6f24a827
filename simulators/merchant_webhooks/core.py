"""The receiver's state and rules, independent of the HTTP transport.

It verifies signatures on its own (as a merchant's code would, from the documented scheme), so it checks
PayEasy's signing instead of sharing its code. Secrets default to the template's local defaults
(``MerchantAWebhookSecret`` / ``MerchantBWebhookSecret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SECRETS = {
    "merchant_a": "whsec_test_merchant_a_3c9e1f5a7b2d",
    "merchant_b": "whsec_test_merchant_b_8d4a6c0e2f1b",
}
TOLERANCE_SECONDS = 300


@dataclass
class Reply:
    status: int
    body: dict[str, Any]


def signature_valid(header: str, body: bytes, secret: str, *, now: float, tolerance_s: int) -> bool:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>``; any matching v1 within the tolerance."""
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return False
    if abs(now - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SECRETS))
    tolerance_s: int = TOLERANCE_SECONDS
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    fail_mode: str = "off"  # "off" | "count" | "always"
    fail_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = [p for p in path.split("/") if p]
        if method == "POST" and len(parts) == 2 and parts[0] == "webhooks":
            return self.receive(parts[1], headers, body)
        if parts == ["_sim", "deliveries"]:
            if method == "GET":
                with self._lock:
                    return Reply(200, {"deliveries": list(self.deliveries)})
            if method == "DELETE":
                with self._lock:
                    self.deliveries.clear()
                return Reply(200, {"deliveries": []})
        if method == "POST" and parts == ["_sim", "fail"]:
            return self.configure_failures(body)
        return Reply(404, {"error": f"no route {method} {path}"})

    def configure_failures(self, body: bytes) -> Reply:
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            return Reply(400, {"error": "body: not JSON"})
        if not isinstance(spec, dict):
            return Reply(400, {"error": "body: must be an object"})
        with self._lock:
            if "count" in spec:
                count = spec["count"]
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    return Reply(400, {"error": "count: must be a non-negative integer"})
                self.fail_mode, self.fail_left = ("count", count) if count else ("off", 0)
            elif spec.get("mode") in ("always", "off"):
                self.fail_mode, self.fail_left = spec["mode"], 0
            else:
                return Reply(400, {"error": 'give {"count": N} or {"mode": "always" | "off"}'})
            return Reply(200, {"mode": self.fail_mode, "count": self.fail_left})

    def _should_fail(self) -> bool:
        if self.fail_mode == "always":
            return True
        if self.fail_mode == "count" and self.fail_left > 0:
            self.fail_left -= 1
            if self.fail_left == 0:
                self.fail_mode = "off"
            return True
        return False

    def receive(self, merchant: str, headers: dict[str, str], body: bytes) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        secret = self.secrets.get(merchant)
        valid = secret is not None and signature_valid(
            lowered.get("payeasy-signature", ""), body, secret, now=time.time(), tolerance_s=self.tolerance_s
        )
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        with self._lock:
            failing = self._should_fail()
            status = 404 if secret is None else 503 if failing else 200 if valid else 400
            self.deliveries.append(
                {
                    "merchant": merchant,
                    "received_at": time.time(),
                    "status": status,
                    "signature_valid": valid,
                    "signature": lowered.get("payeasy-signature"),
                    "event_id": event.get("id") if isinstance(event, dict) else None,
                    "type": event.get("type") if isinstance(event, dict) else None,
                    "event": event,
                    "body": body.decode(errors="replace"),
                }
            )
        if status == 404:
            return Reply(404, {"error": f"unknown merchant {merchant}"})
        if status == 503:
            return Reply(503, {"error": "simulated failure"})
        if status == 400:
            return Reply(400, {"error": "signature verification failed"})
        return Reply(200, {"received": True})
