"""The AWS clients the API (and every handler) gets from payeasy.wiring: cheaper per call, same requests.

wiring.aws_client turns off botocore's client-side parameter validation. These tests hold the requests to
what a stock botocore client sends: same User-Agent header, same answers, and the service's own errors for
what it rejects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from payeasy import wiring

from .handler_support import aws_env, reset_caches


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_env(monkeypatch)
    with mock_aws():
        reset_caches()
        yield
        reset_caches()


def _capture(client: Any) -> list[str]:
    """The User-Agent header of every request the client sends (read just before it goes out)."""
    sent: list[str] = []

    def before_send(request: Any, **_: Any) -> None:
        sent.append(request.headers["User-Agent"].decode())

    client.meta.events.register_first("before-send.*.*", before_send)
    return sent


def _table_calls(client: Any) -> list[Any]:
    """A DynamoDB session as the router has it, plus a paginated scan and a waiter."""
    answers: list[Any] = []
    client.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    item = {"id": {"S": "a"}, "n": {"N": "5"}}
    client.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(id)")
    client.update_item(
        TableName="t",
        Key={"id": {"S": "a"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "COMPLETED"}},
    )
    answers.append(client.get_item(TableName="t", Key={"id": {"S": "a"}}, ConsistentRead=True)["Item"])
    answers += [page["Items"] for page in client.get_paginator("scan").paginate(TableName="t")]
    client.get_waiter("table_exists").wait(TableName="t")  # waiters add a feature id
    answers.append(client.get_item(TableName="t", Key={"id": {"S": "a"}})["Item"])
    return answers


def test_clients_are_shared_and_skip_client_side_validation(aws: None) -> None:
    client = wiring.aws_client("dynamodb")
    assert client is wiring.aws_client("dynamodb")
    # botocore wraps its serializer in a validator unless the client's Config says parameter_validation=False.
    assert type(client._serializer).__name__ != "ParamValidationDecorator"
    assert type(wiring.aws_client("stepfunctions")._serializer).__name__ != "ParamValidationDecorator"
    stock: Any = boto3.client("dynamodb")
    assert type(stock._serializer).__name__ == "ParamValidationDecorator"


def test_requests_and_answers_equal_a_stock_client_s(aws: None) -> None:
    ours = wiring.aws_client("dynamodb")
    # Its own session: resolving credentials adds a feature id to a session's first request, as for ours.
    stock: Any = boto3.session.Session().client("dynamodb")
    sent_ours, sent_stock = _capture(ours), _capture(stock)

    answers_ours = _table_calls(ours)
    stock.delete_table(TableName="t")
    sent_stock.clear()
    answers_stock = _table_calls(stock)

    assert answers_ours == answers_stock
    assert len(sent_ours) == len(sent_stock) == 7
    assert sent_ours == sent_stock  # the same header, request by request


def test_the_service_rejects_what_validation_would_have(aws: None) -> None:
    """Without client-side validation a malformed call fails at the service as a ClientError (which callers
    already handle), not with a request that silently does something else."""
    ours = wiring.aws_client("dynamodb")
    _table_calls(ours)
    with pytest.raises(ClientError, match="Type mismatch for key id"):
        ours.put_item(TableName="t", Item={"id": {"N": "5"}})
    with pytest.raises(ClientError, match="Missing the key id"):
        ours.put_item(TableName="t", Item={"n": {"S": "a"}})
    stock = boto3.client("dynamodb")
    with pytest.raises(Exception) as stock_error:
        stock.put_item(TableName="t", Item={"id": {"S": 5}})  # what validation stopped before sending
    assert type(stock_error.value).__name__ == "ParamValidationError"
