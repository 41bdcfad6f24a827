"""Helpers of the failure-handling tests: acquirer faults, the alert/summary topics read through SQS, payments
started the way the router starts them, reconciliation runs and the acquirer's view."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

import requests
from payeasy.payment import Payment, execution_name, new_payment_id, utc_now_iso
from payeasy.repository import DynamoPaymentRepository
from payeasy.status import PaymentStatus

from simulators.acquirer.replies import Reply

from .stack import ACQUIRER_KEY, AppStack, card

LIVE = {"authorized", "capture_failed"}


def operation(method: str, path: str) -> str:
    """The acquirer operation a request is (the names the fault rules use)."""
    parts = [p for p in path.split("/") if p]
    match method, parts:
        case "POST", ["v1", "authorizations"]:
            return "authorize"
        case "POST", ["v1", "authorizations", _, "capture"]:
            return "capture"
        case "POST", ["v1", "authorizations", _, "void"]:
            return "void"
        case "GET", ["v1", "authorizations", _]:
            return "retrieve"
        case "GET", ["v1", "authorizations"]:
            return "lookup"
        case "POST", ["v1", "refunds"]:
            return "refund"
    return "other"


class Faults:
    """Acquirer faults by wrapping the in-process simulator's request handler (a wrapper proxy: the same
    outcomes as the simulator's fault API, plus rules per operation for deterministic row tests).

    - ``timeout``: the acquirer processes the request, the answer comes after the client gave up;
    - ``error``: 503 and nothing processed;
    - ``slow``: answered late but within the client timeout;
    - ``reject``: 400, nothing processed (the client raises AcquirerRejected: a system error).
    """

    def __init__(self, app: AppStack, *, timeout_ms: int, slow_ms: int) -> None:
        self._acquirer = app.acquirer.acquirer
        self._original = self._acquirer.handle
        self.timeout_ms, self.slow_ms = timeout_ms, slow_ms
        self.rules: dict[str, str | list[str]] = {}
        self.rates: dict[str, float] = {}
        self.operations: set[str] = set()
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self._acquirer.handle = self._handle  # type: ignore[method-assign]

    def always(self, **rules: str | list[str]) -> None:
        """``always(capture="timeout", retrieve=["timeout", "timeout"])``: every such request fails that way;
        a list is used up one request at a time (then the operation works again)."""
        self.rules = {op: list(rule) if isinstance(rule, list) else rule for op, rule in rules.items()}

    def random(self, *, seed: int, operations: list[str], **rates: float) -> None:
        """``random(seed=7, operations=[...], timeout=0.1, error=0.05, slow=0.1)``."""
        self._rng = random.Random(seed)
        self.rates, self.operations = dict(rates), set(operations)

    def clear(self) -> None:
        self.rules, self.rates, self.operations = {}, {}, set()

    def close(self) -> None:
        self.clear()
        self._acquirer.handle = self._original  # type: ignore[method-assign]

    def _pick(self, op: str) -> str | None:
        if op in self.rules:
            rule = self.rules[op]
            if isinstance(rule, str):
                return rule
            with self._lock:
                return rule.pop(0) if rule else None
        if op not in self.operations:
            return None
        with self._lock:
            roll = self._rng.random()
        for kind in ("timeout", "error", "slow"):
            rate = self.rates.get(kind, 0.0)
            if roll < rate:
                return kind
            roll -= rate
        return None

    def _handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw_body: bytes
    ) -> Reply:
        fault = self._pick(operation(method, path))
        if fault:
            with self._lock:
                self.injected[fault] = self.injected.get(fault, 0) + 1
        if fault == "reject":  # a 4xx the client treats as our bug (AcquirerRejected): a system error
            return Reply(400, {"error": {"code": "injected", "message": "injected", "param": None}})
        if fault == "error":
            return Reply(
                503, {"error": {"code": "processor_unavailable", "message": "injected", "param": None}}
            )
        reply = self._original(method, path, query, headers, raw_body)
        if fault == "timeout":
            reply.delay_ms += self.timeout_ms
        elif fault == "slow":
            reply.delay_ms += self.slow_ms
        return reply


class TopicTap:
    """An SQS queue subscribed to an SNS topic of the stack: what the topic published, in order."""

    def __init__(self, app: AppStack, topic_logical_id: str) -> None:
        self._sqs = app.client("sqs")
        topic = next(t for t in app.runtime.model.topics.values() if t.logical_id == topic_logical_id)
        self.url = self._sqs.create_queue(QueueName=f"tap-{topic_logical_id}-{uuid.uuid4().hex[:6]}")[
            "QueueUrl"
        ]
        arn = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        app.client("sns").subscribe(TopicArn=topic.arn, Protocol="sqs", Endpoint=arn)

    def drain(self) -> list[dict[str, Any]]:
        """Every message published since the last drain: ``{"subject", "message"}`` (message parsed)."""
        found: list[dict[str, Any]] = []
        while True:
            batch = self._sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                envelope = json.loads(message["Body"])
                found.append({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])})
                self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


def tokenize(app: AppStack, number: str) -> dict[str, Any]:
    return dict(
        requests.post(
            f"{app.acquirer.url}/v1/tokens",
            json=card(number),
            headers={"Authorization": f"Bearer {ACQUIRER_KEY}"},
            timeout=10,
        ).json()
    )


def start_payment(
    app: AppStack,
    number: str,
    *,
    amount: int = 5000,
    capture_method: str = "automatic",
    token: dict[str, Any] | None = None,
    sfn: Any = None,
) -> tuple[str, dict[str, Any]]:
    """What the router does for an EXPRESS payment: record it `processing`, then StartSyncExecution named
    after it with the router's input. (payment id, StartSyncExecution answer)."""
    token = token or tokenize(app, number)
    payment = Payment(
        payment_id=new_payment_id(),
        merchant_id="merchant_a",
        status=PaymentStatus.PROCESSING,
        amount=amount,
        currency="JPY",
        capture_method=capture_method,
        card={"token": token["id"], "brand": token["brand"], "last4": token["last4"]},
        workflow="express",
        created=int(time.time()),
        updated_at=utc_now_iso(),
    )
    DynamoPaymentRepository(app.table_name("PaymentsTable"), client=app.client("dynamodb")).create(payment)
    execution_input = {
        "payment_id": payment.payment_id,
        "merchant_id": payment.merchant_id,
        "amount": amount,
        "currency": "JPY",
        "capture_method": capture_method,
        "card": payment.card,
    }
    result = (sfn or app.client("stepfunctions")).start_sync_execution(
        stateMachineArn=app.express_arn,
        name=execution_name(payment.payment_id),
        input=json.dumps(execution_input),
    )
    return payment.payment_id, dict(result)


def machine_arn(app: AppStack, logical_id: str) -> str:
    return next(sm.arn for sm in app.runtime.model.state_machines.values() if sm.logical_id == logical_id)


def reconcile(app: AppStack, timeout_s: float = 60.0) -> dict[str, Any]:
    """Runs the reconciliation workflow once (as its schedule does) and waits for it: describe_execution."""
    sfn = app.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=machine_arn(app, "ReconciliationStateMachine"),
        name=f"test-{uuid.uuid4().hex}",
        input="{}",
    )["executionArn"]
    deadline = time.monotonic() + timeout_s
    while True:
        execution = sfn.describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING":
            return dict(execution)
        assert time.monotonic() < deadline, f"reconciliation still running after {timeout_s} s"
        time.sleep(0.05)


def item(app: AppStack, payment_id: str) -> dict[str, Any]:
    """The Payments table item, attribute values unwrapped (numbers as int, BOOL as bool)."""
    raw = app.client("dynamodb").get_item(
        TableName=app.table_name("PaymentsTable"), Key={"payment_id": {"S": payment_id}}, ConsistentRead=True
    )["Item"]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind, inner = next(iter(value.items()))
        out[key] = int(inner) if kind == "N" else inner
    return out


def flagged(app: AppStack) -> list[dict[str, Any]]:
    """Every item of the sparse ReconcileIndex (Query per reason, like the job)."""
    from payeasy.reconcile_flags import Reason

    client = app.client("dynamodb")
    found: list[dict[str, Any]] = []
    for reason in Reason:
        found += client.query(
            TableName=app.table_name("PaymentsTable"),
            IndexName="ReconcileIndex",
            KeyConditionExpression="reconcile_reason = :r",
            ExpressionAttributeValues={":r": {"S": reason.value}},
        )["Items"]
    return found


def queue_url(app: AppStack, logical_id: str) -> str:
    name = next(q.queue_name for q in app.runtime.model.queues.values() if q.logical_id == logical_id)
    return str(app.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def queue_depth(app: AppStack, logical_id: str) -> int:
    attributes = app.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(app, logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def peek_queue(app: AppStack, logical_id: str) -> list[dict[str, Any]]:
    """The queue's messages, made visible again at once (VisibilityTimeout 0)."""
    sqs = app.client("sqs")
    url = queue_url(app, logical_id)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages", []
    )
    return [json.loads(m["Body"]) for m in messages]


def live_authorizations(app: AppStack) -> list[dict[str, Any]]:
    return [a for a in app.acquirer.acquirer.ledger().body["authorizations"] if a["status"] in LIVE]


def invocations(events: list[dict[str, Any]], logical_id: str) -> int:
    """How many times the execution invoked the function (attempts, retries included)."""
    return sum(
        1
        for e in events
        if e["type"] == "LambdaFunctionScheduled"
        and f"-{logical_id}" in e["lambdaFunctionScheduledEventDetails"]["resource"]
    )


def take_queue(app: AppStack, logical_id: str) -> list[dict[str, Any]]:
    """Receives and deletes every message of the queue (its bodies)."""
    sqs = app.client("sqs")
    url = queue_url(app, logical_id)
    bodies: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies
