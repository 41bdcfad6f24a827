"""DynamoDB Streams -> Lambda through the whole runtime: order, images, partial failures, OnFailure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.clock import VirtualClock
from local.errors import LocalRuntimeError
from local.runtime import LocalRuntime, RuntimeConfig
from local.stream_sources import table_name_of
from tests.local.clients import local_client

FIXTURE = Path(__file__).parent / "fixtures" / "streams" / "template.yaml"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    clock = VirtualClock(auto=True)
    rt = LocalRuntime(
        RuntimeConfig(template=FIXTURE, aws_port=0, api_port=0, xray_port=0, echo_logs=False), clock=clock
    )
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()
        clock.close()


def _client(rt: LocalRuntime, service: str) -> Any:
    return local_client(rt.endpoint_url, service, rt.model.region)


def _table(rt: LocalRuntime, logical_id: str) -> str:
    return next(t.table_name for t in rt.model.tables.values() if t.logical_id == logical_id)


def _log(rt: LocalRuntime, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    ddb = _client(rt, "dynamodb")
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = ddb.scan(TableName=_table(rt, "LogTable"))["Items"]
        if len(items) >= count:
            break
        time.sleep(0.1)
    return sorted(items, key=lambda i: int(i["seq"]["S"]))


def test_the_mapping_is_read_from_the_sam_event(runtime: LocalRuntime) -> None:
    (mapping,) = runtime.model.event_source_mappings
    assert mapping.is_stream and mapping.starting_position == "TRIM_HORIZON"
    assert mapping.batch_size == 5 and mapping.maximum_retry_attempts == 2
    assert mapping.report_batch_item_failures
    assert mapping.on_failure_destination and mapping.on_failure_destination.endswith("StreamFailuresQueue")


def test_changes_arrive_in_order_with_old_and_new_images(runtime: LocalRuntime) -> None:
    ddb, items = _client(runtime, "dynamodb"), _table(runtime, "ItemsTable")
    ddb.put_item(TableName=items, Item={"id": {"S": "a"}, "v": {"S": "1"}})
    for value in "2345678":  # more than one batch (BatchSize 5)
        ddb.update_item(
            TableName=items,
            Key={"id": {"S": "a"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": value}},
        )
    ddb.delete_item(TableName=items, Key={"id": {"S": "a"}})
    log = _log(runtime, 9)
    assert [(i["event"]["S"], i["old"]["S"], i["new"]["S"]) for i in log] == [
        ("INSERT", "-", "1"),
        *[("MODIFY", str(n), str(n + 1)) for n in range(1, 8)],
        ("REMOVE", "8", "-"),
    ]
    assert {i["region"]["S"] for i in log} == {runtime.model.region}
    assert {i["source"]["S"] for i in log} == {"aws:dynamodb"}
    assert "/stream/" in log[0]["arn"]["S"]


def test_a_failing_record_is_retried_then_sent_to_the_on_failure_queue(runtime: LocalRuntime) -> None:
    ddb, items = _client(runtime, "dynamodb"), _table(runtime, "ItemsTable")
    before = len(_log(runtime, 9))  # the previous test's records
    ddb.put_item(TableName=items, Item={"id": {"S": "p1"}, "v": {"S": "ok-before"}})
    ddb.put_item(TableName=items, Item={"id": {"S": "p2"}, "v": {"S": "bad"}, "poison": {"BOOL": True}})
    sqs = _client(runtime, "sqs")
    url = next(q.url for q in runtime.model.queues.values() if q.logical_id == "StreamFailuresQueue")
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 3  # first try + MaximumRetryAttempts 2
    info = body["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    # The shard moves on: later changes flow again.
    ddb.put_item(TableName=items, Item={"id": {"S": "p3"}, "v": {"S": "ok-after"}})
    log = _log(runtime, before + 2)
    assert [i["id"]["S"] for i in log[before:]] == ["p1", "p3"]
    assert int(log[before]["seq"]["S"]) < int(info["startSequenceNumber"]) < int(log[before + 1]["seq"]["S"])


def test_table_name_of_a_stream_arn() -> None:
    arn = "arn:aws:dynamodb:ap-northeast-1:123456789012:table/payments/stream/2026-11-23T00:00:00.000"
    assert table_name_of(arn) == "payments"
    with pytest.raises(LocalRuntimeError):
        table_name_of("arn:aws:sqs:ap-northeast-1:123456789012:queue")
