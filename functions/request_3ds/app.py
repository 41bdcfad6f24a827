"""Request3DS task of the STANDARD workflow: creates the acquirer's 3-D Secure authentication."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import observability, threeds, wiring

logger = Logger()
tracer = Tracer(patch_modules=observability.TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(payment_id=event.get("payment_id"))
    result = threeds.request_authentication(event, wiring.acquirer_client())
    annotations = observability.step_annotations(
        state="Request3DS", event=event, outcome=result, workflow="standard"
    )
    observability.annotate(tracer, annotations)
    metrics.add_metric(name=f"ThreeDS_{result['status']}", unit=MetricUnit.Count, value=1)
    logger.info("Request3DS done", extra={"three_d_secure_status": result["status"]})
    return result
