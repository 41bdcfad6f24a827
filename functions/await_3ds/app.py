"""Wait3DSCallback task of the STANDARD workflow (invoked with .waitForTaskToken): keeps the task token in the
ThreeDSChallenges table and shows the challenge on the payment. The token is never logged or returned."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import observability, threeds, wiring

logger = Logger()
tracer = Tracer(patch_modules=observability.TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)  # the event carries the task token
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(payment_id=event.get("payment_id"))
    annotations = observability.step_annotations(
        state="Wait3DSCallback", event={"payment_id": event.get("payment_id")}, workflow="standard"
    )
    observability.annotate(tracer, annotations)  # ids only: never the task token
    task = threeds.WaitTask.model_validate(event)
    result = threeds.await_challenge(
        task, store=wiring.challenge_store(), repository=wiring.payment_repository(), now=int(time.time())
    )
    metrics.add_metric(name="ThreeDSChallenges", unit=MetricUnit.Count, value=1)
    logger.info("Wait3DSCallback armed", extra={"status": result["status"]})
    return result
