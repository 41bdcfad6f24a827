"""The receiver as a threaded HTTP server (werkzeug), for `make run` and tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from .core import Receiver


def wsgi_app(receiver: Receiver) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        reply = receiver.handle(request.method, request.path, dict(request.headers), request.get_data())
        response = Response(json.dumps(reply.body), status=reply.status, mimetype="application/json")
        return response(environ, start_response)

    return app


class ReceiverServer:
    """Runs the receiver on a background thread; ``port=0`` picks a free port."""

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0) -> None:
        self.receiver = receiver
        self._server: BaseWSGIServer = make_server(host, port, wsgi_app(receiver), threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="merchant-webhooks-sim",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def webhook_url(self, merchant: str) -> str:
        return f"{self.url}/webhooks/{merchant}"

    def start(self) -> ReceiverServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
