"""The lifecycle both telemetry sinks share: buffer in memory, upload to the endpoint from one
background thread every ``flush_interval`` real seconds (uploading is plumbing, not emulated AWS
time), flush on close."""

from __future__ import annotations

import threading
from typing import Self


class BackgroundUploader:
    thread_name = "uploader"

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
        explicit ``flush()``."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=15)
        self.flush()

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
