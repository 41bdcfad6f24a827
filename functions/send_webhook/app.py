"""SendMerchantWebhook task (SendNotifications branch): POSTs the signed payment event to the merchant.

Input ``{"event": {...}}`` (built by the Parallel's Parameters). A 5xx, 429, timeout or connection error
raises ``WebhookDeliveryFailed`` (the state's Retry matches the name); whatever still fails is caught by the
state machine and queued for the notifier.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import notification_adapters, notifications
from payeasy.observability import TRACED_MODULES, annotate, step_annotations

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        payment_event = notifications.validate_event(event.get("event"))
    except notifications.InvalidNotification:
        metrics.add_metric(name="InvalidNotifications", unit=MetricUnit.Count, value=1)
        raise
    payment_id = payment_event["data"]["object"]["id"]
    logger.append_keys(payment_id=payment_id, event_id=payment_event["id"])
    payment = payment_event["data"]["object"]
    annotate(
        tracer,
        step_annotations(
            state="SendMerchantWebhook",
            event={"payment_id": payment_id, "merchant_id": payment_event["merchant_id"], **payment},
            outcome={"status": payment["status"], "decline_code": payment.get("decline_code")},
        ),
    )
    try:
        result = notifications.deliver_webhook(
            payment_event["merchant_id"],
            payment_event,
            notification_adapters.webhook_endpoints(),
            notification_adapters.webhook_sender(),
        )
    except (notifications.WebhookDeliveryFailed, notifications.WebhookRejected) as exc:
        metrics.add_metric(name="WebhookFailures", unit=MetricUnit.Count, value=1)
        logger.warning("webhook not delivered", extra={"reason": str(exc), "type": payment_event["type"]})
        raise
    metrics.add_metric(
        name="WebhooksDelivered" if result["delivered"] else "WebhooksSkipped", unit=MetricUnit.Count, value=1
    )
    logger.info("webhook done", extra={k: v for k, v in result.items() if k != "event_id"})
    return result
