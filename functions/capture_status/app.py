"""CheckCaptureStatus task (EXPRESS workflow): after the last capture timeout, ask the acquirer whether the
money was captured, via payeasy.compensation (the state machine retries it: three checks in all)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import compensation, wiring
from payeasy.observability import TRACED_MODULES, annotate, step_annotations

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(payment_id=event.get("payment_id"))
    annotate(tracer, step_annotations(state="CheckCaptureStatus", event=event))
    outcome = compensation.capture_status(event, wiring.acquirer_client())
    metrics.add_metric(name="CaptureStatusChecks", unit=MetricUnit.Count, value=1)
    logger.info("CheckCaptureStatus done", extra={"capture_status": outcome["capture_status"]})
    return outcome
