"""The audit trail handler with the events/ sample stream record: one event per change, never twice."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from .handler_support import FakeContext, aws_env, load_event, load_function, reset_caches

TABLE = "payeasy-payment-events-test"


@pytest.fixture(params=[False, True], ids=["put_item", "transactions"])
def audit(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[ModuleType, Any]]:
    """The handler on moto, its store writing one PutItem per event or one transaction per batch."""
    from payeasy import audit_store

    monkeypatch.setattr(audit_store, "TRANSACT_WRITES", request.param)
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


def _batch(count: int, start: int = 0) -> dict[str, Any]:
    """``count`` changes of as many payments (one stream batch), sequence numbers from ``start``."""
    template = load_event("dynamodb_payment_changed")["Records"][0]
    records = []
    for index in range(start, start + count):
        record = copy.deepcopy(template)
        record["dynamodb"]["SequenceNumber"] = str(111100000000012345700 + index)
        for image in ("OldImage", "NewImage"):
            record["dynamodb"][image]["payment_id"] = {"S": f"pay_batch{index:04d}"}
        records.append(record)
    return {"Records": records}


def _written_metric(capsys: pytest.CaptureFixture[str]) -> int:
    """Sum of AuditEventsWritten over the EMF documents the handler printed."""
    total = 0
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            value = json.loads(line).get("AuditEventsWritten", 0)
            total += sum(value) if isinstance(value, list) else value
    return total


def test_a_batch_is_stored_in_one_write_per_mode_and_counted_once(
    audit: tuple[ModuleType, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module, ddb = audit
    calls: list[str] = []
    store_client = module.wiring.audit_store()._client
    real = store_client._make_api_call

    def spy(operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return real(operation, params)

    monkeypatch.setattr(store_client, "_make_api_call", spy)
    capsys.readouterr()
    assert module.handler(_batch(5), FakeContext()) == {"batchItemFailures": []}
    transactions = module.wiring.audit_store()._transactions
    assert calls == (["TransactWriteItems"] if transactions else ["PutItem"] * 5)
    assert len(stored(ddb)) == 5
    assert _written_metric(capsys) == 5
    # The same batch again (a retry after a timeout): nothing is written or counted twice.
    assert module.handler(_batch(5), FakeContext()) == {"batchItemFailures": []}
    assert len(stored(ddb)) == 5
    assert _written_metric(capsys) == 0


def test_a_batch_that_overlaps_stored_events_writes_only_the_new_ones(
    audit: tuple[ModuleType, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    module, ddb = audit
    assert module.handler(_batch(3), FakeContext()) == {"batchItemFailures": []}
    capsys.readouterr()
    # Retried from the 2nd record on, with two new changes after it: 2 new events, 1 already there.
    overlapping = _batch(4, start=1)
    assert module.handler(overlapping, FakeContext()) == {"batchItemFailures": []}
    sequences = sorted(item["sequence"]["S"].lstrip("0") for item in stored(ddb))
    assert sequences == [str(111100000000012345700 + index) for index in range(5)]
    assert _written_metric(capsys) == 2


def test_a_batch_the_store_refuses_fails_every_record_and_raises_when_none_is_stored(
    audit: tuple[ModuleType, Any],
) -> None:
    module, ddb = audit
    ddb.delete_table(TableName=TABLE)
    with pytest.raises(module.AuditBatchFailed):
        module.handler(_batch(3), FakeContext())
