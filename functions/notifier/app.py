"""Resends queued notifications (SQS event source on the NotificationQueue, ReportBatchItemFailures).

Each record is ``{"channel": "webhook" | "customer_notice" | "event", "event": {...}}``, queued by a
SendNotifications branch that failed. A record that fails again is reported in ``batchItemFailures`` and
comes back after the queue's visibility timeout; after 5 receives SQS moves it to the NotificationDLQ.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import notification_adapters, notifications
from payeasy.observability import TRACED_MODULES

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method(capture_response=False)
def resend_record(record: SQSRecord) -> dict[str, Any]:
    message = notifications.QueuedNotification.parse(record.body)
    receives = int(record.attributes.approximate_receive_count or 0)
    log = {"channel": message.channel, "event_id": message.event["id"], "receive_count": receives}
    try:
        result = notifications.resend(
            message,
            endpoints=notification_adapters.webhook_endpoints(),
            sender=notification_adapters.webhook_sender(),
            notices=notification_adapters.notice_publisher(),
            events=notification_adapters.event_publisher(),
        )
    except Exception as exc:
        metrics.add_metric(name="NotificationResendFailures", unit=MetricUnit.Count, value=1)
        logger.warning("resend failed", extra={**log, "reason": f"{type(exc).__name__}: {exc}"})
        raise
    metrics.add_metric(name="NotificationsResent", unit=MetricUnit.Count, value=1)
    logger.info("resent", extra=log)
    return result


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=resend_record, processor=processor, context=context
    )
