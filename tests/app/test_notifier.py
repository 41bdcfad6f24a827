"""The notifier (SQS batch, partial batch failures) and send_webhook handlers, with SNS, EventBridge and
Secrets Manager under moto and the merchant webhook receiver simulator over HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from payeasy import notification_adapters
from payeasy import notifications as n

from simulators.merchant_webhooks.core import DEFAULT_SECRETS, Receiver
from simulators.merchant_webhooks.server import ReceiverServer

from .handler_support import FakeContext, aws_env, load_event, load_function, reset_caches
from .pan_scan import find_card_data

BUS = "payeasy-payments-test"


@dataclass
class World:
    notifier: ModuleType
    send_webhook: ModuleType
    receiver: ReceiverServer
    sqs: Any
    probe_url: str

    def probe(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.probe_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with ReceiverServer(Receiver(), port=0) as receiver:
        aws_env(monkeypatch, WEBHOOK_TIMEOUT_SECONDS="1", PAYMENT_EVENTS_BUS_NAME=BUS)
        with mock_aws():
            endpoints = {
                merchant: {"url": receiver.webhook_url(merchant), "secret": secret}
                for merchant, secret in DEFAULT_SECRETS.items()
            }
            secret_arn = boto3.client("secretsmanager").create_secret(
                Name="payeasy/test/merchant-webhooks", SecretString=json.dumps(endpoints)
            )["ARN"]
            sns, sqs, events = boto3.client("sns"), boto3.client("sqs"), boto3.client("events")
            topic = sns.create_topic(Name="notices")["TopicArn"]
            probe_url = sqs.create_queue(QueueName="probe")["QueueUrl"]
            probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=probe_arn, Attributes={"RawMessageDelivery": "true"}
            )
            events.create_event_bus(Name=BUS)
            events.put_rule(Name="all", EventBusName=BUS, EventPattern='{"source": ["payeasy.payments"]}')
            events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "probe", "Arn": probe_arn}])
            monkeypatch.setenv("MERCHANT_WEBHOOKS_SECRET_ARN", secret_arn)
            monkeypatch.setenv("CUSTOMER_NOTICES_TOPIC_ARN", topic)
            reset_caches()
            notification_adapters.reset()
            yield World(load_function("notifier"), load_function("send_webhook"), receiver, sqs, probe_url)
            notification_adapters.reset()
            reset_caches()


def sample_records() -> list[dict[str, Any]]:
    return list(load_event("sqs_notifications")["Records"])


def event_of(record: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(record["body"])["event"])


def test_sample_events_carry_no_card_data() -> None:
    for name in ("task_send_webhook", "sqs_notifications"):
        text = json.dumps(load_event(name))
        assert find_card_data(text) == [] and "tok_" not in text


def test_a_batch_of_every_channel_is_resent(world: World) -> None:
    records = sample_records()
    answer = world.notifier.handler({"Records": records}, FakeContext(function_name="notifier"))
    assert answer == {"batchItemFailures": []}
    event = event_of(records[0])
    [delivery] = world.receiver.receiver.deliveries
    assert (delivery["status"], delivery["signature_valid"], delivery["event"]) == (200, True, event)
    probed = world.probe()
    assert n.customer_notice(event) in probed
    [bus_event] = [p for p in probed if "detail" in p]
    assert (bus_event["detail-type"], bus_event["detail"]) == ("payment.succeeded", event)


def test_only_the_failed_records_are_reported(world: World) -> None:
    records = sample_records()
    webhook, notice, bus = records
    poison = copy.deepcopy(notice)
    poison["messageId"] = "poison"
    poison["body"] = '{"channel": "fax"}'
    world.receiver.receiver.configure_failures(b'{"mode": "always"}')
    answer = world.notifier.handler({"Records": [webhook, notice, poison, bus]}, FakeContext())
    failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    assert failed == {webhook["messageId"], "poison"}
    assert [d["status"] for d in world.receiver.receiver.deliveries] == [503]
    assert len(world.probe()) == 2  # the notice and the event did go out


def test_a_missing_bus_fails_only_the_event_record(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_EVENTS_BUS_NAME", "no-such-bus")
    records = sample_records()
    answer = world.notifier.handler({"Records": records}, FakeContext())
    assert [item["itemIdentifier"] for item in answer["batchItemFailures"]] == [records[2]["messageId"]]


def test_a_merchant_without_endpoint_is_not_retried_forever(world: World) -> None:
    record = sample_records()[0]
    event = event_of(record)
    event["merchant_id"] = "merchant_without_webhooks"
    record["body"] = json.dumps({"channel": "webhook", "event": event})
    answer = world.notifier.handler({"Records": [record]}, FakeContext())
    assert answer == {"batchItemFailures": []} and world.receiver.receiver.deliveries == []


# --- send_webhook ------------------------------------------------------------------------------------------


def test_send_webhook_delivers_a_signed_event(world: World) -> None:
    task = load_event("task_send_webhook")
    result = world.send_webhook.handler(task, FakeContext(function_name="send_webhook"))
    assert result == {"channel": "webhook", "delivered": True, "status": 200, "event_id": task["event"]["id"]}
    [delivery] = world.receiver.receiver.deliveries
    assert delivery["signature_valid"] is True and delivery["event"] == task["event"]


def test_send_webhook_raises_the_asl_error_names(world: World) -> None:
    world.receiver.receiver.configure_failures(b'{"count": 1}')
    with pytest.raises(n.WebhookDeliveryFailed) as info:
        world.send_webhook.handler(load_event("task_send_webhook"), FakeContext())
    assert type(info.value).__name__ == "WebhookDeliveryFailed"  # the state's Retry matches this name


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({}, "event"),
        ({"event": {"id": "evt_1", "type": "payment.succeeded", "created": "t"}}, "event.merchant_id"),
    ],
)
def test_send_webhook_refuses_bad_input_naming_the_field(
    world: World, task: dict[str, Any], field: str
) -> None:
    with pytest.raises(n.InvalidNotification) as info:
        world.send_webhook.handler(task, FakeContext())
    assert str(info.value).startswith(field)
    assert world.receiver.receiver.deliveries == []
