"""EventSourceRunner against stock moto: Lambda's SQS poller semantics and the SNS -> Lambda bridge."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from local.clock import VirtualClock
from local.errors import LocalRuntimeError
from local.event_sources import EventSourceRunner, SqsPoller, failed_message_ids
from local.model import EventSourceMappingSpec, QueueSpec, StackModel, SubscriptionSpec, TopicSpec
from local.ports import InvokeResult, TooManyRequestsException
from local.provision import client, provision

REGION = "us-east-1"
ACCOUNT = "123456789012"
Responder = Callable[[str, dict[str, Any]], InvokeResult]


class BusyClock(VirtualClock):
    """Records whether every invocation happened inside ``clock.busy()``."""

    def __init__(self) -> None:
        super().__init__(start=1_700_000_000.0)
        self.depth = 0

    @contextmanager
    def busy(self) -> Iterator[None]:
        self.depth += 1
        try:
            with super().busy():
                yield
        finally:
            self.depth -= 1


class FakeInvoker:
    """Records every invocation; ``respond`` decides each result (or raises a service error)."""

    def __init__(self, clock: BusyClock, respond: Responder | None = None) -> None:
        self.clock = clock
        self.respond: Responder = respond or (lambda _f, _e: InvokeResult(payload=b"null"))
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.outside_busy = 0
        self.lock = threading.Lock()

    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        event = json.loads(payload)
        with self.lock:
            self.calls.append((function, event, invocation_type))
            if self.clock.depth == 0:
                self.outside_busy += 1
        return self.respond(function, event)

    def message_ids(self) -> list[list[str]]:
        with self.lock:
            return [[r["messageId"] for r in event["Records"]] for _, event, _ in self.calls]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _queue(name: str, **attributes: str) -> QueueSpec:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    return QueueSpec(name, name, arn, f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}", attributes)


def _model(queues: list[QueueSpec], mappings: list[EventSourceMappingSpec], **kwargs: Any) -> StackModel:
    return StackModel(
        stack_name="pay",
        region=REGION,
        account_id=ACCOUNT,
        template_path=Path("t.yaml"),
        parameters={},
        queues={q.queue_name: q for q in queues},
        event_source_mappings=mappings,
        **kwargs,
    )


def _mapping(queue: str, **kwargs: Any) -> EventSourceMappingSpec:
    return EventSourceMappingSpec("Mapping", "worker", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}", **kwargs)


@contextmanager
def running(
    endpoint: str, model: StackModel, respond: Responder | None = None
) -> Iterator[tuple[FakeInvoker, Any, dict[str, str]]]:
    urls = provision(model, endpoint).queue_urls
    clock = BusyClock()
    invoker = FakeInvoker(clock, respond)
    runner = EventSourceRunner(model, invoker, endpoint_url=endpoint, clock=clock, queue_urls=urls).start()
    try:
        yield invoker, client("sqs", endpoint, REGION), urls
    finally:
        started = time.monotonic()
        runner.stop()
        assert time.monotonic() - started < 4.0  # short long-polls: stop() is quick
        assert invoker.outside_busy == 0
        clock.close()


def queue_depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def test_sqs_record_has_lambdas_shape_and_batch_is_deleted(endpoint: str) -> None:
    model = _model([_queue("jobs")], [_mapping("jobs")])
    with running(endpoint, model) as (invoker, sqs, urls):
        sent = sqs.send_message(
            QueueUrl=urls["jobs"],
            MessageBody='{"id": 7}',
            MessageAttributes={
                "tenant": {"DataType": "String", "StringValue": "acme"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
            },
        )
        wait_until(lambda: len(invoker.calls) == 1)
        wait_until(lambda: queue_depth(sqs, urls["jobs"]) == 0)
    function, event, invocation_type = invoker.calls[0]
    assert (function, invocation_type) == ("worker", "RequestResponse")
    [record] = event["Records"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["messageId"] == sent["MessageId"]
    assert record["body"] == '{"id": 7}'
    assert record["md5OfBody"] == hashlib.md5(b'{"id": 7}').hexdigest()
    assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", REGION)
    assert record["eventSourceARN"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "tenant": {
            "stringValue": "acme",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {"binaryValue": "AQI=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }


def test_fifo_records_carry_group_and_sequence(endpoint: str) -> None:
    model = _model(
        [_queue("orders.fifo", FifoQueue="true", ContentBasedDeduplication="true")], [_mapping("orders.fifo")]
    )
    with running(endpoint, model) as (invoker, sqs, urls):
        # moto sets SequenceNumber only for an explicit deduplication id (not content-based)
        sqs.send_message(
            QueueUrl=urls["orders.fifo"], MessageBody="a", MessageGroupId="g1", MessageDeduplicationId="d1"
        )
        wait_until(lambda: len(invoker.calls) == 1)
    attributes = invoker.calls[0][1]["Records"][0]["attributes"]
    assert attributes["MessageGroupId"] == "g1"
    assert attributes["MessageDeduplicationId"] == "d1"
    assert {"SequenceNumber", "ApproximateReceiveCount", "SentTimestamp"} <= set(attributes)


def test_batches_respect_batch_size(endpoint: str) -> None:
    model = _model([_queue("bulk")], [_mapping("bulk", batch_size=4, maximum_concurrency=1)])
    urls = provision(model, endpoint).queue_urls
    sqs = client("sqs", endpoint, REGION)
    for start in range(0, 10, 5):  # queued before the runner starts
        entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, start + 5)]
        sqs.send_message_batch(QueueUrl=urls["bulk"], Entries=entries)
    with running(endpoint, model) as (invoker, sqs, urls):
        wait_until(lambda: sum(len(b) for b in invoker.message_ids()) == 10)
        wait_until(lambda: queue_depth(sqs, urls["bulk"]) == 0)
    batches = invoker.message_ids()
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert len({m for batch in batches for m in batch}) == 10


def test_batching_window_gathers_messages_sent_apart(endpoint: str) -> None:
    model = _model(
        [_queue("slow")],
        [_mapping("slow", batch_size=10, maximum_batching_window_seconds=2, maximum_concurrency=1)],
    )
    with running(endpoint, model) as (invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["slow"], MessageBody="first")
        time.sleep(0.4)
        sqs.send_message(QueueUrl=urls["slow"], MessageBody="second")
        wait_until(lambda: len(invoker.calls) >= 1)
    assert [r["body"] for r in invoker.calls[0][1]["Records"]] == ["first", "second"]


def test_function_error_keeps_messages_until_success(endpoint: str) -> None:
    attempts: list[str] = []

    def respond(_function: str, event: dict[str, Any]) -> InvokeResult:
        attempts.append(event["Records"][0]["attributes"]["ApproximateReceiveCount"])
        if len(attempts) == 1:
            return InvokeResult(
                payload=b'{"errorType": "Boom", "errorMessage": "x"}', function_error="Unhandled"
            )
        return InvokeResult(payload=b"null")

    model = _model([_queue("retry", VisibilityTimeout="1")], [_mapping("retry", maximum_concurrency=1)])
    with running(endpoint, model, respond) as (_invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["retry"], MessageBody="again")
        wait_until(lambda: len(attempts) == 2)  # back after moto's real-time visibility timeout
        wait_until(lambda: queue_depth(sqs, urls["retry"]) == 0)
    assert attempts == ["1", "2"]


def test_report_batch_item_failures_deletes_only_successes(endpoint: str) -> None:
    def respond(_function: str, event: dict[str, Any]) -> InvokeResult:
        failed = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]
        return InvokeResult(payload=json.dumps({"batchItemFailures": failed}).encode())

    model = _model(
        [_queue("partial", VisibilityTimeout="30")],
        [_mapping("partial", report_batch_item_failures=True, maximum_concurrency=1)],
    )
    urls = provision(model, endpoint).queue_urls
    sqs = client("sqs", endpoint, REGION)
    entries = [{"Id": body, "MessageBody": body} for body in ("ok1", "bad", "ok2")]
    sqs.send_message_batch(QueueUrl=urls["partial"], Entries=entries)
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        wait_until(lambda: sum(len(b) for b in invoker.message_ids()) == 3)
        wait_until(lambda: queue_depth(sqs, urls["partial"]) == 1)
        time.sleep(0.3)
        assert queue_depth(sqs, urls["partial"]) == 1  # the failed one stays (in flight)


def test_invalid_batch_item_failures_fail_the_whole_batch(endpoint: str) -> None:
    def respond(_function: str, _event: dict[str, Any]) -> InvokeResult:
        return InvokeResult(payload=b'{"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}')

    model = _model(
        [_queue("invalid", VisibilityTimeout="30")],
        [_mapping("invalid", report_batch_item_failures=True, maximum_concurrency=1)],
    )
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["invalid"], MessageBody="x")
        wait_until(lambda: len(invoker.calls) == 1)
        time.sleep(0.3)
        assert queue_depth(sqs, urls["invalid"]) == 1


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", set()),
        (b"null", set()),
        (b"{}", set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": null}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "a"}]}', {"a"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}', {"a", "b"}),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": null}]}', None),
        (b'{"batchItemFailures": [{"id": "a"}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', None),
        (b'{"batchItemFailures": "a"}', None),
        (b"not json", None),
    ],
)
def test_failed_message_ids(payload: bytes, expected: set[str] | None) -> None:
    assert failed_message_ids(payload, {"a", "b"}) == expected


def test_max_receive_count_moves_message_to_dlq(endpoint: str) -> None:
    def respond(_function: str, _event: dict[str, Any]) -> InvokeResult:
        return InvokeResult(payload=b'{"errorType": "Boom"}', function_error="Unhandled")

    redrive = json.dumps(
        {"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:poison-dlq", "maxReceiveCount": 2}
    )
    queues = [_queue("poison", VisibilityTimeout="0", RedrivePolicy=redrive), _queue("poison-dlq")]
    model = _model(queues, [_mapping("poison", maximum_concurrency=1)])
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["poison"], MessageBody="never works")
        wait_until(lambda: queue_depth(sqs, urls["poison-dlq"]) == 1)
        time.sleep(0.3)
        assert queue_depth(sqs, urls["poison"]) == 0
        dead = sqs.receive_message(QueueUrl=urls["poison-dlq"])["Messages"]
    assert [m["Body"] for m in dead] == ["never works"]
    assert len(invoker.calls) == 2  # maxReceiveCount receives, then moto's redrive on the next receive


def test_throttled_invocation_is_retried_without_loss(endpoint: str) -> None:
    throttles = [TooManyRequestsException("Rate exceeded"), TooManyRequestsException("Rate exceeded")]

    def respond(_function: str, _event: dict[str, Any]) -> InvokeResult:
        if throttles:
            raise throttles.pop()
        return InvokeResult(payload=b"null")

    model = _model([_queue("busy", VisibilityTimeout="30")], [_mapping("busy", maximum_concurrency=1)])
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["busy"], MessageBody="keep me")
        wait_until(lambda: queue_depth(sqs, urls["busy"]) == 0)
    assert len(invoker.calls) == 3
    assert {ids[0] for ids in invoker.message_ids()} == {
        invoker.message_ids()[0][0]
    }  # same message each time


class _HeldInvocations:
    """A function whose invocations wait until ``release`` is set; counts how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.active = [0]
        self.peak = [0]
        self._lock = threading.Lock()

    def __call__(self, _function: str, _event: dict[str, Any]) -> InvokeResult:
        with self._lock:
            self.active[0] += 1
            self.peak[0] = max(self.peak[0], self.active[0])
        self.release.wait(10)
        with self._lock:
            self.active[0] -= 1
        return InvokeResult(payload=b"null")


def test_concurrent_batches_bounded_by_maximum_concurrency(endpoint: str) -> None:
    respond = _HeldInvocations()
    release, active, peak = respond.release, respond.active, respond.peak
    model = _model([_queue("wide", VisibilityTimeout="30")], [_mapping("wide", batch_size=1)])  # default 2
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        for i in range(4):
            sqs.send_message(QueueUrl=urls["wide"], MessageBody=str(i))
        wait_until(lambda: active[0] == 2)
        time.sleep(0.3)
        assert peak[0] == 2
        release.set()
        wait_until(lambda: queue_depth(sqs, urls["wide"]) == 0)
    assert len(invoker.calls) == 4


def test_idle_mapping_polls_with_one_poller_and_scales_up_when_messages_come(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the queue is empty only the lead poller long-polls (Lambda scales pollers with the backlog);
    messages still reach MaximumConcurrency batches at once, and after them the mapping is idle again."""
    receives: list[int] = []  # per ReceiveMessage call: which poller made it
    original = SqsPoller._receive

    def counted(poller: SqsPoller, count: int, wait: int) -> list[dict[str, Any]]:
        receives.append(id(poller))
        return original(poller, count, wait)

    monkeypatch.setattr(SqsPoller, "_receive", counted)
    respond = _HeldInvocations()
    release, active, peak = respond.release, respond.active, respond.peak

    mapping = _mapping("scaled", batch_size=1, maximum_concurrency=3)
    model = _model([_queue("scaled", VisibilityTimeout="30")], [mapping])
    with running(endpoint, model, respond) as (invoker, sqs, urls):
        time.sleep(2.5)  # idle: about two 1-second long polls, all by the lead
        assert len(receives) >= 2 and len(set(receives)) == 1, receives
        lead = receives[0]
        for i in range(5):
            sqs.send_message(QueueUrl=urls["scaled"], MessageBody=str(i))
        wait_until(lambda: active[0] == 3)
        time.sleep(0.3)
        assert peak[0] == 3 and len(set(receives)) == 3  # the other pollers joined in
        release.set()
        wait_until(lambda: queue_depth(sqs, urls["scaled"]) == 0)
        time.sleep(3.0)  # idle again: the lead's empty poll sends the others back to waiting
        settled = len(receives)
        time.sleep(2.2)
        assert 1 <= len(receives) - settled <= 3 and set(receives[settled:]) == {lead}, receives[settled:]
    assert sorted(r["body"] for _, e, _ in invoker.calls for r in e["Records"]) == [str(i) for i in range(5)]


def test_sns_lambda_subscription_is_bridged_with_sns_event_shape(endpoint: str) -> None:
    topic = TopicSpec(
        "Events",
        "events",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:events",
        [
            SubscriptionSpec(
                "lambda",
                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:notify",
                filter_policy={"kind": ["paid"]},
            )
        ],
    )
    model = _model([], [], topics={"events": topic})
    with running(endpoint, model) as (invoker, _sqs, _urls):
        sns = client("sns", endpoint, REGION)
        topic_arn = provision(model, endpoint).topic_arns["events"]
        sns.publish(TopicArn=topic_arn, Message="skip", MessageAttributes=_kind("refund"))
        published = sns.publish(
            TopicArn=topic_arn, Message="paid!", Subject="Hi", MessageAttributes=_kind("paid")
        )
        wait_until(lambda: len(invoker.calls) >= 1)
        time.sleep(0.3)
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert len(invoker.calls) == 1  # the filter policy applies
    function, event, invocation_type = invoker.calls[0]
    assert (function, invocation_type) == ("notify", "Event")
    [record] = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == subscriptions[0]["SubscriptionArn"]
    sns_part = record["Sns"]
    assert set(sns_part) == {
        "Type",
        "MessageId",
        "TopicArn",
        "Subject",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertUrl",
        "UnsubscribeUrl",
        "MessageAttributes",
    }
    assert sns_part["MessageId"] == published["MessageId"]
    assert (sns_part["Type"], sns_part["TopicArn"], sns_part["Subject"]) == ("Notification", topic_arn, "Hi")
    assert sns_part["Message"] == "paid!"
    assert sns_part["MessageAttributes"] == {"kind": {"Type": "String", "Value": "paid"}}
    assert sns_part["UnsubscribeUrl"].endswith(f"SubscriptionArn={subscriptions[0]['SubscriptionArn']}")


def _kind(value: str) -> dict[str, Any]:
    return {"kind": {"DataType": "String", "StringValue": value}}


def test_disabled_mapping_never_polls(endpoint: str) -> None:
    model = _model([_queue("paused")], [_mapping("paused", enabled=False)])
    with running(endpoint, model) as (invoker, sqs, urls):
        sqs.send_message(QueueUrl=urls["paused"], MessageBody="wait")
        time.sleep(0.5)
        assert invoker.calls == []
        assert queue_depth(sqs, urls["paused"]) == 1


def test_mapping_to_unprovisioned_queue_fails_at_start(endpoint: str) -> None:
    model = _model([_queue("present")], [_mapping("present"), _mapping("absent")])
    urls = provision(model, endpoint).queue_urls
    clock = BusyClock()
    runner = EventSourceRunner(model, FakeInvoker(clock), endpoint_url=endpoint, clock=clock, queue_urls=urls)
    with pytest.raises(
        LocalRuntimeError, match=r"^event source mapping Mapping: queue absent was not provisioned$"
    ):
        runner.start()
    assert [t.name for t in threading.enumerate() if t.name.startswith("sqs-Mapping")] == []
