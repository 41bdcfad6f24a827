"""The simulator as a threaded HTTP server (werkzeug), for `make run` and tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from simulators.wsgi_server import BackgroundWsgiServer

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


class AcquirerServer(BackgroundWsgiServer):
    """Runs the simulator on a background thread; ``port=0`` picks a free port."""

    def __init__(self, acquirer: Acquirer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.acquirer = acquirer
        super().__init__(wsgi_app(acquirer), host=host, port=port, name="acquirer-sim")
