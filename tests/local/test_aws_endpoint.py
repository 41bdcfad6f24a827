import http.client
import json
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


def _sqs_call(conn: http.client.HTTPConnection, action: str, body: dict[str, object]) -> tuple[int, dict]:
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={
            "X-Amz-Target": f"AmazonSQS.{action}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read() or b"{}")


def test_connections_are_kept_alive_and_each_body_is_read_whole() -> None:
    with AwsEndpoint(port=0) as endpoint:
        conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
        status, created = _sqs_call(conn, "CreateQueue", {"QueueName": "keep-alive"})
        assert status == 200
        sock = conn.sock
        for i in range(3):  # same socket each time: the server neither closed it nor misread a body
            status, sent = _sqs_call(
                conn, "SendMessage", {"QueueUrl": created["QueueUrl"], "MessageBody": "x" * i or "y"}
            )
            assert status == 200 and "MessageId" in sent
            assert conn.sock is sock
        status, attrs = _sqs_call(
            conn, "GetQueueAttributes", {"QueueUrl": created["QueueUrl"], "AttributeNames": ["All"]}
        )
        assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "3"
        conn.close()


def test_a_client_asking_to_close_gets_its_connection_closed() -> None:
    with AwsEndpoint(port=0) as endpoint:
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as raw:
            raw.sendall(b"GET /moto-api/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := raw.recv(65536):  # ends only if the server closes
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"connection: close" in head and b"content-length:" in head
