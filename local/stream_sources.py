"""DynamoDB Streams -> Lambda event source mappings, as the Lambda service runs them.

One poller per mapping reads the table's stream (moto's single shard) in order and invokes the function
synchronously with ``{"Records": [...]}`` shaped as Lambda delivers them. A batch that fails is retried (in
order: nothing after it is delivered first) until ``MaximumRetryAttempts`` (-1 = until it succeeds); then a
description of the batch goes to the ``OnFailure`` destination (SQS queue or SNS topic) and the poller moves
on.
With ``ReportBatchItemFailures`` the function names the first failed record (``itemIdentifier`` = its
SequenceNumber) and the retry starts there. Polling is on wall time, like the SQS pollers.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from local import moto_adapter
from local.aws_endpoint import is_served_in_process
from local.errors import LocalRuntimeError
from local.model import EventSourceMappingSpec
from local.ports import LambdaServiceError, TooManyRequestsException

if TYPE_CHECKING:
    from local.event_sources import EventSourceRunner

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.25  # Lambda polls a shard about four times a second


def table_name_of(stream_arn: str) -> str:
    """``arn:aws:dynamodb:r:a:table/NAME/stream/LABEL`` -> ``NAME``."""
    resource = stream_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) < 4 or parts[0] != "table" or parts[2] != "stream":
        raise LocalRuntimeError(f"not a DynamoDB stream ARN: {stream_arn}")
    return parts[1]


class StreamPoller:
    def __init__(self, runner: EventSourceRunner, mapping: EventSourceMappingSpec) -> None:
        self.runner = runner
        self.mapping = mapping
        self.stop = runner.stopping
        self.streams = runner.client("dynamodbstreams")
        table = table_name_of(mapping.event_source_arn)
        described = runner.client("dynamodb").describe_table(TableName=table)["Table"]
        self.stream_arn = described.get("LatestStreamArn")
        if not self.stream_arn:
            raise LocalRuntimeError(
                f"event source mapping {mapping.logical_id}: table {table} has no stream "
                "(StreamSpecification missing)"
            )
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        self.shard_id = shards[0]["ShardId"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn,
            ShardId=self.shard_id,
            ShardIteratorType=mapping.starting_position or "LATEST",
        )["ShardIterator"]

    def run(self) -> None:
        pending: list[dict[str, Any]] = []
        while not self.stop.is_set():
            try:
                if len(pending) < self.mapping.batch_size:
                    answer = self.get_records(self.mapping.batch_size - len(pending))
                    self.iterator = answer["NextShardIterator"]
                    pending.extend(self.record(r) for r in answer.get("Records", []))
                if not pending:
                    self.stop.wait(IDLE_POLL_SECONDS)
                    continue
                batch = pending[: self.mapping.batch_size]
                done = self.deliver(batch)
                pending = pending[done:]
            except (ClientError, BotoCoreError) as error:
                if self.stop.is_set():
                    return
                log.warning("%s: reading %s failed: %s", self.mapping.logical_id, self.stream_arn, error)
                self.stop.wait(1.0)
            except Exception:  # a bug here must not end the poller: records would stop flowing
                log.exception("%s: stream poller error", self.mapping.logical_id)
                self.stop.wait(1.0)

    def get_records(self, limit: int) -> dict[str, Any]:
        if is_served_in_process(self.runner.endpoint_url):  # the usual case: `local start`, tests
            model = self.runner.model
            return moto_adapter.stream_records(model.account_id, model.region, self.iterator, limit)
        return dict(self.streams.get_records(ShardIterator=self.iterator, Limit=limit))

    def deliver(self, batch: list[dict[str, Any]]) -> int:
        """Invokes until the batch is handled; returns how many records of it are done with."""
        attempts = 0
        start = 0
        backoff = 0.05
        while not self.stop.is_set():
            records = batch[start:]
            try:
                result = self.runner.invoke(
                    self.mapping.function_name, {"Records": records}, "RequestResponse"
                )
            except TooManyRequestsException:  # throttles are retried without counting as attempts
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            except LambdaServiceError as error:
                if not self.stop.is_set():  # at shutdown the pool refuses new invocations
                    log.warning("%s: invoking failed: %s", self.mapping.logical_id, error.message)
                failed_at: int | None = 0
            else:
                failed_at = self.first_failure(result.payload, records) if not result.function_error else 0
            if failed_at is None:
                return len(batch)
            start += failed_at
            attempts += 1
            limit = self.mapping.maximum_retry_attempts
            if limit is not None and limit >= 0 and attempts > limit:
                self.discard(batch[start:], attempts)
                return len(batch)
            self.stop.wait(min(0.05 * 2**attempts, 2.0))
        return 0

    def first_failure(self, payload: bytes, records: list[dict[str, Any]]) -> int | None:
        """Index of the first record to retry, or None when the whole batch succeeded."""
        if not self.mapping.report_batch_item_failures:
            return None
        try:
            answer = json.loads(payload or b"null")
        except ValueError:
            return 0
        if not isinstance(answer, dict):
            return None
        failures = answer.get("batchItemFailures") or []
        sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
        indexes = []
        for failure in failures:
            ident = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if ident not in sequence:
                return 0  # an unknown identifier fails the whole batch, as in Lambda
            indexes.append(sequence.index(ident))
        return min(indexes) if indexes else None

    def discard(self, records: list[dict[str, Any]], attempts: int) -> None:
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        log.warning(
            "%s: %d record(s) discarded after %d attempt(s)", self.mapping.logical_id, len(records), attempts
        )
        destination = self.mapping.on_failure_destination
        if not destination:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = json.dumps(
            {
                "requestContext": {
                    "requestId": records[0]["eventID"],
                    "functionArn": self.runner.model.functions[self.mapping.function_name].arn
                    if self.mapping.function_name in self.runner.model.functions
                    else self.mapping.function_name,
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": attempts,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled",
                },
                "version": "1.0",
                "timestamp": now,
                "DDBStreamBatchInfo": {
                    "shardId": self.shard_id,
                    "startSequenceNumber": first["SequenceNumber"],
                    "endSequenceNumber": last["SequenceNumber"],
                    "approximateArrivalOfFirstRecord": _iso(first["ApproximateCreationDateTime"]),
                    "approximateArrivalOfLastRecord": _iso(last["ApproximateCreationDateTime"]),
                    "batchSize": len(records),
                    "streamArn": self.stream_arn,
                },
            }
        )
        service = destination.split(":")[2]
        if service == "sqs":
            name = destination.rsplit(":", 1)[-1]
            url = (
                self.runner.queue_urls.get(name)
                or self.runner.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
            )
            self.runner.client("sqs").send_message(QueueUrl=url, MessageBody=message)
        elif service == "sns":
            self.runner.client("sns").publish(TopicArn=destination, Message=message)
        else:
            log.warning("%s: OnFailure destination %s is not emulated", self.mapping.logical_id, destination)

    def record(self, raw: dict[str, Any]) -> dict[str, Any]:
        """moto's stream record -> the record Lambda delivers (region, epoch-seconds timestamp, ARN)."""
        data = dict(raw["dynamodb"])
        created = data.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            data["ApproximateCreationDateTime"] = int(created.timestamp())
        elif not isinstance(created, int | float):
            data["ApproximateCreationDateTime"] = int(time.time())
        return {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.runner.model.region,
            "dynamodb": data,
            "eventSourceARN": self.stream_arn,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
