"""The HTTP front of the API Gateway emulation: one threaded server for every API of the stack, on
127.0.0.1:3000 by default, paths without the stage prefix (like ``sam local start-api``).

It is built on ``http.server`` rather than WSGI on purpose: WSGI folds repeated headers into one
comma-joined value and loses the client's header case, and the proxy event must keep both."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.apigateway.gateway import DEFAULT_INTEGRATION_TIMEOUT, Gateway, internal_server_error
from local.apigateway.proxy import IncomingRequest
from local.clock import Clock
from local.errors import PortInUseError
from local.model import ApiSpec
from local.ports import LambdaInvoker, SegmentSink
from local.xray import TraceHeader

log = logging.getLogger("local.apigateway")

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's request payload quota


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_port = False  # a second server must fail to bind, not share the port

    def __init__(self, address: tuple[str, int], gateway: Gateway, clock: Clock) -> None:
        self.gateway = gateway
        self.clock = clock
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock keep-alive handler threads waiting for a next request, so stop() leaves nothing behind."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "local-apigateway"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes on a keep-alive connection: without TCP_NODELAY,
        # Nagle + the client's delayed ACK add ~40 ms to every response (measured: 44 ms -> 1 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    continue
                return b"".join(chunks)
            total += size
            if total > MAX_PAYLOAD:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _serve(self) -> None:
        started = time.monotonic()
        with self.server.clock.busy():
            try:
                status, headers, body = self._respond()
            except ValueError as exc:  # an unreadable request (bad Content-Length or chunk size)
                log.warning("bad request %s %s: %s", self.command, self.path, exc)
                self.close_connection = True
                status, headers, body = (
                    400,
                    [("Content-Type", "application/json")],
                    b'{"message":"Bad Request"}',
                )
            except Exception:  # a bug here must still answer as API Gateway would, not drop the connection
                log.exception("error while serving %s %s", self.command, self.path)
                error = internal_server_error(500)
                status, headers, body = error.status, error.headers, error.body
            # Logged before the answer is written, so the line exists once the client has its response.
            ms = (time.monotonic() - started) * 1000
            log.info("%s %s %d %.1fms", self.command, self.path, status, ms)
            self._send(status, headers, body)

    def _respond(self) -> tuple[int, list[tuple[str, str]], bytes]:
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return 413, [("Content-Type", "application/json")], b'{"message":"Request Too Long"}'
        request = IncomingRequest(
            method=self.command,
            path=path or "/",
            query=query,
            headers=list(self.headers.items()),  # arrival order, original case, repeats kept
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
            server_port=self.server.server_address[1],
        )
        answer = self.server.gateway.handle(request)
        response = answer.response
        trace = TraceHeader(root=answer.trace.root, sampled=answer.trace.sampled).to_header()
        headers = [
            *response.headers,
            ("x-amzn-RequestId", answer.request_id),
            ("x-amz-apigw-id", answer.extended_request_id),
            ("X-Amzn-Trace-Id", trace),
        ]
        return response.status, headers, response.body

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class ApiGatewayServer:
    """Serves every ``ApiSpec`` of the stack on one port. ``port=0`` picks a free port (see ``.port``)."""

    def __init__(
        self,
        apis: dict[str, ApiSpec],
        invoker: LambdaInvoker,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        clock: Clock,
        segment_sink: SegmentSink | None = None,
        region: str,
        account_id: str,
        integration_timeout: float = DEFAULT_INTEGRATION_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.gateway = Gateway(
            apis,
            invoker,
            clock=clock,
            segment_sink=segment_sink,
            region=region,
            account_id=account_id,
            integration_timeout=integration_timeout,
        )
        self._clock = clock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiGatewayServer:
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self.port), self.gateway, self._clock)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError("API Gateway", self.host, self.port) from None
            raise
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="apigateway", daemon=True
        )
        self._thread.start()
        for resource in self.gateway.routes.resources:
            for method in resource.methods:
                log.debug("route %s %s%s", method, self.url, resource.path)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
