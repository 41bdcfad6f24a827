"""Signed delivery of 3-D Secure events to PayEasy, retried on 5xx and connection errors; every attempt kept.

Plain urllib (no requests/werkzeug): the same code runs in the sandbox Lambda, which ships only this package.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from .signing import SIGNATURE_HEADER, sign


class CallbackSender:
    """``deliver`` blocks until the event is accepted, refused (4xx: a retry would not change it) or the
    attempts are used up; the backoff doubles from ``backoff_s``."""

    def __init__(
        self,
        secret: str,
        *,
        attempts: int = 4,
        backoff_s: float = 0.2,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []

    def deliver(self, url: str, event: dict[str, Any]) -> bool:
        body = json.dumps(event, separators=(",", ":")).encode()
        for attempt in range(1, self.attempts + 1):
            timestamp = int(self.clock())
            status, error = self._post(url, body, sign(self.secret, body, timestamp))
            self._record(
                {
                    "type": event.get("type"),
                    "authentication_id": event.get("authentication_id"),
                    "payment_id": event.get("payment_id"),
                    "url": url,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "at": time.time(),
                    "signed_at": timestamp,
                    "event": event,
                }
            )
            if status is not None and status < 500:
                return 200 <= status < 300
            if attempt < self.attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return False

    def _post(self, url: str, body: bytes, signature: str) -> tuple[int | None, str | None]:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return int(answer.status), None
        except urllib.error.HTTPError as exc:
            return int(exc.code), None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            return None, f"{type(exc).__name__}: {exc}"

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
