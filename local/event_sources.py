"""SQS and DynamoDB stream -> Lambda event source mappings, SNS -> Lambda subscriptions, as Lambda runs them.

Timing note: the pollers' own waits (long polls, the batching window, throttle backoff) are real time, not
the runtime clock. moto's SQS visibility timeouts and long polls run on wall time, so a message the function
failed comes back after ``VisibilityTimeout`` real seconds whatever the clock says; measuring the batching
window on a manual virtual clock would hold a partial batch until a test moved time. Invocations are
marked ``clock.busy()`` so an auto clock never jumps while a function runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.clock import Clock
from local.errors import LocalRuntimeError
from local.model import EventSourceMappingSpec, StackModel
from local.ports import (
    InvokeResult,
    LambdaInvoker,
    LambdaServiceError,
    ResourceNotFoundException,
    TooManyRequestsException,
)
from local.provision import client
from local.stream_sources import StreamPoller

log = logging.getLogger(__name__)

DEFAULT_MAXIMUM_CONCURRENCY = 2  # Lambda's floor is 2 concurrent batches per SQS mapping
_LAMBDA_ATTRIBUTES = (  # the system attributes Lambda copies into each record, in its order
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
)
_BRIDGE_VISIBILITY = "5"  # seconds before an undelivered SNS message (throttled) is tried again


class EventSourceRunner:
    def __init__(
        self,
        model: StackModel,
        invoker: LambdaInvoker,
        *,
        endpoint_url: str,
        clock: Clock,
        queue_urls: dict[str, str],
        poll_seconds: int = 1,
    ) -> None:
        self.model = model
        self.invoker = invoker
        self.endpoint_url = endpoint_url
        self.clock = clock
        self.queue_urls = queue_urls
        self.poll_seconds = poll_seconds  # long-poll length: bounds how long stop() waits
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._demand: list[threading.Event] = []  # one per SQS mapping, see SqsPoller
        self.bridges: list[SnsBridge] = []

    @property
    def stopping(self) -> threading.Event:
        """Set by stop(): every poller and bridge thread watches it."""
        return self._stop

    def client(self, service: str) -> Any:
        return client(service, self.endpoint_url, self.model.region)

    def start(self) -> EventSourceRunner:
        self._stop.clear()
        try:
            for mapping in self.model.event_source_mappings:
                if mapping.enabled:
                    self._start_mapping(mapping)
            for topic in self.model.topics.values():
                for sub in topic.subscriptions:
                    if sub.protocol == "lambda":
                        bridge = SnsBridge.create(self, topic.topic_name, sub.endpoint, sub.filter_policy)
                        self.bridges.append(bridge)
                        self._spawn(f"sns-bridge-{bridge.function}", bridge.run)
        except BaseException:
            self.stop()  # the caller registers stop() only once start() has succeeded
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for demand in self._demand:  # wakes the pollers waiting for work
            demand.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        if self._threads:
            log.warning("event source threads still running after stop: %s", [t.name for t in self._threads])

    def _start_mapping(self, mapping: EventSourceMappingSpec) -> None:
        if mapping.is_stream:
            stream = StreamPoller(self, mapping)
            self._spawn(f"stream-{mapping.logical_id}", stream.run)
            return
        name = mapping.event_source_arn.rsplit(":", 1)[-1]
        url = self.queue_urls.get(name)
        if url is None:
            raise LocalRuntimeError(
                f"event source mapping {mapping.logical_id}: queue {name} was not provisioned"
            )
        sqs = self.client("sqs")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "VisibilityTimeout"])
        queue = _Queue(
            url, attributes["Attributes"]["QueueArn"], int(attributes["Attributes"]["VisibilityTimeout"])
        )
        demand = threading.Event()
        self._demand.append(demand)
        for index in range(mapping.maximum_concurrency or DEFAULT_MAXIMUM_CONCURRENCY):
            poller = SqsPoller(self, mapping, queue, demand=demand, lead=index == 0)
            self._spawn(f"sqs-{mapping.logical_id}-{index}", poller.run)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def invoke(self, function: str, payload: dict[str, Any], invocation_type: str) -> InvokeResult:
        with self.clock.busy():
            return self.invoker.invoke(
                function, json.dumps(payload).encode(), invocation_type=invocation_type
            )


@dataclass(frozen=True)
class _Queue:
    url: str
    arn: str
    visibility_timeout: int


class SqsPoller:
    """One of a mapping's concurrent pollers: gather a batch, invoke synchronously, delete what succeeded.

    As Lambda scales its pollers with the queue's backlog, an idle mapping long-polls with its ``lead``
    poller only: the others wait on ``demand``, which the pollers set when they receive messages and the
    lead clears when a long poll comes back empty (each idle poller's empty receive a second cost ~0.5 % of
    the runtime's CPU under load, ~40 % of an idle stack's). Messages, batches and concurrency: unchanged."""

    def __init__(
        self,
        runner: EventSourceRunner,
        mapping: EventSourceMappingSpec,
        queue: _Queue,
        *,
        demand: threading.Event | None = None,
        lead: bool = True,
    ) -> None:
        self.runner = runner
        self.mapping = mapping
        self.queue = queue
        self.sqs = runner.client("sqs")
        self.stop = runner.stopping
        self.demand = demand if demand is not None else threading.Event()
        self.lead = lead

    def run(self) -> None:
        while not self.stop.is_set():
            # stop() sets demand too: a woken poller must not start a long poll then (stop would wait for it)
            if not self.lead and (not self.demand.wait(1.0) or self.stop.is_set()):
                continue
            try:
                batch = self.gather()
                if batch:
                    self.demand.set()
                    self.process(batch)
                elif self.lead:
                    self.demand.clear()
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                log.warning("%s: polling %s failed: %s", self.mapping.logical_id, self.queue.url, error)
                self.stop.wait(1.0)
            except Exception:  # an invoker bug must not end the poller: messages would stop flowing
                log.exception("%s: poller error", self.mapping.logical_id)
                self.stop.wait(1.0)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def gather(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages: the first receive long-polls; further ones fill the batching window."""
        size = max(1, self.mapping.batch_size)
        batch = self._receive(size, self.runner.poll_seconds)
        if not batch:
            return batch
        window_end = time.monotonic() + self.mapping.maximum_batching_window_seconds
        while len(batch) < size and not self.stop.is_set():
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(size - len(batch), 0)
            batch.extend(more)
            if not more:
                self.stop.wait(min(0.05, remaining))
        return batch

    def process(self, batch: list[dict[str, Any]]) -> None:
        received_at = time.monotonic()
        event = {"Records": [self.record(message) for message in batch]}
        function = self.mapping.function_name
        backoff = 0.05
        while True:
            try:
                result = self.runner.invoke(function, event, "RequestResponse")
                break
            except TooManyRequestsException:
                # Keep the batch in hand and retry while it is still invisible; past that it returns to the
                # queue by itself (Lambda does the same: a throttle never loses a message).
                left = received_at + self.queue.visibility_timeout - time.monotonic()
                if left <= backoff or self.stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 1.0)
            except LambdaServiceError as error:
                if not self.stop.is_set():  # at shutdown the pool refuses or kills: expected, not news
                    log.warning("%s: invoking %s failed: %s", self.mapping.logical_id, function, error)
                return
        if result.function_error:
            log.info("%s: function error; the batch returns after the visibility timeout", function)
            return
        if self.mapping.report_batch_item_failures:
            failed = failed_message_ids(result.payload, {m["MessageId"] for m in batch})
            if failed is None:
                log.info("%s: invalid batchItemFailures response; the whole batch fails", function)
                return
        else:
            failed = set()
        self.delete([m for m in batch if m["MessageId"] not in failed])

    def delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            answer = self.sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=entries)
            for failure in answer.get("Failed", []):
                log.warning("%s: delete failed: %s", self.mapping.logical_id, failure)

    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One SQS message exactly as Lambda puts it in ``Records``."""
        system = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": {key: system[key] for key in _LAMBDA_ATTRIBUTES if key in system},
            "messageAttributes": {
                name: _lambda_message_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue.arn,
            "awsRegion": self.runner.model.region,
        }


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])]
    out["dataType"] = value.get("DataType", "String")
    return out


def failed_message_ids(payload: bytes, batch_ids: set[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response names, or None when Lambda would fail the whole
    batch (invalid JSON, an itemIdentifier that is missing, empty or not in the batch)."""
    text = payload.decode("utf-8", errors="replace").strip()
    if not text:
        return set()
    try:
        response = json.loads(text)
    except ValueError:
        return None
    if not isinstance(response, dict):
        return set()
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    failed: set[str] = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        failed.add(identifier)
    return failed


class SnsBridge:
    """Delivers an SNS topic to a Lambda function: moto cannot run Lambda subscribers, so an internal SQS
    queue is subscribed to the topic (with the subscription's filter policy) and each message it receives
    is invoked asynchronously with the SNS event shape."""

    def __init__(
        self, runner: EventSourceRunner, function: str, topic_arn: str, subscription_arn: str, queue_url: str
    ) -> None:
        self.runner = runner
        self.function = function
        self.topic_arn = topic_arn
        self.subscription_arn = subscription_arn
        self.queue_url = queue_url
        self.sqs = runner.client("sqs")
        self.stop = runner.stopping

    @classmethod
    def create(
        cls, runner: EventSourceRunner, topic_name: str, endpoint: str, filter_policy: dict[str, Any] | None
    ) -> SnsBridge:
        spec = runner.model.function_by_arn_or_name(endpoint)
        function = spec.function_name if spec else _function_name(endpoint)
        sns, sqs = runner.client("sns"), runner.client("sqs")
        topic_arn = _topic_arn(sns, topic_name)
        fifo = topic_name.endswith(".fifo")
        digest = hashlib.sha1(f"{topic_arn}|{function}".encode()).hexdigest()[:16]
        attributes = {"VisibilityTimeout": _BRIDGE_VISIBILITY}
        if fifo:
            attributes["FifoQueue"] = "true"
        queue_url = sqs.create_queue(
            QueueName=f"local-sns-bridge-{digest}{'.fifo' if fifo else ''}", Attributes=attributes
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sub_attributes = {"FilterPolicy": json.dumps(filter_policy)} if filter_policy else {}
        subscription_arn = sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=sub_attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return cls(runner, function, topic_arn, subscription_arn, queue_url)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.runner.poll_seconds
                )
                for message in answer.get("Messages", []):
                    if self.deliver(message["Body"]):
                        self.sqs.delete_message(
                            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                        )
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                log.warning("SNS bridge to %s failed: %s", self.function, error)
                self.stop.wait(1.0)
            except Exception:  # keep delivering whatever one message did
                log.exception("SNS bridge to %s failed", self.function)
                self.stop.wait(1.0)

    def deliver(self, body: str) -> bool:
        """True when the message is done with (delivered, not an SNS envelope, or no such function)."""
        try:
            event = self.event(json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("SNS bridge to %s: dropped a message that is not an SNS notification", self.function)
            return True
        try:
            self.runner.invoke(self.function, event, "Event")
            return True
        except TooManyRequestsException:
            return False  # comes back after the bridge queue's visibility timeout
        except ResourceNotFoundException as error:
            log.warning("SNS message for %s dropped: %s", self.function, error.message)
            return True
        except LambdaServiceError as error:
            if not self.stop.is_set():  # at shutdown the pool refuses new invocations
                log.warning("SNS delivery to %s failed: %s", self.function, error.message)
            return False

    def event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        region = self.runner.model.region
        return {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": self.subscription_arn,
                    "Sns": {
                        "Type": envelope.get("Type", "Notification"),
                        "MessageId": envelope["MessageId"],
                        "TopicArn": envelope.get("TopicArn", self.topic_arn),
                        "Subject": envelope.get("Subject"),
                        "Message": envelope.get("Message", ""),
                        "Timestamp": envelope.get("Timestamp", ""),
                        "SignatureVersion": envelope.get("SignatureVersion", "1"),
                        "Signature": envelope.get("Signature", ""),
                        "SigningCertUrl": envelope.get("SigningCertURL", ""),
                        # moto's own UnsubscribeURL names a made-up subscription in us-east-1
                        "UnsubscribeUrl": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
                        f"&SubscriptionArn={self.subscription_arn}",
                        "MessageAttributes": envelope.get("MessageAttributes", {}),
                    },
                }
            ]
        }


def _topic_arn(sns: Any, name: str) -> str:
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
    raise LocalRuntimeError(f"SNS topic {name} was not provisioned")


def _function_name(endpoint: str) -> str:
    """The function name of a Lambda ARN (``arn:aws:lambda:region:account:function:name[:qualifier]``)."""
    parts = endpoint.split(":")
    return parts[6] if endpoint.startswith("arn:") and len(parts) > 6 else endpoint
