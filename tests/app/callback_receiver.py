"""A tiny HTTP receiver standing in for PayEasy's 3-D Secure callback route in the simulator's tests.

It records every POST (path, headers, raw body) and answers from a script of statuses (then 200), so a test
can make the first deliveries fail and check the simulator's retries. A GET answers a small HTML page: the
shop's return_url for browser tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def verify(header: str, body: bytes, secret: str, *, now: float, tolerance_s: int = 300) -> bool:
    """The documented check, written from docs/3ds.md (not the simulator's code)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    stamp = fields.get("t", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class CallbackReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[int] = []  # statuses answered before the default 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}  # names are case-insensitive
                    receiver.received.append(Received(self.path, headers, body))
                    status = receiver.script.pop(0) if receiver.script else 200
                answer = json.dumps({"received": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:  # the shop's return_url: where the ACS sends the browser back
                page = b"<!doctype html><title>Shop</title><h1 id='shop'>Back at the shop</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if json.loads(r.body).get("type") == event_type]

    def wait_for(self, event_type: str, count: int = 1, timeout_s: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.of_type(event_type)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{count} x {event_type} not received in {timeout_s}s: {self.received}")
