"""The 3-D Secure callback signature (docs/3ds.md), standalone: the simulator never imports payeasy."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "PayEasy-3DS-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
