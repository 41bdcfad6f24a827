"""The simulators' HTTP transport (simulators/wsgi_server.py): keep-alive, TCP_NODELAY, a clean stop."""

from __future__ import annotations

import http.client
import json
import socket
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
