import http.client
import json
import socket
import threading
from typing import Any

import boto3
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


def test_clients_of_this_process_are_served_on_their_own_thread_without_http() -> None:
    from local.aws_endpoint import serve_in_process
    from local.provision import client

    threads: list[int] = []

    def record_thread(app: Any) -> Any:
        def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
            threads.append(threading.get_ident())
            return app(environ, start_response)

        return wrapped

    with AwsEndpoint(port=0, middlewares=[record_thread]) as endpoint:
        sqs = client("sqs", endpoint.url, "us-east-1")  # the runtime's own factory
        url = sqs.create_queue(QueueName="in-process")["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody="hello",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}},
        )
        got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
        assert (got["Body"], got["MessageAttributes"]["kind"]["StringValue"]) == ("hello", "greeting")
        assert threads and set(threads) == {threading.get_ident()}  # never the server's threads
        missing = sqs.get_queue_url  # errors come back as botocore errors, as over HTTP
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            missing(QueueName="nope")

        other = boto3.client(
            "sqs",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        threads.clear()
        other.list_queues()  # a client nobody attached goes over HTTP, to a server thread
        assert threads and threading.get_ident() not in threads
        assert serve_in_process(other) is other
        threads.clear()
        other.list_queues()
        assert threads == [threading.get_ident()]
        served = endpoint.url
    from local import aws_endpoint

    assert served not in aws_endpoint._IN_PROCESS  # a stopped endpoint is no longer served in process


@pytest.mark.parametrize(
    "block",
    [
        b"Host: 127.0.0.1:4566\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nContent-Length: 2\r\n\r\n",
        b"Host: h\r\nX-Dup: 1\r\nx-dup: 2\r\nEmpty:\r\nSpaces:   padded  \r\nColon: a:b:c\r\n\r\n",
        b"Host: h\nBare-LF: yes\n\n",
        b"Host: h\r\nFolded: first\r\n  second\r\n\r\n",  # obsolete line folding: email's parser
        b"Host: h\r\nNo colon here\r\nAfter: x\r\n\r\n",
        b"Host: h\r\nSpaced : value\r\n\r\n",
        b"Latin: caf\xe9\r\n\r\n",
        b"",  # the peer closed before the blank line
    ],
)
def test_headers_are_read_as_the_stdlib_reads_them(block: bytes) -> None:
    import io

    from local.aws_endpoint import read_headers

    ours = read_headers(io.BytesIO(block + b"BODY"))
    stdlib = http.client.parse_headers(io.BytesIO(block + b"BODY"))
    assert list(ours.items()) == list(stdlib.items())
    assert [type(d) for d in ours.defects] == [type(d) for d in stdlib.defects]


def test_header_limits_are_the_stdlib_s() -> None:
    import io

    from local.aws_endpoint import read_headers

    with pytest.raises(http.client.LineTooLong):
        read_headers(io.BytesIO(b"X: " + b"a" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        read_headers(io.BytesIO(b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"))


def test_request_headers_reach_moto_and_connection_close_is_honoured() -> None:
    with AwsEndpoint(port=0) as endpoint:
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
            body = b"{}"
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\n"
                b"Content-Type: application/x-amz-json-1.0\r\nConnection: close\r\n"
                b"Authorization: AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/sqs/aws4_request, "
                b"SignedHeaders=host, Signature=x\r\nContent-Length: 2\r\n\r\n" + body
            )
            answer = b""
            while chunk := sock.recv(65536):  # the server closes: recv returns b"" at the end
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Connection: close" in head
        assert json.loads(payload) == {} or "QueueUrls" in json.loads(payload)
        bad = socket.create_connection(("127.0.0.1", endpoint.port), timeout=10)
        with bad:
            bad.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
            assert bad.recv(100).startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize(
    ("request_line", "answer"),
    [
        (b"GET /moto-api/ HTTP/1.0", b"HTTP/1.1 200 "),  # HTTP/1.0: answered, then closed
        # the stdlib's own parse answers the rest (as HTTP/0.9: the error page without a status line)
        (b"GET /moto-api/ HTTP/2.0", b"Error code: 505"),
        (b"GET /moto-api/ HTTP/x.y", b"Error code: 400"),
        (b"GET", b"Error code: 400"),
    ],
)
def test_request_lines_are_judged_as_the_stdlib_judges_them(request_line: bytes, answer: bytes) -> None:
    with AwsEndpoint(port=0) as endpoint:
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as sock:
            sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):  # every one of these ends with the server closing
                data += chunk
        assert answer in data[:2000], data[:200]
