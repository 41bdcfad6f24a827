"""Fixtures shared by the runtime's part tests that run against stock moto (not our AwsEndpoint)."""

from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """Stock moto in server mode on a free port, one per test module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint(moto_server: str) -> str:
    """The module's moto server, emptied before each test."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=5).raise_for_status()
    return moto_server
