"""The audit trail handler with the events/ sample stream record: one event per change, never twice."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from .handler_support import FakeContext, aws_env, load_event, load_function, reset_caches

TABLE = "payeasy-payment-events-test"


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, Any]]:
    aws_env(monkeypatch, PAYMENT_EVENTS_TABLE=TABLE)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "payment_id", "AttributeType": "S"},
                {"AttributeName": "sequence", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "payment_id", "KeyType": "HASH"},
                {"AttributeName": "sequence", "KeyType": "RANGE"},
            ],
        )
        reset_caches()
        yield load_function("audit_trail"), ddb
        reset_caches()


def stored(ddb: Any) -> list[dict[str, Any]]:
    return list(ddb.scan(TableName=TABLE)["Items"])


def test_a_status_change_becomes_one_event_and_a_redelivery_changes_nothing(
    audit: tuple[ModuleType, Any],
) -> None:
    module, ddb = audit
    event = load_event("dynamodb_payment_changed")
    assert module.handler(copy.deepcopy(event), FakeContext()) == {"batchItemFailures": []}
    assert module.handler(copy.deepcopy(event), FakeContext()) == {"batchItemFailures": []}  # redelivered
    (item,) = stored(ddb)
    assert item["type"] == {"S": "payment.status_changed"}
    assert (item["from_status"]["S"], item["to_status"]["S"]) == ("processing", "succeeded")
    assert item["actor"]["S"].startswith("workflow:arn:aws:states:")
    assert "tok_replace" not in str(item)


def test_a_record_that_cannot_be_stored_is_reported_alone(
    audit: tuple[ModuleType, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, ddb = audit
    event = load_event("dynamodb_payment_changed")
    bad = copy.deepcopy(event["Records"][0])
    bad["dynamodb"]["SequenceNumber"] = "111100000000012345679"
    del bad["dynamodb"]["NewImage"]["payment_id"]
    del bad["dynamodb"]["OldImage"]["payment_id"]
    event["Records"].append(bad)
    ddb.delete_table(TableName=TABLE)  # the store is gone: the record that needs it fails, by its id;
    answer = module.handler(event, FakeContext())  # the one with nothing to audit (no payment id) does not
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == ["111100000000012345678"]
