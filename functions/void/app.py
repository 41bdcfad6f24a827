"""HandleCaptureFailure task (EXPRESS workflow): voids the authorization, via payeasy.tasks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import tasks, wiring
from payeasy.observability import TRACED_MODULES, annotate, step_annotations

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(payment_id=event.get("payment_id"))
    # Annotated before the call too, so a step that fails is found by payment_id.
    annotate(tracer, step_annotations(state="HandleCaptureFailure", event=event))
    outcome = tasks.void_after_capture_failure(event, wiring.acquirer_client())
    metrics.add_metric(name="Voids", unit=MetricUnit.Count, value=1)
    logger.info(
        "HandleCaptureFailure done", extra={"status": outcome["status"], "decline": outcome["decline_code"]}
    )
    annotate(tracer, step_annotations(state="HandleCaptureFailure", event=event, outcome=outcome))
    return outcome
