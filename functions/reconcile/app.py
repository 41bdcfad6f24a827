"""The reconciliation workflow's tasks (three handlers, one per template function), via
payeasy.reconciliation: ``find`` (FindCandidates), ``resolve`` (ResolvePayment, one Map item), ``report``
(Summarize)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import reconciliation, wiring
from payeasy.observability import TRACED_MODULES
from payeasy.reconcile_adapters import queue_from_env, store_from_env

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def find(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    found = reconciliation.find_candidates(str(event["now"]), store_from_env(), queue_from_env())
    metrics.add_metric(name="ReconciliationCandidates", unit=MetricUnit.Count, value=found["count"])
    logger.info("FindCandidates done", extra={"found": found["found"], "count": found["count"]})
    return found


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def resolve(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    candidate = event["candidate"]
    logger.append_keys(payment_id=candidate.get("payment_id"))
    tracer.put_annotation(key="payment_id", value=str(candidate.get("payment_id")))
    result = reconciliation.resolve(
        candidate, str(event["now"]), store_from_env(), queue_from_env(), wiring.acquirer_client()
    )
    metrics.add_metric(name=f"Reconciled_{result['action']}", unit=MetricUnit.Count, value=1)
    logger.info("ResolvePayment done", extra={"action": result["action"], "reasons": result["reasons"]})
    return result


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def report(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = reconciliation.summarize(str(event["now"]), dict(event.get("found") or {}), event["results"])
    logger.info("Reconciliation summary", extra={"summary": summary})
    return summary
