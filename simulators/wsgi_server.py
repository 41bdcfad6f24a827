"""A WSGI app on a background werkzeug thread: how each simulator runs under `make run` and in tests."""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, make_server


class BackgroundWsgiServer:
    """``port=0`` picks a free port; ``url`` tells which. ``serve_forever`` runs on the calling thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "simulator") -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        # A short poll interval makes stop() quick (tests start one server each).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
