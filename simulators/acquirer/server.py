"""The simulator as a threaded HTTP server (werkzeug), for `make run` and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from .core import DEFAULT_API_KEY, Acquirer

__all__ = ["DEFAULT_API_KEY", "AcquirerServer", "wsgi_app"]


def wsgi_app(acquirer: Acquirer) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        reply = acquirer.handle(
            request.method, request.path, dict(request.args), dict(request.headers), request.get_data()
        )
        if reply.delay_ms:
            time.sleep(reply.delay_ms / 1000)
        response = Response(reply.payload(), status=reply.status, headers=reply.all_headers())
        return response(environ, start_response)

    return app


class AcquirerServer:
    """Runs the simulator on a background thread; ``port=0`` picks a free port."""

    def __init__(self, acquirer: Acquirer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.acquirer = acquirer
        self._server: BaseWSGIServer = make_server(host, port, wsgi_app(acquirer), threaded=True)
        # A short poll interval makes stop() quick (tests start one server each).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="acquirer-sim",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> AcquirerServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> AcquirerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
