"""Payments table stream -> the append-only PaymentEvents table (the audit trail). One event per change."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import wiring
from payeasy.audit import event_for_change, outcome_metric
from payeasy.audit_store import image_to_python
from payeasy.observability import TRACED_MODULES

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@tracer.capture_method(capture_response=False)
def record_handler(record: DynamoDBRecord) -> None:
    raw = record.raw_event["dynamodb"]
    event = event_for_change(
        event_name=record.raw_event["eventName"],
        old=image_to_python(raw.get("OldImage")),
        new=image_to_python(raw.get("NewImage")),
        sequence_number=raw["SequenceNumber"],
        approximate_time=float(raw.get("ApproximateCreationDateTime") or 0),
    )
    if event is None:
        return
    if wiring.audit_store().append(event):  # False for a redelivered record: nothing is counted twice
        metrics.add_metric(name="AuditEventsWritten", unit=MetricUnit.Count, value=1)
        outcome = outcome_metric(event)
        if outcome:
            new = image_to_python(raw.get("NewImage")) or {}
            # Its own EMF document: the batch mixes workflows, and a dimension applies to a whole document.
            with single_metric(
                name=outcome, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
            ) as metric:
                metric.add_dimension(name="workflow", value=str(new.get("workflow") or "unknown"))
        logger.info(
            "audit event",
            extra={"payment_id": event.payment_id, "type": event.type, "to_status": event.to_status},
        )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # A failed record is retried from itself on (ReportBatchItemFailures): order per payment is kept.
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
