"""The endpoint's JSON-protocol fast path (moto_adapter._json_rpc_dispatch) answers exactly what moto's Flask
app answers: every call here is sent both ways and the answers compared; calls it must not take (other
protocols, a browser's CORS call, another moto server) still reach moto's own path."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local import moto_adapter
from local.aws_endpoint import AwsEndpoint, _call_whole, _dispatch_in_process
from local.clock import VirtualClock
from tests.local.clients import local_client

_VOLATILE = {"date", "x-amzn-requestid", "x-amz-request-id", "x-amz-crc32", "x-amz-id-2"}


class _NoInvoker:
    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> Any:
        raise AssertionError("no Lambda here")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[AwsEndpoint]:
    with AwsEndpoint(port=0) as ep:
        moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url=ep.url)
        yield ep
    moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:1")


def _client(endpoint: AwsEndpoint, service: str) -> Any:
    return local_client(endpoint.url, service, "eu-west-1")


Answer = tuple[str, dict[str, str], bytes]


def _stable(answer: tuple[str, list[tuple[str, str]], bytes]) -> Answer:
    status, headers, body = answer
    return status, {k.lower(): v for k, v in headers if k.lower() not in _VOLATILE}, body


class Compare:
    """A before-send hook: each request answered by moto's Flask path and by the fast path, both kept."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.dispatcher = DomainDispatcherApplication(create_backend_app)
        self.pairs: list[tuple[Answer, Answer | None]] = []

    def flask(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return moto_adapter._ORIGINALS["xray_local_dispatch"](self.dispatcher, environ, start_response)

    def fast(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answer = moto_adapter._json_rpc_dispatch(self.dispatcher, environ, start_response)
        if answer is None:
            raise LookupError("the fast path declined this call")
        return answer

    def __call__(self, request: Any, **_: Any) -> Any:
        flask = _dispatch_in_process(self.flask, request)
        flask_answer = (str(flask.status_code), dict(flask.headers), flask.content)
        try:
            fast = _dispatch_in_process(self.fast, request)
        except LookupError:
            self.pairs.append((flask_answer, None))
            return flask
        fast_answer = (str(fast.status_code), dict(fast.headers), fast.content)
        self.pairs.append((flask_answer, fast_answer))
        return fast


def _compared(endpoint: AwsEndpoint, service: str) -> tuple[Any, Compare]:
    client, compare = _client(endpoint, service), Compare()
    client.meta.events.register("before-send", compare)
    return client, compare


def _same(compare: Compare) -> None:
    assert compare.pairs, "no call was compared"
    for flask, fast in compare.pairs:
        assert fast is not None, "the fast path should have answered"
        flask_status, flask_headers, flask_body = flask
        fast_status, fast_headers, fast_body = fast
        assert fast_status == flask_status
        drop = _VOLATILE
        assert {k.lower(): v for k, v in fast_headers.items() if k.lower() not in drop} == {
            k.lower(): v for k, v in flask_headers.items() if k.lower() not in drop
        }
        assert json.loads(fast_body or b"{}") == json.loads(flask_body or b"{}")


def test_dynamodb_reads_writes_and_errors_answer_as_moto(endpoint: AwsEndpoint) -> None:
    plain = _client(endpoint, "dynamodb")
    plain.create_table(
        TableName="rpc",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    plain.put_item(TableName="rpc", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    ddb, compare = _compared(endpoint, "dynamodb")
    assert ddb.get_item(TableName="rpc", Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    ddb.describe_table(TableName="rpc")
    ddb.query(
        TableName="rpc",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "a"}},
    )
    for bad in (
        lambda: ddb.get_item(TableName="missing", Key={"pk": {"S": "a"}}),
        lambda: ddb.query(TableName="rpc", KeyConditionExpression="pk = :p"),  # :p undefined
    ):
        with pytest.raises(ddb.exceptions.ClientError):
            bad()
    _same(compare)
    assert {fast[0] for _, fast in compare.pairs if fast} == {"200", "400"}


def test_a_conditional_write_goes_through_the_fast_path_once(
    endpoint: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    ddb = _client(endpoint, "dynamodb")
    ddb.create_table(
        TableName="once",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    seen: list[bool] = []
    original = moto_adapter._json_rpc_dispatch

    def counting(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        answer = original(self, environ, start_response)
        seen.append(answer is not None)
        return answer

    monkeypatch.setattr(moto_adapter, "_json_rpc_dispatch", counting)
    ddb.put_item(TableName="once", Item={"pk": {"S": "x"}}, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(
            TableName="once", Item={"pk": {"S": "x"}}, ConditionExpression="attribute_not_exists(pk)"
        )
    monkeypatch.undo()
    assert seen == [True, True]  # both over HTTP, both answered by the fast path
    assert ddb.scan(TableName="once")["Count"] == 1


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("stepfunctions", lambda c: c.list_state_machines()),
        (
            "stepfunctions",
            lambda c: c.describe_state_machine(
                stateMachineArn="arn:aws:states:eu-west-1:123456789012:stateMachine:none"
            ),
        ),
        ("sqs", lambda c: c.get_queue_url(QueueName="none")),
        ("logs", lambda c: c.describe_log_groups()),
        ("secretsmanager", lambda c: c.get_secret_value(SecretId="none")),
        ("events", lambda c: c.list_rules()),
    ],
)
def test_other_json_services_answer_as_moto(
    endpoint: AwsEndpoint, service: str, call: Callable[[Any], Any]
) -> None:
    client, compare = _compared(endpoint, service)
    with contextlib.suppress(client.exceptions.ClientError):  # error answers are compared like the others
        call(client)
    _same(compare)


def test_other_protocols_and_cors_calls_take_moto_s_path(endpoint: AwsEndpoint) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    dispatcher = DomainDispatcherApplication(create_backend_app)
    sns, compare = _compared(endpoint, "sns")  # query protocol: no X-Amz-Target
    sns.list_topics()
    assert [fast for _, fast in compare.pairs] == [None]
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ListTables",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=local/20260101/eu-west-1/dynamodb/aws4_request, x",
        "HTTP_ORIGIN": "http://localhost:3000",
    }
    assert moto_adapter._json_rpc_dispatch(dispatcher, environ, lambda *a: None) is None


def test_the_endpoint_answers_boto3_through_it(endpoint: AwsEndpoint) -> None:
    """Unmodified boto3 over HTTP: the fast path's status line, headers and body parse as AWS's do."""
    sfn = _client(endpoint, "stepfunctions")
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):
        sfn.describe_state_machine(stateMachineArn="arn:aws:states:eu-west-1:123456789012:stateMachine:none")
    status, headers, _ = _call_whole(
        lambda env, sr: moto_adapter._json_rpc_dispatch(Compare().dispatcher, env, sr),
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b"{}"),
            "CONTENT_LENGTH": "2",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ListTables",
            "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=l/20260101/eu-west-1/dynamodb/aws4_request, x",
        },
    )
    assert status == "200 OK"
    assert dict(headers)["Content-Length"].isdigit()


def test_contract_what_the_fast_path_does_is_what_moto_s_flask_view_does() -> None:
    """Fails loudly when moto changes the view the fast path stands in for."""
    import inspect

    from moto.core.request import Request
    from moto.core.utils import convert_to_flask_response
    from moto.moto_server.werkzeug_app import BackendRequest, create_backend_app

    view = inspect.getsource(convert_to_flask_response.__call__)
    assert "recorder._record_request(request)" in view
    assert "self.callback(request, request.raw_url, dict(request.headers))" in view
    assert "except ClientError" in view
    assert "Response(response=content, status=status, headers=headers)" in view
    assert BackendRequest.from_wsgi_server is True and Request.from_wsgi_server is False
    assert "CORS(backend_app)" in inspect.getsource(create_backend_app)
