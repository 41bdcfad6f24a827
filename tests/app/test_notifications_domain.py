"""payeasy.notifications: the payment event, the webhook signature (vectors computed with openssl), the
sender against a real HTTP receiver, resend dispatch, and the Secrets Manager endpoint adapter (moto)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from moto import mock_aws
from payeasy import notifications as n
from payeasy.notification_adapters import EventBridgePublisher, SecretWebhookEndpoints, SnsNoticePublisher

from simulators.merchant_webhooks.core import Receiver
from simulators.merchant_webhooks.server import ReceiverServer

from .pan_scan import find_card_data

SECRET = "whsec_test_vector_secret_0001"
# printf '%s' '1700000000.{"id":"evt_1","object":"event"}' | openssl dgst -sha256 -hmac "$SECRET"
VECTOR_BODY = b'{"id":"evt_1","object":"event"}'
VECTOR_HEX = "6c795fc823c98e4bb0dcafbc988dfc0950e72de9c56c1a77172b46a506c7152d"


def state(status: str = "succeeded", **outcome: Any) -> dict[str, Any]:
    return {
        "payment_id": "pay_abc",
        "merchant_id": "merchant_a",
        "amount": 5000,
        "currency": "JPY",
        "capture_method": "automatic",
        "card": {
            "token": "tok_secretvaulttoken",
            "brand": "visa",
            "last4": "4242",
            "number": "4242424242424242",
        },
        "outcome": {
            "status": status,
            "amount_captured": 5000 if status == "succeeded" else 0,
            "decline_code": None,
            "failure_code": None,
            **outcome,
        },
    }


# --- the event ---------------------------------------------------------------------------------------------


def test_the_event_has_the_stripe_shape_and_a_payment_summary() -> None:
    event = n.build_event(state(), created="2026-11-23T12:00:00Z")
    assert event == {
        "id": "evt_5ee944d3f9eb6996a784099b3ff4ae9346745aad",  # sha1("pay_abc:payment.succeeded")
        "object": "event",
        "type": "payment.succeeded",
        "created": "2026-11-23T12:00:00Z",
        "merchant_id": "merchant_a",
        "data": {
            "object": {
                "id": "pay_abc",
                "object": "payment",
                "status": "succeeded",
                "amount": 5000,
                "amount_received": 5000,
                "currency": "JPY",
                "capture_method": "automatic",
                "card": {"brand": "visa", "last4": "4242"},
                "decline_code": None,
                "failure_code": None,
            }
        },
    }


def test_the_event_never_carries_the_pan_cvc_or_token_even_if_the_state_does() -> None:
    leaky = state()
    leaky["card"]["cvc"] = "123"
    text = json.dumps(n.build_event(leaky, created="2026-11-23T12:00:00Z"))
    assert find_card_data(text) == []
    assert "tok_" not in text and "123" not in text.replace("2026", "")


@pytest.mark.parametrize(
    ("status", "extra", "expected_type"),
    [
        ("succeeded", {}, "payment.succeeded"),
        ("requires_capture", {}, "payment.requires_capture"),
        ("failed", {"decline_code": "insufficient_funds", "failure_code": "card_declined"}, "payment.failed"),
        ("canceled", {}, "payment.canceled"),
    ],
)
def test_event_type_follows_the_outcome(status: str, extra: dict[str, Any], expected_type: str) -> None:
    event = n.build_event(state(status, **extra), created="t")
    assert event["type"] == expected_type
    assert event["data"]["object"]["decline_code"] == extra.get("decline_code")
    # One id per payment and type: a resend keeps it, another type of the same payment gets its own.
    assert event["id"] == n.build_event(state(status, **extra), created="later")["id"]
    assert (event["id"] == n.build_event(state("succeeded"), created="t")["id"]) == (status == "succeeded")


def test_an_unknown_status_has_no_event() -> None:
    with pytest.raises(n.InvalidNotification, match=r"outcome\.status"):
        n.build_event(state("exploded"), created="t")


def test_the_customer_notice_has_no_card_data() -> None:
    notice = n.customer_notice(n.build_event(state(), created="t"))
    assert notice == {
        "type": "payment.succeeded",
        "event_id": "evt_5ee944d3f9eb6996a784099b3ff4ae9346745aad",
        "merchant_id": "merchant_a",
        "payment_id": "pay_abc",
        "status": "succeeded",
        "amount": 5000,
        "currency": "JPY",
        "created": "t",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "body"),
        ('{"channel": "fax", "event": {}}', "channel"),
        ('{"channel": "webhook"}', "event"),
        (
            '{"channel": "webhook", "event": {"id": "evt_1", "type": "payment.succeeded", "created": "t"}}',
            "event.merchant_id",
        ),
        (
            '{"channel": "event", "event": {"id": "e", "type": "payment.exploded", "created": "t",'
            ' "merchant_id": "m"}}',
            "event.type",
        ),
    ],
)
def test_a_bad_queued_message_is_refused_naming_the_field(body: str, field: str) -> None:
    with pytest.raises(n.InvalidNotification) as info:
        n.QueuedNotification.parse(body)
    assert str(info.value).startswith(field)


def test_a_queued_message_round_trips() -> None:
    event = n.build_event(state(), created="t")
    message = n.QueuedNotification.parse(json.dumps({"channel": "webhook", "event": event, "failed": "X"}))
    assert (message.channel, message.merchant_id, message.event) == ("webhook", "merchant_a", event)


# --- signing -----------------------------------------------------------------------------------------------


def test_signature_matches_the_openssl_vector() -> None:
    assert n.compute_signature(SECRET, 1700000000, VECTOR_BODY) == VECTOR_HEX
    assert n.signature_header(SECRET, VECTOR_BODY, timestamp=1700000000) == f"t=1700000000,v1={VECTOR_HEX}"


def test_verify_accepts_within_tolerance_and_any_matching_v1() -> None:
    header = f"t=1700000000,v1={'0' * 64},v1={VECTOR_HEX}"
    assert n.verify_signature(header, VECTOR_BODY, SECRET, now=1700000000 + 299) == 1700000000


@pytest.mark.parametrize(
    ("header", "body", "secret", "now", "reason"),
    [
        (f"t=1700000000,v1={VECTOR_HEX}", VECTOR_BODY, SECRET, 1700000000 + 301, "tolerance"),
        (f"t=1700000000,v1={VECTOR_HEX}", VECTOR_BODY, SECRET, 1700000000 - 301, "tolerance"),
        (f"t=1700000000,v1={VECTOR_HEX}", VECTOR_BODY + b" ", SECRET, 1700000000, "no v1"),
        (f"t=1700000000,v1={VECTOR_HEX}", VECTOR_BODY, "whsec_other", 1700000000, "no v1"),
        (f"t=1700000001,v1={VECTOR_HEX}", VECTOR_BODY, SECRET, 1700000000, "no v1"),
        (f"v1={VECTOR_HEX}", VECTOR_BODY, SECRET, 1700000000, "needs t="),
        ("t=abc,v1=00", VECTOR_BODY, SECRET, 1700000000, "integer"),
        ("", VECTOR_BODY, SECRET, 1700000000, "needs t="),
    ],
)
def test_verify_refuses(header: str, body: bytes, secret: str, now: float, reason: str) -> None:
    with pytest.raises(n.SignatureVerificationError, match=reason):
        n.verify_signature(header, body, secret, now=now)


def test_the_endpoint_repr_hides_the_secret() -> None:
    assert "whsec" not in repr(n.WebhookEndpoint("http://x", "whsec_hidden_value_12345"))


# --- the sender, against the receiver simulator ------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer(Receiver(secrets={"merchant_a": SECRET}), port=0) as server:
        yield server


class Endpoints:
    def __init__(self, mapping: dict[str, n.WebhookEndpoint]) -> None:
        self.mapping = mapping

    def endpoint_for(self, merchant_id: str) -> n.WebhookEndpoint | None:
        return self.mapping.get(merchant_id)


def test_the_sender_delivers_a_body_the_receiver_verifies(receiver: ReceiverServer) -> None:
    event = n.build_event(state(), created="t")
    with requests.Session() as session:
        result = n.deliver_webhook(
            "merchant_a",
            event,
            Endpoints({"merchant_a": n.WebhookEndpoint(receiver.webhook_url("merchant_a"), SECRET)}),
            n.WebhookSender(session),
        )
    assert result == {"channel": "webhook", "delivered": True, "status": 200, "event_id": event["id"]}
    [delivery] = receiver.receiver.deliveries
    assert delivery["signature_valid"] is True and delivery["event"] == event
    assert n.verify_signature(delivery["signature"], delivery["body"].encode(), SECRET)


def test_a_merchant_without_an_endpoint_is_skipped() -> None:
    event = n.build_event(state(), created="t")
    with requests.Session() as session:
        result = n.deliver_webhook("merchant_z", event, Endpoints({}), n.WebhookSender(session))
    assert result["delivered"] is False and result["reason"] == "no_endpoint"


def test_5xx_timeout_and_connection_errors_are_retryable_other_4xx_are_rejections(
    receiver: ReceiverServer,
) -> None:
    event = n.build_event(state(), created="t")
    with requests.Session() as session:
        sender = n.WebhookSender(session, timeout_s=0.5)
        receiver.receiver.configure_failures(b'{"count": 1}')
        with pytest.raises(n.WebhookDeliveryFailed, match="503"):
            sender.send(n.WebhookEndpoint(receiver.webhook_url("merchant_a"), SECRET), event)
        with pytest.raises(n.WebhookRejected, match="400"):  # wrong secret: the merchant refuses it
            sender.send(
                n.WebhookEndpoint(receiver.webhook_url("merchant_a"), "whsec_wrong_secret_000"), event
            )
        with pytest.raises(n.WebhookDeliveryFailed, match="connection error"):
            sender.send(n.WebhookEndpoint("http://127.0.0.1:9/webhooks/x", SECRET), event)
        with socket.socket() as silent, pytest.raises(n.WebhookDeliveryFailed, match="timeout"):
            # listens (the kernel completes the handshake) but never answers: a read timeout
            silent.bind(("127.0.0.1", 0))
            silent.listen(1)
            port = silent.getsockname()[1]
            sender.send(n.WebhookEndpoint(f"http://127.0.0.1:{port}/webhooks/x", SECRET), event)
        assert sender.send(n.WebhookEndpoint(receiver.webhook_url("merchant_a"), SECRET), event).status == 200


# --- resend dispatch ---------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def publish_notice(self, notice: dict[str, Any]) -> str:
        self.notices.append(notice)
        return f"msg-{len(self.notices)}"

    def put_event(self, event: dict[str, Any]) -> str:
        self.events.append(event)
        return f"bus-{len(self.events)}"


def test_resend_dispatches_each_channel() -> None:
    event = n.build_event(state(), created="t")
    recorder = Recorder()
    with requests.Session() as session:
        kwargs: dict[str, Any] = {
            "endpoints": Endpoints({}),
            "sender": n.WebhookSender(session),
            "notices": recorder,
            "events": recorder,
        }
        assert n.resend(n.QueuedNotification("customer_notice", event), **kwargs)["message_id"] == "msg-1"
        assert n.resend(n.QueuedNotification("event", event), **kwargs)["event_id"] == "bus-1"
        assert n.resend(n.QueuedNotification("webhook", event), **kwargs)["reason"] == "no_endpoint"
    assert recorder.notices == [n.customer_notice(event)] and recorder.events == [event]


# --- AWS adapters (moto) -----------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def test_secret_endpoints_read_the_one_secret_and_cache_it(aws: None) -> None:
    client = boto3.client("secretsmanager")
    value = {"merchant_a": {"url": "http://a/webhooks/merchant_a", "secret": "whsec_a_secret_value_1"}}
    client.create_secret(Name="payeasy/dev/merchant-webhooks", SecretString=json.dumps(value))
    endpoints = SecretWebhookEndpoints("payeasy/dev/merchant-webhooks", SecretsProvider(boto3_client=client))
    assert endpoints.endpoint_for("merchant_a") == n.WebhookEndpoint(
        "http://a/webhooks/merchant_a", "whsec_a_secret_value_1"
    )
    assert endpoints.endpoint_for("merchant_b") is None
    client.put_secret_value(SecretId="payeasy/dev/merchant-webhooks", SecretString="{}")
    assert endpoints.endpoint_for("merchant_a") is not None  # cached for SECRET_MAX_AGE_SECONDS


def test_sns_and_eventbridge_publishers(aws: None) -> None:
    sns, sqs, events = boto3.client("sns"), boto3.client("sqs"), boto3.client("events")
    topic = sns.create_topic(Name="notices")["TopicArn"]
    queue = sqs.create_queue(QueueName="probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    events.create_event_bus(Name="payeasy-payments-dev")
    events.put_rule(
        Name="all", EventBusName="payeasy-payments-dev", EventPattern='{"source": ["payeasy.payments"]}'
    )
    events.put_targets(
        Rule="all", EventBusName="payeasy-payments-dev", Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    event = n.build_event(state(), created="t")

    SnsNoticePublisher(topic, sns).publish_notice(n.customer_notice(event))
    assert EventBridgePublisher("payeasy-payments-dev", events).put_event(event)
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    ]
    assert n.customer_notice(event) in bodies
    [bus_event] = [b for b in bodies if "detail" in b]
    assert (bus_event["detail-type"], bus_event["source"], bus_event["detail"]) == (
        "payment.succeeded",
        "payeasy.payments",
        event,
    )
