"""POST /payments/{payment_id}/3ds/callback: the ACS's signed callbacks (no API key: the HMAC over the raw
body authenticates them). Heartbeats keep the waiting workflow alive; the completed challenge resumes it."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from payeasy import observability, threeds, wiring
from payeasy.errors import InvalidRequestError, PaymentError
from pydantic import ValidationError

logger = Logger()
tracer = Tracer(patch_modules=observability.TRACED_MODULES)
metrics = Metrics()
app = APIGatewayRestResolver()


@app.post("/payments/<payment_id>/3ds/callback")
def callback(payment_id: str) -> Response[Any]:
    logger.append_keys(payment_id=payment_id)
    raw = (app.current_event.decoded_body or "").encode()  # signed bytes: verified before anything else
    header = app.current_event.headers.get(threeds.SIGNATURE_HEADER)  # case-insensitive lookup
    threeds.verify_signature(header, raw, wiring.threeds_callback_secret(), now=time.time())
    event = _parse(raw)
    if event.payment_id != payment_id:
        raise InvalidRequestError(
            "payment_id: does not match the URL", code="parameter_invalid", param="payment_id"
        )
    # Annotated only once the signature holds: unauthenticated input never reaches the trace.
    annotations = observability.step_annotations(
        state="ThreeDSCallback", event={"payment_id": payment_id}, outcome={"status": event.type}
    )
    observability.annotate(tracer, annotations)
    result = threeds.handle_callback(
        event, store=wiring.challenge_store(), tasks=wiring.task_callbacks(), now=int(time.time())
    )
    metrics.add_metric(name="ThreeDSCallbacks", unit=MetricUnit.Count, value=1)
    logger.info("3DS callback applied", extra={"type": event.type, "trans_status": event.trans_status})
    return _json(200, result)


def _parse(raw: bytes) -> threeds.CallbackEvent:
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("body: is not valid JSON", code="parameter_invalid", param="body") from None
    try:
        return threeds.CallbackEvent.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first.get("loc", ())) or "body"
        code = "parameter_missing" if first.get("type") == "missing" else "parameter_invalid"
        reason = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
        raise InvalidRequestError(f"{param}: {reason}", code=code, param=param) from None


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@app.exception_handler(PaymentError)
def _payment_error(error: PaymentError) -> Response[Any]:
    if error.http_status < 500:
        logger.info("3DS callback refused", extra={"status": error.http_status, "code": error.code})
    return _json(error.http_status, error.body())


@logger.inject_lambda_context(log_event=False)  # never log the event: headers carry the signature
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
