"""The lifecycle both telemetry sinks share: buffer in memory, upload to the endpoint from one
background thread every ``flush_interval`` real seconds (uploading is plumbing, not emulated AWS
time), flush on close."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Self

import boto3
from botocore.config import Config

from local.aws_endpoint import is_served_in_process, serve_in_process

log = logging.getLogger(__name__)
MIN_LAST_FLUSH = 1.0  # seconds the last flush gets even when the background thread used up the bound


class BackgroundUploader:
    thread_name = "uploader"
    close_timeout = 3.0  # seconds close() waits for the uploads in progress and the last one

    def __init__(self, endpoint_url: str | None, flush_interval: float) -> None:
        self.endpoint_url = endpoint_url
        self.flush_interval = flush_interval
        self._lock = threading.Lock()  # guards the subclass's buffer and the thread handle
        self._send_lock = threading.Lock()  # one upload at a time keeps flush() a barrier
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def flush(self) -> None:
        """Upload everything buffered so far; returns when the endpoint has answered (or failed)."""
        raise NotImplementedError

    @property
    def in_process(self) -> bool:
        """This process serves the endpoint: uploads can go straight into its moto backends."""
        return self.endpoint_url is not None and is_served_in_process(self.endpoint_url)

    def client(self, service: str, region: str) -> Any:
        """A boto3 client of the endpoint. Fixed fake credentials: the endpoint is local and must never pick
        up a developer's real keys."""
        return serve_in_process(
            boto3.session.Session().client(  # type: ignore[call-overload]  # service is a runtime string
                service,
                endpoint_url=self.endpoint_url,
                region_name=region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=10
                ),
            )
        )

    def start(self) -> Self:
        """Start the background uploader now (it also starts by itself on first use)."""
        with self._lock:
            self._start_locked()
        return self

    def _start_locked(self) -> None:
        if self.endpoint_url is not None and self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the background uploader after a last flush. Later items are kept but only uploaded by an
        explicit ``flush()``. Waits ``close_timeout`` seconds at most: a shutdown must not hang on an
        endpoint that has stopped answering (boto3 retries and timeouts would take tens of seconds)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + self.close_timeout
        if thread is not None:
            thread.join(timeout=self.close_timeout)
        errors: list[Exception] = []

        def last_flush() -> None:
            try:
                self.flush()
            except Exception as exc:  # raised in the caller, as a direct flush() would
                errors.append(exc)

        flusher = threading.Thread(target=last_flush, name=f"{self.thread_name}-last", daemon=True)
        flusher.start()
        flusher.join(max(MIN_LAST_FLUSH, deadline - time.monotonic()))
        if flusher.is_alive():
            log.warning(
                "%s: the last upload to %s did not finish in time; stopped without it",
                self.thread_name,
                self.endpoint_url,
            )
        elif errors:
            raise errors[0]

    stop = close

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()
