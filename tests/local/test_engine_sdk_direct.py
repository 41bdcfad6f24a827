"""The engine's SDK integrations without botocore's transport (moto_adapter._EngineClient): each call here is
made with the stock engine client (botocore's whole path) and with the direct one, and must send moto the same
request (method, path, body bytes, headers but the signature, date and user agent) and give back the same
parsed result or the same exception; a workflow's history (TaskFailed error and cause included) is the same
either way."""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local import aws_endpoint, moto_adapter
from local.aws_endpoint import AwsEndpoint
from local.clock import VirtualClock
from tests.local.clients import local_client

REGION = "ap-southeast-2"
ROLE = "arn:aws:iam::123456789012:role/local"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9A-Za-z]{52}")
# headers that differ between two sends of the same call: the signature and its date, the SDK's per-call id,
# the user agent (botocore rebuilds it per request with feature ids)
_VOLATILE = {"HTTP_AUTHORIZATION", "HTTP_X_AMZ_DATE", "HTTP_AMZ_SDK_INVOCATION_ID", "HTTP_USER_AGENT"}


class _NoInvoker:
    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> Any:
        raise AssertionError("no Lambda here")


class Recorder:
    """A WSGI app in front of the endpoint's: keeps what each request carried to moto."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)
        seen: dict[str, Any] = {k: v for k, v in environ.items() if isinstance(v, str) and k not in _VOLATILE}
        scope = re.search(r"Credential=([^,]+)", environ.get("HTTP_AUTHORIZATION", ""))
        seen["scope"] = scope.group(1).split("/", 2)[2] if scope else None  # region/service/aws4_request
        seen["body"] = body
        self.requests.append(seen)
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[AwsEndpoint]:
    with AwsEndpoint(port=0) as ep:
        moto_adapter.install(
            clock=VirtualClock(auto=True), lambda_invoker=_NoInvoker(), endpoint_url=ep.url, region=REGION
        )
        yield ep
    moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:1")


@pytest.fixture(scope="module")
def resources(endpoint: AwsEndpoint) -> dict[str, str]:
    ddb = local_client(endpoint.url, "dynamodb", REGION)
    ddb.create_table(
        TableName="direct",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue = local_client(endpoint.url, "sqs", REGION).create_queue(QueueName="direct-q")["QueueUrl"]
    topic = local_client(endpoint.url, "sns", REGION).create_topic(Name="direct-t")["TopicArn"]
    local_client(endpoint.url, "events", REGION).create_event_bus(Name="direct-bus")
    secret = local_client(endpoint.url, "secretsmanager", REGION).create_secret(
        Name="direct-s", SecretString='{"k": "v"}'
    )["ARN"]
    sfn = local_client(endpoint.url, "stepfunctions", REGION)
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(name="direct-pass", definition=json.dumps(definition), roleArn=ROLE)
    return {"queue": queue, "topic": topic, "secret": secret, "machine": machine["stateMachineArn"]}


@contextlib.contextmanager
def clients(endpoint: AwsEndpoint, service: str) -> Iterator[tuple[Any, Any, Recorder]]:
    """(stock client, direct client, recorder of what both sent), both built as the engine builds them."""
    recorder = Recorder(aws_endpoint._IN_PROCESS[endpoint.url])
    aws_endpoint._IN_PROCESS[endpoint.url] = recorder
    try:
        stock = moto_adapter.stock_engine_client(REGION, service, endpoint.url)  # its before-send: recorder
        direct = moto_adapter._EngineClient(
            moto_adapter.stock_engine_client(REGION, service, endpoint.url), recorder
        )
        yield stock, direct, recorder
    finally:
        aws_endpoint._IN_PROCESS[endpoint.url] = recorder.app


def scrub(value: Any) -> Any:
    """A result with what differs between two calls (ids, request ids, dates) replaced by placeholders."""
    if isinstance(value, dict):
        return {k: "<date>" if k == "date" else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return _UUID.sub("<id>", value)
    return value


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", scrub(call())
    except ClientError as exc:
        return type(exc).__name__, scrub(exc.response)


def same(stock: Any, direct: Any, recorder: Recorder, method: str, **params: Any) -> tuple[str, Any]:
    """Call ``method`` both ways with equal parameters; assert equal requests and outcomes; return it."""
    before = len(recorder.requests)
    expected = outcome(lambda: getattr(stock, method)(**json_copy(params)))
    got = outcome(lambda: getattr(direct, method)(**json_copy(params)))
    sent = recorder.requests[before:]
    assert len(sent) == 2, f"{method}: {len(sent)} requests reached the endpoint"
    assert scrub_request(sent[1]) == scrub_request(sent[0])
    assert got == expected
    return got


def scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    return {k: scrub(v) if isinstance(v, str) else v for k, v in request.items()}


def json_copy(params: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy per call: botocore may add members (idempotency tokens)."""
    return copy.deepcopy(params)


def test_dynamodb_answers_blobs_and_errors_are_the_stock_clients(
    endpoint: AwsEndpoint, resources: Any
) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_dynamodb as dynamodb_task,
    )

    blob = bytes(range(256))
    item = {
        "pk": {"S": "p1"},
        "n": {"N": "5000"},
        "b": {"B": blob},
        "ss": {"SS": ["a", "b"]},
        "f": {"BOOL": True},
    }
    with clients(endpoint, "dynamodb") as (stock, direct, recorder):
        assert type(direct.put_item).__name__ == "partial"  # the direct path, not the wrapped client's method
        same(stock, direct, recorder, "put_item", TableName="direct", Item=item)
        kind, got = same(stock, direct, recorder, "get_item", TableName="direct", Key={"pk": {"S": "p1"}})
        assert kind == "ok" and got["Item"]["b"] == {"B": blob}  # base64 on the wire, bytes again here
        put = [r for r in recorder.requests if r.get("HTTP_X_AMZ_TARGET") == "DynamoDB_20120810.PutItem"]
        assert len(put) == 2 and base64.b64encode(blob) in put[1]["body"]
        kind, got = same(
            stock,
            direct,
            recorder,
            "update_item",
            TableName="direct",
            Key={"pk": {"S": "p1"}},
            UpdateExpression="SET #s = :s, n = :one",  # the same answer twice
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "captured"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        assert kind == "ok" and got["Attributes"]["status"] == {"S": "captured"}
        assert (
            got["ResponseMetadata"]["MaxAttemptsReached"] is True
            and got["ResponseMetadata"]["RetryAttempts"] == 0
        )
        kind, failed = same(
            stock,
            direct,
            recorder,
            "update_item",
            TableName="direct",
            Key={"pk": {"S": "p1"}},
            UpdateExpression="SET #s = :s",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "voided"}, ":pending": {"S": "pending"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        assert kind == "ConditionalCheckFailedException"
        assert failed["Item"]["status"] == {"S": "captured"}  # a modeled error field, parsed as botocore does
        kind, missing = same(stock, direct, recorder, "get_item", TableName="nope", Key={"pk": {"S": "p1"}})
        assert kind == "ResourceNotFoundException" and missing["ResponseMetadata"]["HTTPStatusCode"] == 400
        # what the engine makes of the error (TaskFailed error and cause) is the same too
        errors = []
        for client in (stock, direct):
            with pytest.raises(ClientError) as info:
                client.get_item(TableName="nope", Key={"pk": {"S": "p1"}})
            error, cause = dynamodb_task.StateTaskServiceDynamoDB._error_cause_from_client_error(info.value)
            errors.append((error, scrub(cause)))
        assert errors[0] == errors[1] and errors[0][0] == "DynamoDB.ResourceNotFoundException"


def test_query_protocol_sns_with_binary_attributes(endpoint: AwsEndpoint, resources: Any) -> None:
    with clients(endpoint, "sns") as (stock, direct, recorder):
        kind, got = same(
            stock,
            direct,
            recorder,
            "publish",
            TopicArn=resources["topic"],
            Message='{"payment_id": "pay_1", "note": "ü & = +"}',
            Subject="Payment",
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "receipt"},
                "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xffbin"},
            },
        )
        assert kind == "ok" and got["MessageId"] == "<id>"
        assert recorder.requests[-1]["CONTENT_TYPE"].startswith("application/x-www-form-urlencoded")
        missing = resources["topic"].replace("direct-t", "gone")
        kind, error = same(stock, direct, recorder, "publish", TopicArn=missing, Message="x")
        assert kind == "NotFoundException" and error["Error"]["Code"] == "NotFound"


def test_sqs_json_and_its_query_compatible_error_codes(endpoint: AwsEndpoint, resources: Any) -> None:
    with clients(endpoint, "sqs") as (stock, direct, recorder):
        kind, got = same(
            stock,
            direct,
            recorder,
            "send_message",
            QueueUrl=resources["queue"],
            MessageBody='{"a": 1}',
            MessageAttributes={
                "n": {"DataType": "Number", "StringValue": "7"},
                "b": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
            },
        )
        assert kind == "ok" and "MD5OfMessageBody" in got
        gone = resources["queue"].replace("direct-q", "gone-q")
        kind, error = same(stock, direct, recorder, "send_message", QueueUrl=gone, MessageBody="x")
        # botocore's after-call handler maps the JSON error to the query-era code: it ran on the direct path
        assert (
            kind == "QueueDoesNotExist"
            and error["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
        )


def test_events_stepfunctions_and_secrets_timestamps(endpoint: AwsEndpoint, resources: Any) -> None:
    with clients(endpoint, "events") as (stock, direct, recorder):
        entry = {"Source": "payeasy", "DetailType": "PaymentSucceeded", "Detail": '{"id": "pay_1"}'}
        kind, got = same(
            stock, direct, recorder, "put_events", Entries=[dict(entry, EventBusName="direct-bus")]
        )
        assert kind == "ok" and got["FailedEntryCount"] == 0
        kind, got = same(stock, direct, recorder, "put_events", Entries=[dict(entry, EventBusName="no-bus")])
        assert kind == "ResourceNotFoundException"
    with clients(endpoint, "stepfunctions") as (stock, direct, recorder):
        kind, started = same(stock, direct, recorder, "start_execution", stateMachineArn=resources["machine"])
        assert kind == "ok" and isinstance(started["startDate"], type(started["startDate"]))
        assert started["startDate"].__class__.__name__ == "datetime"  # timestamps parsed as botocore does
        missing = resources["machine"].replace("direct-pass", "gone")
        kind, _ = same(stock, direct, recorder, "start_execution", stateMachineArn=missing)
        assert kind == "StateMachineDoesNotExist"
        kind, described = same(
            stock, direct, recorder, "describe_state_machine", stateMachineArn=resources["machine"]
        )
        assert kind == "ok" and described["creationDate"].__class__.__name__ == "datetime"
    with clients(endpoint, "secretsmanager") as (stock, direct, recorder):
        kind, got = same(stock, direct, recorder, "get_secret_value", SecretId=resources["secret"])
        assert kind == "ok" and got["SecretString"] == '{"k": "v"}'
        kind, _ = same(stock, direct, recorder, "get_secret_value", SecretId="gone")
        assert kind == "ResourceNotFoundException"


def test_idempotency_tokens_are_generated_as_botocore_does(endpoint: AwsEndpoint, resources: Any) -> None:
    with clients(endpoint, "secretsmanager") as (_stock, direct, recorder):
        direct.put_secret_value(SecretId=resources["secret"], SecretString="v2")
        token = json.loads(recorder.requests[-1]["body"])["ClientRequestToken"]
        assert uuid.UUID(token).version == 4  # ClientRequestToken is an idempotencyToken member


def test_other_protocols_and_streams_take_the_stock_path(endpoint: AwsEndpoint) -> None:
    with clients(endpoint, "lambda") as (_stock, direct, _recorder):  # rest-json
        assert direct.invoke.__self__ is direct._client
        assert direct.meta is direct._client.meta and direct.exceptions is direct._client.exceptions
    with clients(endpoint, "s3") as (_stock, direct, _recorder):  # rest-xml
        assert direct.put_object.__self__ is direct._client
    assert not moto_adapter._sendable_directly(
        local_client(endpoint.url, "lambda", REGION).meta.service_model.operation_model("Invoke")
    )


def test_the_engine_uses_the_direct_client_for_served_endpoints(endpoint: AwsEndpoint) -> None:
    moto_adapter._cfg().clients.clear()
    client = moto_adapter._boto_client_for(REGION, "dynamodb")
    assert isinstance(client, moto_adapter._EngineClient)
    assert moto_adapter._boto_client_for(REGION, "dynamodb") is client  # one per (region, service)


_WORKFLOW = {
    "StartAt": "Put",
    "States": {
        "Put": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:putItem",
            "Parameters": {
                "TableName": "direct",
                "Item": {"pk": {"S.$": "$.id"}, "status": {"S": "captured"}},
            },
            "ResultPath": "$.put",
            "Next": "Void",
        },
        "Void": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:updateItem",
            "Parameters": {
                "TableName": "direct",
                "Key": {"pk": {"S.$": "$.id"}},
                "UpdateExpression": "SET #s = :v",
                "ConditionExpression": "#s = :pending",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":v": {"S": "voided"}, ":pending": {"S": "pending"}},
            },
            "Catch": [
                {
                    "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
                    "ResultPath": "$.void",
                    "Next": "Get",
                }
            ],
            "Next": "Get",
        },
        "Get": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Parameters": {"TableName": "direct", "Key": {"pk": {"S.$": "$.id"}}},
            "ResultSelector": {"status.$": "$.Item.status.S"},
            "ResultPath": "$.got",
            "Next": "Notify",
        },
        "Notify": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Sns",
                    "States": {
                        "Sns": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sns:publish",
                            "Parameters": {"TopicArn.$": "$.topic", "Message": {"id.$": "$.id"}},
                            "Catch": [{"ErrorEquals": ["SNS.NotFoundException"], "Next": "SnsFailed"}],
                            "End": True,
                        },
                        "SnsFailed": {"Type": "Pass", "End": True},
                    },
                },
                {
                    "StartAt": "Sqs",
                    "States": {
                        "Sqs": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sqs:sendMessage",
                            "Parameters": {"QueueUrl.$": "$.queue", "MessageBody": {"id.$": "$.id"}},
                            "ResultSelector": {"md5.$": "$.MD5OfMessageBody"},
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "Events",
                    "States": {
                        "Events": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::events:putEvents",
                            "Parameters": {
                                "Entries": [
                                    {
                                        "EventBusName": "direct-bus",
                                        "Source": "payeasy",
                                        "DetailType": "PaymentSucceeded",
                                        "Detail": {"id.$": "$.id"},
                                    }
                                ]
                            },
                            "End": True,
                        }
                    },
                },
            ],
            "ResultPath": "$.notified",
            "Next": "Fail",
        },
        "Fail": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:deleteItem",
            "Parameters": {"TableName": "missing-table", "Key": {"pk": {"S.$": "$.id"}}},
            "End": True,
        },
    },
}


def _run_workflow(endpoint: AwsEndpoint, resources: dict[str, str], direct: bool, run: str) -> list[Any]:
    sfn = local_client(endpoint.url, "stepfunctions", REGION)
    arn = sfn.create_state_machine(name=f"direct-flow-{run}", definition=json.dumps(_WORKFLOW), roleArn=ROLE)[
        "stateMachineArn"
    ]
    payload = {
        "id": "pay_flow",
        "topic": resources["topic"].replace("direct-t", "gone"),
        "queue": resources["queue"],
    }
    moto_adapter.DIRECT_SDK_CALLS = direct
    moto_adapter._cfg().clients.clear()
    try:
        execution = sfn.start_execution(stateMachineArn=arn, name="run", input=json.dumps(payload))[
            "executionArn"
        ]
        deadline = time.monotonic() + 20
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution still running"
            time.sleep(0.01)
        engine_clients = list(moto_adapter._cfg().clients.values())
    finally:
        moto_adapter.DIRECT_SDK_CALLS = True
        moto_adapter._cfg().clients.clear()
    assert all(isinstance(c, moto_adapter._EngineClient) == direct for c in engine_clients) and engine_clients
    events = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    history = []
    for event in events:
        event = {k: v for k, v in event.items() if k != "timestamp"}
        history.append(scrub(json.loads(json.dumps(event, default=str).replace(run, "<run>"))))
    return history


def _unnumbered(event: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in event.items() if k not in ("id", "previousEventId")}, sort_keys=True)


def _outside_parallel(history: list[dict[str, Any]]) -> list[str]:
    start = next(i for i, e in enumerate(history) if e["type"] == "ParallelStateStarted")
    end = next(i for i, e in enumerate(history) if e["type"] == "ParallelStateSucceeded")
    assert start < end
    return [_unnumbered(e) for e in history[:start] + history[end:]]


def test_a_workflow_history_is_the_same_either_way(endpoint: AwsEndpoint, resources: dict[str, str]) -> None:
    stock = _run_workflow(endpoint, resources, direct=False, run="flowstock")
    direct = _run_workflow(endpoint, resources, direct=True, run="flowdirect")
    # Parallel branches interleave their events in any order: compare the events as a multiset (without
    # their ids) and, outside the Parallel state, in order
    assert sorted(map(_unnumbered, direct)) == sorted(map(_unnumbered, stock))
    assert _outside_parallel(direct) == _outside_parallel(stock)
    failed = [e["taskFailedEventDetails"] for e in direct if e["type"] == "TaskFailed"]
    assert sorted(f["error"] for f in failed) == [
        "DynamoDB.ConditionalCheckFailedException",
        "DynamoDB.ResourceNotFoundException",
        "SNS.NotFoundException",
    ]
    assert (
        "(Service: AmazonDynamoDBv2; Status Code: 400; Error Code: ConditionalCheckFailedException"
        in (failed[0]["cause"])
    )
    assert direct[-1]["type"] == "ExecutionFailed"
