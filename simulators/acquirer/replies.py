"""What every simulator operation returns, whatever the transport (HTTP server or Lambda)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """HTTP status, JSON body, and how long the transport must wait before answering (simulated latency and
    the slow test cards). ``html`` replaces the JSON body for the challenge pages; ``headers`` adds e.g.
    ``Location``."""

    status: int
    body: dict[str, Any]
    delay_ms: int = 0
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def content_type(self) -> str:
        return "text/html; charset=utf-8" if self.html is not None else "application/json"

    def payload(self) -> bytes:
        return (self.html if self.html is not None else json.dumps(self.body)).encode()

    def all_headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type(), **self.headers}


def error(status: int, code: str, message: str, param: str | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, "param": param}})
