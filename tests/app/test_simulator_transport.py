"""The simulators' HTTP transport (simulators/wsgi_server.py): keep-alive, TCP_NODELAY, one write per answer,
a clean stop."""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import pytest

from simulators.wsgi_server import BackgroundWsgiServer, KeepAliveHandler


def _echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("app bug")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.dumps({"path": environ["PATH_INFO"], "got": environ["wsgi.input"].read(length).decode()})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


@pytest.fixture
def server() -> Iterable[BackgroundWsgiServer]:
    with BackgroundWsgiServer(_echo, name="transport-test") as running:
        yield running


def _connection(server: BackgroundWsgiServer) -> http.client.HTTPConnection:
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)


def test_one_connection_carries_many_requests(server: BackgroundWsgiServer) -> None:
    connection = _connection(server)
    ports = set()
    for index in range(3):
        connection.request(
            "POST", f"/v1/{index}", body=b'{"n": 1}', headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        assert answer.status == 200
        assert answer.getheader("Connection") is None  # werkzeug's own handler says "close" on every answer
        assert json.loads(answer.read()) == {"path": f"/v1/{index}", "got": '{"n": 1}'}
        assert connection.sock is not None
        ports.add(connection.sock.getsockname()[1])
    assert len(ports) == 1  # the same TCP connection all along
    connection.close()


def test_answers_go_out_without_nagle_delay() -> None:
    assert KeepAliveHandler.disable_nagle_algorithm is True
    assert KeepAliveHandler.protocol_version == "HTTP/1.1"


def test_an_app_error_is_a_500_and_the_connection_still_serves(server: BackgroundWsgiServer) -> None:
    connection = _connection(server)
    connection.request("GET", "/boom")
    answer = connection.getresponse()
    assert answer.status == 500
    answer.read()
    connection.request("GET", "/after")
    assert connection.getresponse().status == 200
    connection.close()


def test_a_stopped_server_answers_nothing_even_on_a_kept_alive_connection() -> None:
    server = BackgroundWsgiServer(_echo, name="transport-stop").start()
    connection = _connection(server)
    connection.request("GET", "/first")
    assert connection.getresponse().read()
    server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, socket.timeout, OSError)):
        connection.request("GET", "/second")
        connection.getresponse()
    connection.close()


def test_an_answer_is_one_write(server: BackgroundWsgiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Status line, headers and body leave in one send (one segment for the client), not two."""
    writes: list[bytes] = []
    writer: Any = socketserver._SocketWriter  # type: ignore[attr-defined]  # what a handler's wfile is
    original = writer.write

    def counting(self: Any, data: bytes) -> int:
        writes.append(bytes(data))
        return int(original(self, data))

    monkeypatch.setattr(writer, "write", counting)
    connection = _connection(server)
    for method in ("POST", "HEAD"):
        writes.clear()
        connection.request(method, "/one", body=b'{"n": 2}' if method == "POST" else None)
        answer = connection.getresponse()
        body = answer.read()
        assert len(writes) == 1
        head, _, sent_body = writes[0].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sent_body == body == (b"" if method == "HEAD" else b'{"path": "/one", "got": "{\\"n\\": 2}"}')
        full = json.dumps({"path": "/one", "got": '{"n": 2}' if method == "POST" else ""})
        assert answer.getheader("Content-Length") == str(len(full))  # HEAD: the length without the body
    connection.close()


def test_an_http_0_9_request_gets_the_body_alone(server: BackgroundWsgiServer) -> None:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=5) as raw:
        raw.sendall(b"GET /old\r\n\r\n")  # the stdlib reads a header block even for HTTP/0.9
        expected = b'{"path": "/old", "got": ""}'
        received = b""
        while len(received) < len(expected) and (chunk := raw.recv(4096)):
            received += chunk
    assert received == expected  # no status line, no headers (the connection is not closed, as before)

