import socket

import pytest

from local.aws_endpoint import AwsEndpoint, PortInUseError
from local.errors import LocalRuntimeError


def test_a_taken_port_is_one_clear_error_not_an_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use") as info:
            AwsEndpoint(port=port).start()
    assert isinstance(info.value, LocalRuntimeError)  # the CLI prints it as one line
