"""Payments table stream -> the append-only PaymentEvents table (the audit trail). One event per change."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import wiring
from payeasy.audit import outcome_metric
from payeasy.audit_batch import audit_stream_batch
from payeasy.observability import TRACED_MODULES

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


class AuditBatchFailed(Exception):
    """Every record of the batch failed (e.g. the table is unreachable): an error, counted and retried."""


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    # The whole batch is stored in one transaction (not a PutItem per record). A failed record is retried
    # from itself on (ReportBatchItemFailures): order per payment is kept, stored events are not rewritten.
    result = audit_stream_batch(event.get("Records") or [], wiring.audit_store())
    for error in result.errors:
        logger.warning("audit record not stored", extra={"reason": error})
    if result.all_failed:
        raise AuditBatchFailed(f"none of the {result.records} records was stored")
    for written in result.written:  # redelivered records are not counted twice
        audit_event = written.event
        metrics.add_metric(name="AuditEventsWritten", unit=MetricUnit.Count, value=1)
        outcome = outcome_metric(audit_event)
        if outcome:
            # Its own EMF document: the batch mixes workflows, and a dimension applies to a whole document.
            with single_metric(
                name=outcome, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
            ) as metric:
                metric.add_dimension(name="workflow", value=written.workflow)
        logger.info(
            "audit event",
            extra={
                "payment_id": audit_event.payment_id,
                "type": audit_event.type,
                "to_status": audit_event.to_status,
            },
        )
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in result.failed]}
