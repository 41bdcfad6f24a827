"""LookupAuthorization task (EXPRESS workflow): after the last authorize timeout, find the payment's
authorizations by reference and void any that went through, via payeasy.compensation."""

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
    annotate(tracer, step_annotations(state="LookupAuthorization", event=event))
    outcome = compensation.lookup_and_void(event, wiring.acquirer_client())
    metrics.add_metric(name="AuthorizationTimeoutVoids", unit=MetricUnit.Count, value=len(outcome["voided"]))
    logger.info("LookupAuthorization done", extra={"voided": outcome["voided"]})
    return outcome
