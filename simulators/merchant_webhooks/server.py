"""The receiver as a threaded HTTP server (werkzeug), for `make run` and tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from simulators.wsgi_server import BackgroundWsgiServer

from .core import Receiver


def wsgi_app(receiver: Receiver) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        reply = receiver.handle(request.method, request.path, dict(request.headers), request.get_data())
        response = Response(json.dumps(reply.body), status=reply.status, mimetype="application/json")
        return response(environ, start_response)

    return app


class ReceiverServer(BackgroundWsgiServer):
    """Runs the receiver on a background thread; ``port=0`` picks a free port."""

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0) -> None:
        self.receiver = receiver
        super().__init__(wsgi_app(receiver), host=host, port=port, name="merchant-webhooks-sim")

    def webhook_url(self, merchant: str) -> str:
        return f"{self.url}/webhooks/{merchant}"
