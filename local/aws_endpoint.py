"""One local AWS endpoint: moto's server app behind a threaded werkzeug server.

Every service (Step Functions, DynamoDB, SQS, SNS, Secrets Manager, Logs, CloudWatch, X-Ray, Scheduler,
Events, Lambda, IAM, STS) is routed by moto from the request's SigV4 credential scope, so one port serves
them all. Step Functions' real ASL engine is switched on in-process here; the engine's own hooks (Lambda
tasks, integrations, clock, ...) live in ``local.moto_adapter``.
"""

from __future__ import annotations

import email.parser
import errno
import http.client
import io
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from local.errors import LocalRuntimeError

_LOG = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Middleware = Callable[[WSGIApp], WSGIApp]


class PortInUseError(LocalRuntimeError):
    """The endpoint's port is taken by another process."""


def enable_step_functions_execution() -> None:
    """Turn on moto's ASL interpreter for this process (what ``POST /moto-api/config`` would do)."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True


def _strip_sync_host_prefix(app: WSGIApp) -> WSGIApp:
    """boto3/the AWS CLI send StartSyncExecution to ``sync-<host>`` unless host prefix injection is disabled;
    a client that can resolve that name still reaches us, so present the plain host to moto."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if host.startswith("sync-"):
            environ["HTTP_HOST"] = host[len("sync-") :]
        return app(environ, start_response)

    return wrapped


def _call_whole(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to the end: (status line, headers, whole body)."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [status, headers]
        return lambda data: None  # the legacy write() callable: unused by moto and our middlewares

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status, headers = answer
    return status, headers, body


_MAX_HEADER_LINE = 65536  # http.client's limits
_MAX_HEADERS = 100


def read_headers(rfile: Any) -> http.client.HTTPMessage:
    """The header block of a request, as ``http.client.parse_headers`` reads it. That hands every block to
    email's feedparser (~110 us per AWS call on this machine); a block of plain ``Name: value`` lines, which
    is what every SDK sends, is built directly (~20 us). Anything else (folded lines, a line without a colon)
    still goes through email's parser. Raises ``http.client.LineTooLong`` / ``HTTPException`` as the stdlib
    does."""
    lines: list[bytes] = []
    while True:
        line = rfile.readline(_MAX_HEADER_LINE + 1)
        if len(line) > _MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
        if len(lines) > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
    text = [line.decode("iso-8859-1") for line in lines]
    message = http.client.HTTPMessage()
    if all(":" in line and line[0] not in " \t" for line in text):
        for line in text:
            name, _, value = line.partition(":")
            if name != name.strip():  # "Name :" is a defect email's parser reports its own way
                break
            message[name] = value.lstrip(" \t").rstrip("\r\n")
        else:
            return message
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr("".join(text))


def keep_alive_handler() -> type:
    """moto's request handler, answering with HTTP/1.1 keep-alive as AWS endpoints do.

    werkzeug's dev server closes every connection (it cannot tell a request body left unread from the next
    request). Here the body is read up front and the answer is buffered with a Content-Length, so the
    connection can stay open: every Lambda handler, uploader and client then reuses its connection instead
    of paying a TCP connect, a getaddrinfo and a new server thread per AWS call."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle on, a keep-alive client's delayed ACK holds the
        # body back ~40 ms on every answer.
        disable_nagle_algorithm = True
        timeout = 300  # an idle connection's thread ends after this (clients reconnect transparently)

        def parse_request(self) -> bool:
            """The stdlib's parse_request for an ``HTTP/1.0``/``HTTP/1.1`` request line, with the header block
            read by ``read_headers`` (the stdlib hands even an empty block to email's parser); any other
            request line (HTTP/0.9, 2.0, malformed) goes to the stdlib's own, headers and all."""
            requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            words = requestline.split()
            if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
                return bool(super().parse_request())
            self.requestline = requestline
            self.command, path, self.request_version = words
            # gh-87389: a path starting with // would read as a host to clients: reduce it (as the stdlib)
            self.path = "/" + path.lstrip("/") if path.startswith("//") else path
            self.close_connection = not (
                self.request_version == "HTTP/1.1" and self.protocol_version >= "HTTP/1.1"
            )
            try:
                self.headers = headers = read_headers(self.rfile)
            except http.client.LineTooLong as err:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
                return False
            except http.client.HTTPException as err:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
                return False
            connection = headers.get("Connection", "").lower()
            if connection == "close":
                self.close_connection = True
            elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if (
                headers.get("Expect", "").lower() == "100-continue"
                and self.protocol_version >= "HTTP/1.1"
                and self.request_version >= "HTTP/1.1"
            ):
                return bool(self.handle_expect_100())
            return True

        def run_wsgi(self) -> None:
            if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
                # A chunked or 100-continue body: werkzeug's own path, which closes the connection.
                return super().run_wsgi()
            self.environ = environ = self.make_environ()
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
            try:
                status, headers, body = _call_whole(self.server.app, environ)
            except Exception:
                _LOG.exception("AWS endpoint: error on request %s %s", self.command, self.path)
                status, headers = "500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]
                body = b"Internal Server Error"
            code, _, reason = status.partition(" ")
            self.send_response(int(code), reason)
            for key, value in headers:
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        # One access-log line per AWS call drowns the runtime's own output.
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return None

    return KeepAliveHandler


# The WSGI app behind each endpoint URL this process serves: its own clients can call it without HTTP.
_IN_PROCESS: dict[str, WSGIApp] = {}


class _Body:
    """The ``raw`` of a botocore response: whole bytes, read as a stream or in chunks."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._stream.read()

    def read(self, amt: int | None = None) -> bytes:
        return self._stream.read(amt)

    def close(self) -> None:
        self._stream.close()


def _dispatch_in_process(app: WSGIApp, request: Any) -> Any:
    """One prepared botocore request answered by ``app`` on the calling thread: what the HTTP server would
    do, minus the socket, the server thread and two GIL hand-offs."""
    from urllib.parse import unquote, urlsplit

    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    url = urlsplit(request.url)
    body = request.body or b""
    if not isinstance(body, bytes):
        body = body.encode() if isinstance(body, str) else body.read()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(url.path) or "/",
        "RAW_URI": url.path + (f"?{url.query}" if url.query else ""),
        "QUERY_STRING": url.query,
        "SERVER_NAME": url.hostname or "127.0.0.1",
        "SERVER_PORT": str(url.port or 80),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url.scheme or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for key, value in request.headers.items():
        value = value.decode() if isinstance(value, bytes) else str(value)
        name = key.upper().replace("-", "_")
        if name not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):  # the body is whole and counted above
            environ[name if name == "CONTENT_TYPE" else f"HTTP_{name}"] = value
    environ.setdefault("HTTP_HOST", url.netloc)
    status, headers, data = _call_whole(app, environ)
    response_headers = HTTPHeaders()
    for key, value in headers:
        response_headers[key] = value
    return AWSResponse(request.url, int(status.split(" ", 1)[0]), response_headers, _Body(data))


def is_served_in_process(endpoint_url: str) -> bool:
    """Whether this process serves ``endpoint_url`` (its moto backends are then this process's own)."""
    return endpoint_url.rstrip("/") in _IN_PROCESS


def serve_in_process(client: Any) -> Any:
    """Let a boto3 client of this process reach an endpoint this process serves without HTTP (through
    botocore's ``before-send`` event, its documented way to answer a request without sending it). A client
    of any other endpoint is left as it is. Returns the client."""
    app = _IN_PROCESS.get(str(client.meta.endpoint_url).rstrip("/"))
    if app is not None:
        client.meta.events.register("before-send", lambda request, **_: _dispatch_in_process(app, request))
    return client


class AwsEndpoint:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 4566, middlewares: Sequence[Middleware] = ()
    ) -> None:
        self.host = host
        self._requested_port = port
        self._middlewares = list(middlewares)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build_app(self) -> WSGIApp:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app: WSGIApp = DomainDispatcherApplication(create_backend_app)
        # First middleware in the list is the outermost: it sees each request first.
        for middleware in reversed(self._middlewares):
            app = middleware(app)
        return _strip_sync_host_prefix(app)

    def start(self) -> AwsEndpoint:
        if self._server is not None:
            return self
        enable_step_functions_execution()
        try:
            self._server = make_server(
                self.host,
                self._requested_port,
                self.build_app(),
                threaded=True,
                request_handler=keep_alive_handler(),
            )
        except SystemExit:  # werkzeug reports a taken port by printing two lines and calling sys.exit(1)
            raise PortInUseError(
                f"port {self._requested_port} on {self.host} is already in use (AWS endpoint)"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {self._requested_port} on {self.host} is already in use (AWS endpoint)"
                ) from None
            raise
        _IN_PROCESS[self.url] = self._server.app
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"aws-endpoint-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        _IN_PROCESS.pop(self.url, None)
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> AwsEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
