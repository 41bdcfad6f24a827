"""Notifications through the whole local stack: the real EXPRESS ASL (SendNotifications), the real
send_webhook and notifier handlers in worker processes, SNS, EventBridge and SQS on the local endpoint, and
the merchant webhook receiver simulator over HTTP. Payments go through the payment API.

The notification queue's VisibilityTimeout (template parameter NotificationRetrySeconds) is 2 s here: SQS
visibility runs on wall time, so a resend comes about two seconds after a failed try, and a message that keeps
failing reaches the DLQ after ~10 s (1 s was too short a window for a test that mends the fault meanwhile on a
loaded machine: the message was in the DLQ before the fix).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from payeasy import notifications

from local.template_loader import translate_template
from simulators.merchant_webhooks.server import ReceiverServer

from .pan_scan import find_card_data
from .stack import APPROVED, ROOT, AppStack, payment_body, running_app, wait_for

RETRY_SECONDS = 2
WORKFLOW_ATTEMPTS = 3  # SendMerchantWebhook: the first try and its two Retry attempts
MAX_RECEIVES = 5  # the NotificationQueue's maxReceiveCount


class Probes:
    """SQS queues subscribed to the customer notices topic and (through a rule) to the payment event bus."""

    def __init__(self, app: AppStack) -> None:
        self.sqs = app.client("sqs")
        self.notices_url = self._queue("probe-customer-notices")
        self.events_url = self._queue("probe-payment-events")
        sns = app.client("sns")
        topic = next(t for t in app.runtime.model.topics.values() if t.logical_id == "CustomerNoticesTopic")
        topic_arn = next(
            t["TopicArn"]
            for t in sns.list_topics()["Topics"]
            if t["TopicArn"].endswith(":" + topic.topic_name)
        )
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=self._arn(self.notices_url),
            Attributes={"RawMessageDelivery": "true"},
        )
        events = app.client("events")
        self.bus = bus_name(app)
        events.put_rule(
            Name="probe-payment-events",
            EventBusName=self.bus,
            EventPattern='{"source": ["payeasy.payments"]}',
        )
        events.put_targets(
            Rule="probe-payment-events",
            EventBusName=self.bus,
            Targets=[{"Id": "probe", "Arn": self._arn(self.events_url)}],
        )

    def _queue(self, name: str) -> str:
        return str(self.sqs.create_queue(QueueName=name)["QueueUrl"])

    def _arn(self, url: str) -> str:
        return str(
            self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )

    def drain(self, url: str) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def bus_name(app: AppStack) -> str:
    return f"payeasy-payments-{app.runtime.model.parameters.get('Stage', 'dev')}"


def ensure_event_bus(app: AppStack) -> None:
    """Creates the template's bus again (as the runtime's provisioning did at start)."""
    events = app.client("events")
    names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    if bus_name(app) not in names:
        events.create_event_bus(Name=bus_name(app))


@pytest.fixture(scope="module")
def app() -> Iterator[AppStack]:
    with running_app(parameter_overrides={"NotificationRetrySeconds": str(RETRY_SECONDS)}) as stack:
        yield stack


@pytest.fixture(scope="module")
def receiver(app: AppStack) -> ReceiverServer:
    assert app.webhooks is not None  # running_app's receiver, the template's MerchantWebhookBaseUrl
    return app.webhooks


@pytest.fixture(scope="module")
def probes(app: AppStack) -> Probes:
    return Probes(app)


@pytest.fixture(autouse=True)
def receiver_healthy(receiver: ReceiverServer) -> Iterator[None]:
    receiver.receiver.configure_failures(b'{"mode": "off"}')
    yield
    receiver.receiver.configure_failures(b'{"mode": "off"}')


def deliveries_for(receiver: ReceiverServer, payment_id: str) -> list[dict[str, Any]]:
    return [
        d
        for d in receiver.receiver.deliveries
        if isinstance(d["event"], dict) and d["event"]["data"]["object"]["id"] == payment_id
    ]


def queue_url(app: AppStack, logical_id: str) -> str:
    spec = next(q for q in app.runtime.model.queues.values() if q.logical_id == logical_id)
    return str(app.client("sqs").get_queue_url(QueueName=spec.queue_name)["QueueUrl"])


def entered_states(app: AppStack, payment_id: str) -> list[str]:
    sfn = app.client("stepfunctions")
    [execution] = [
        e
        for e in sfn.list_executions(stateMachineArn=app.express_arn)["executions"]
        if e["name"] == payment_id
    ]
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def pay(app: AppStack) -> dict[str, Any]:
    reply = app.api.create(payment_body(APPROVED))
    assert reply.status_code == 200, reply.text
    body = dict(reply.json())
    assert body["status"] == "succeeded"
    return body


def test_a_payment_sends_a_signed_webhook_a_customer_notice_and_an_event(
    app: AppStack, receiver: ReceiverServer, probes: Probes
) -> None:
    probes.drain(probes.notices_url), probes.drain(probes.events_url)
    payment = pay(app)
    [delivery] = deliveries_for(receiver, payment["id"])
    assert (delivery["merchant"], delivery["status"], delivery["signature_valid"]) == (
        "merchant_a",
        200,
        True,
    )
    event = delivery["event"]
    # The signature also verifies with PayEasy's own verifier and the template's local secret.
    assert notifications.verify_signature(
        delivery["signature"], delivery["body"].encode(), "whsec_test_merchant_a_3c9e1f5a7b2d"
    )
    assert (event["type"], event["object"], event["merchant_id"]) == (
        "payment.succeeded",
        "event",
        "merchant_a",
    )
    # The ASL's event equals its Python twin built from the same workflow state.
    state = {
        "payment_id": payment["id"],
        "merchant_id": "merchant_a",
        "amount": 5000,
        "currency": event["data"]["object"]["currency"],
        "capture_method": "automatic",
        "card": {"token": "tok_x", "brand": "visa", "last4": "4242"},
        "outcome": {
            "status": "succeeded",
            "amount_captured": 5000,
            "decline_code": None,
            "failure_code": None,
        },
    }
    assert event == notifications.build_event(state, created=event["created"])
    assert find_card_data(delivery["body"]) == [] and "tok_" not in delivery["body"]

    notices = wait_for(lambda: probes.drain(probes.notices_url), what="the customer notice")
    assert notices == [notifications.customer_notice(event)]
    assert "last4" not in json.dumps(notices) and "brand" not in json.dumps(notices)

    [bus_event] = wait_for(lambda: probes.drain(probes.events_url), what="the EventBridge event")
    assert (bus_event["source"], bus_event["detail-type"]) == ("payeasy.payments", "payment.succeeded")
    assert bus_event["detail"] == event
    # Nothing was queued for a resend.
    assert (
        app.client("sqs").get_queue_attributes(
            QueueUrl=queue_url(app, "NotificationQueue"), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        == "0"
    )


def test_a_failing_receiver_never_fails_the_payment_and_the_notifier_resends(
    app: AppStack, receiver: ReceiverServer
) -> None:
    receiver.receiver.configure_failures(b'{"mode": "always"}')
    payment = pay(app)  # 200 succeeded although the webhook failed
    stored = app.api.get(payment["id"]).json()
    assert stored["status"] == "succeeded"

    # The workflow tried 3 times, then queued it; the notifier tries again (and fails) while it is down.
    def resent() -> list[dict[str, Any]] | None:
        seen = deliveries_for(receiver, payment["id"])
        return seen if len(seen) > WORKFLOW_ATTEMPTS else None

    attempts = wait_for(resent, what="a resend by the notifier")
    assert {d["status"] for d in attempts} == {503}
    states = entered_states(app, payment["id"])
    assert states.count("SendMerchantWebhook") == 1 and "QueueMerchantWebhook" in states
    receiver.receiver.configure_failures(b'{"mode": "off"}')  # the merchant recovers
    delivered = wait_for(
        lambda: [d for d in deliveries_for(receiver, payment["id"]) if d["status"] == 200],
        what="the resent webhook",
    )
    assert all(d["signature_valid"] is True for d in delivered)
    assert {d["event_id"] for d in delivered} == {attempts[0]["event_id"]}  # the same event, resent

    # Delivered: the message was deleted, nothing comes back. (SQS is at-least-once: on a slow machine a
    # message can be received again before the first receive deleted it, so a receiver deduplicates on the
    # event id; more than one duplicate would mean the delete never happened.)
    def ok_count() -> int:
        return len([d for d in deliveries_for(receiver, payment["id"]) if d["status"] == 200])

    time.sleep(RETRY_SECONDS + 1)
    settled = ok_count()
    assert settled <= 2
    time.sleep(RETRY_SECONDS + 1)
    assert ok_count() == settled


def test_a_receiver_that_always_fails_leaves_the_webhook_in_the_dlq_after_5_receives(
    app: AppStack, receiver: ReceiverServer
) -> None:
    receiver.receiver.configure_failures(b'{"mode": "always"}')
    payment = pay(app)
    sqs = app.client("sqs")
    dlq = queue_url(app, "NotificationDLQ")

    def in_dlq() -> list[dict[str, Any]] | None:
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        mine = [m for m in got.get("Messages", []) if payment["id"] in m["Body"]]
        return mine or None

    [message] = wait_for(in_dlq, timeout_s=60, what="the webhook in the DLQ")
    body = json.loads(message["Body"])
    assert (body["channel"], body["event"]["data"]["object"]["id"]) == ("webhook", payment["id"])
    assert body["failed"] == "WebhookDeliveryFailed"
    assert find_card_data(body) == [] and "tok_" not in message["Body"]
    # 3 tries in the workflow, then exactly one per receive: 5.
    assert len(deliveries_for(receiver, payment["id"])) == WORKFLOW_ATTEMPTS + MAX_RECEIVES
    assert app.api.get(payment["id"]).json()["status"] == "succeeded"


def test_a_missing_event_bus_queues_the_event_and_the_notifier_puts_it_once_the_bus_is_back(
    app: AppStack, receiver: ReceiverServer, probes: Probes
) -> None:
    events = app.client("events")
    events.remove_targets(Rule="probe-payment-events", EventBusName=probes.bus, Ids=["probe"])
    events.delete_rule(Name="probe-payment-events", EventBusName=probes.bus)
    events.delete_event_bus(Name=probes.bus)
    probes.drain(probes.events_url)
    try:
        payment = pay(app)
        states = entered_states(app, payment["id"])
        assert "PublishPaymentEvent" in states and "QueuePaymentEvent" in states
        assert "QueueMerchantWebhook" not in states and "QueueCustomerNotice" not in states
        time.sleep(RETRY_SECONDS)  # the notifier fails at least once while the bus is gone
    finally:
        ensure_event_bus(app)
        events.put_rule(
            Name="probe-payment-events",
            EventBusName=probes.bus,
            EventPattern='{"source": ["payeasy.payments"]}',
        )
        events.put_targets(
            Rule="probe-payment-events",
            EventBusName=probes.bus,
            Targets=[{"Id": "probe", "Arn": probes._arn(probes.events_url)}],
        )
    resent = wait_for(
        lambda: [
            e for e in probes.drain(probes.events_url) if e["detail"]["data"]["object"]["id"] == payment["id"]
        ],
        what="the resent EventBridge event",
    )
    assert [(e["detail-type"], e["source"]) for e in resent] == [("payment.succeeded", "payeasy.payments")]
    # The webhook went out once, in the workflow: the event channel failing did not touch it.
    assert [d["status"] for d in deliveries_for(receiver, payment["id"])] == [200]


# --- static: the SendNotifications state and the template's notification resources ------------------------

ASL = json.loads((ROOT / "statemachines" / "payment_express.asl.json").read_text())


def _states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = dict(machine["States"])
    for state in machine["States"].values():
        for branch in state.get("Branches", []):
            found.update(_states(branch))
    return found


def test_every_channel_catches_its_failure_into_the_notification_queue() -> None:
    notify = ASL["States"]["SendNotifications"]
    assert notify["Type"] == "Parallel" and notify["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    states = _states({"States": {"SendNotifications": notify}})
    channels = {
        "SendMerchantWebhook": "webhook",
        "NotifyCustomer": "customer_notice",
        "PublishPaymentEvent": "event",
    }
    for name, channel in channels.items():
        [catch] = states[name]["Catch"]
        queue = states[catch["Next"]]
        assert (
            catch["ErrorEquals"] == ["States.ALL"] and queue["Resource"] == "arn:aws:states:::sqs:sendMessage"
        )
        assert queue["Parameters"]["QueueUrl"] == "${NotificationQueueUrl}"
        assert queue["Parameters"]["MessageBody"]["channel"] == channel
        assert queue["Parameters"]["MessageBody"]["event.$"] == "$.event"
    assert states["NotifyCustomer"]["Resource"] == "arn:aws:states:::sns:publish"
    [entry] = states["PublishPaymentEvent"]["Parameters"]["Entries"]
    assert (entry["Source"], entry["DetailType.$"], entry["Detail.$"]) == (
        notifications.EVENT_SOURCE,
        "$.event.type",
        "$.event",
    )


def test_the_webhook_gets_two_fast_retries_only() -> None:
    [webhook] = [
        r for r in _states(ASL)["SendMerchantWebhook"]["Retry"] if "WebhookDeliveryFailed" in r["ErrorEquals"]
    ]
    assert webhook["MaxAttempts"] == WORKFLOW_ATTEMPTS - 1 and webhook["MaxDelaySeconds"] <= 2


def test_the_event_is_built_from_the_card_brand_and_last4_only() -> None:
    text = json.dumps(_states(ASL)["BuildPaymentEvent"]["Parameters"])
    card_paths = set(re.findall(r"\$\.card\.\w+", text))
    assert card_paths == {"$.card.brand", "$.card.last4"}
    assert '$.card"' not in text and "token" not in text


def test_the_template_wires_the_queue_the_dlq_and_the_notifier() -> None:
    cfn = translate_template(ROOT / "template.yaml")["Resources"]
    queue = cfn["NotificationQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["NotificationDLQ", "Arn"]},
        "maxReceiveCount": MAX_RECEIVES,
    }
    assert (
        queue["SqsManagedSseEnabled"] is True and cfn["NotificationDLQ"]["Properties"]["SqsManagedSseEnabled"]
    )
    [mapping] = [
        r["Properties"]
        for r in cfn.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": "NotifierFunction"}
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["NotificationQueue", "Arn"]}
    role = json.dumps(cfn["PaymentExpressStateMachineRole"]["Properties"]["Policies"])
    for action in ("sqs:SendMessage", "sns:Publish", "events:PutEvents", "lambda:InvokeFunction"):
        assert action in role, action
    assert cfn["PaymentEventsBus"]["Type"] == "AWS::Events::EventBus"
