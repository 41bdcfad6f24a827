"""A WSGI app on a background werkzeug thread: how each simulator runs under `make run` and in tests."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def _call_whole(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Runs a WSGI app to the end: (status line, headers, whole body)."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [status, headers]
        return lambda data: None  # the legacy write() callable: the simulators' apps never use it

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = answer
    return status, headers, body


class KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's handler, answering with HTTP/1.1 keep-alive.

    werkzeug's dev server closes every connection, so each acquirer call and webhook paid a TCP connect, a
    new server thread and a getaddrinfo on both sides. Here the request body is read up front (Content-Length)
    and the answer buffered with a Content-Length, so the connection can stay open."""

    protocol_version = "HTTP/1.1"
    # An answer goes out in one write, but werkzeug's own path (chunked bodies, errors) writes headers and
    # body apart: with Nagle on, the client's delayed ACK would hold such a body back ~40 ms.
    disable_nagle_algorithm = True
    timeout = 300  # an idle connection's thread ends after this (clients reconnect transparently)

    def setup(self) -> None:
        super().setup()
        track = getattr(self.server, "track_connection", None)
        if track is not None:
            track(self.connection, True)

    def finish(self) -> None:
        track = getattr(self.server, "track_connection", None)
        if track is not None:
            track(self.connection, False)
        super().finish()

    def run_wsgi(self) -> None:
        if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
            return super().run_wsgi()  # a chunked or 100-continue body: werkzeug's path (closes)
        self.environ = environ = self.make_environ()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        try:
            status, headers, body = _call_whole(self.server.app, environ)
        except Exception:  # as werkzeug's own path does: a 500 for the client, the traceback in the log
            logging.getLogger("werkzeug").exception("Error on request %s %s", self.command, self.path)
            status, headers, body = "500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")], b"error"
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        payload = b"" if self.command == "HEAD" else body
        if self.request_version == "HTTP/0.9":  # no status line or headers (as the stdlib's end_headers)
            self.wfile.write(payload)
            return
        # Status line, headers and body in one write: one send here and one segment for the client to read
        # (apart, the client paid a second wake-up and recv whenever the body came a moment later).
        self._headers_buffer.extend((b"\r\n", payload))
        self.flush_headers()


class BackgroundWsgiServer:
    """``port=0`` picks a free port; ``url`` tells which. ``serve_forever`` runs on the calling thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "simulator") -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=KeepAliveHandler
        )
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server.track_connection = self._track  # type: ignore[attr-defined]
        # A short poll interval makes stop() quick (tests start one server each).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            (self._connections.add if is_open else self._connections.discard)(connection)

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
        # Kept-alive connections would go on being served by their threads: a stopped simulator answers
        # nothing, as before keep-alive.
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
