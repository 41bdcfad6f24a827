"""The payment API (API Gateway REST -> this Lambda). Thin: validation by the models, rules in payeasy."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Annotated, Any
from uuid import uuid4

from api_docs import register as register_api_docs
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from payeasy import operations, wiring
from payeasy.errors import (
    AcquirerError,
    AcquirerRejected,
    ApiError,
    AuthenticationError,
    CardError,
    InvalidRequestError,
    NotFoundError,
    PaymentError,
)
from payeasy.models import (
    CancelPaymentRequest,
    CapturePaymentRequest,
    CardInput,
    CreatePaymentMethodRequest,
    CreatePaymentRequest,
    ErrorResponse,
    PaymentMethodView,
    PaymentView,
    RefundRequest,
)
from payeasy.observability import TRACED_MODULES, annotate, step_annotations
from payeasy.payment import Payment, execution_name, new_payment_id, utc_now_iso
from payeasy.ports import CardToVault, TokenizedCard
from payeasy.routing import Workflow, choose_workflow
from payeasy.status import PaymentStatus
from pydantic import BaseModel

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
app = APIGatewayRestResolver(enable_validation=True)
# Not app.enable_swagger(): the OpenAPI models it imports would cost every cold start (see api_docs).
register_api_docs(app, path="/swagger", title="PayEasy Payments API", version="1.0.0")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_ERRORS: dict[int, Any] = {
    code: {"description": text, "content": {"application/json": {"model": ErrorResponse}}}
    for code, text in (
        (400, "Invalid request"),
        (402, "Card declined"),
        (404, "Not found"),
        (409, "Conflict"),
        (422, "Idempotency key reused with another body"),
    )
}

idempotency_config = IdempotencyConfig(
    event_key_jmespath="key", payload_validation_jmespath="request", expires_after_seconds=24 * 3600
)
# One persistence layer per idempotent function (Powertools keeps per-function state in it), both on the
# shared DynamoDB client: by default each layer builds its own boto3 session and client (~70 ms apiece).
persistence = DynamoDBPersistenceLayer(
    table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"), boto3_client=wiring.aws_client("dynamodb")
)
action_persistence = DynamoDBPersistenceLayer(
    table_name=os.environ.get("IDEMPOTENCY_TABLE", "idempotency"), boto3_client=wiring.aws_client("dynamodb")
)
# The router runs on SnapStart (template): what init builds is in the snapshot new environments restore from.
wiring.prime("stepfunctions", "secretsmanager")


# --- merchant from API key ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _merchants_by_key() -> dict[str, str]:
    """``MERCHANT_API_KEYS`` = ``key=merchant_id,key=merchant_id`` (the template builds it from its keys)."""
    pairs = (item.split("=", 1) for item in os.environ.get("MERCHANT_API_KEYS", "").split(",") if "=" in item)
    return {key.strip(): merchant.strip() for key, merchant in pairs}


def current_merchant() -> str:
    identity = app.current_event.request_context.identity
    merchant = _merchants_by_key().get(identity.api_key or "")
    if merchant is None:
        raise AuthenticationError("No merchant is registered for this API key.", code="invalid_api_key")
    return merchant


# --- routes ---------------------------------------------------------------------------------------------


def _payment_response(description: str) -> Any:
    return {"description": description, "content": {"application/json": {"model": PaymentView}}}


@app.post(
    "/payments",
    responses={
        200: _payment_response("Final answer (EXPRESS): succeeded or requires_capture"),
        202: _payment_response("Accepted for the STANDARD workflow: processing"),
        **_ERRORS,
    },
    tags=["payments"],
)
def create_payment(
    request: Annotated[CreatePaymentRequest, Body()],
    idempotency_key: Annotated[str, Header(alias=IDEMPOTENCY_HEADER.lower(), min_length=1, max_length=255)],
) -> Response[Any]:  # the body is a PaymentView or an ErrorResponse (see responses)
    merchant = current_merchant()
    data = {"key": f"{merchant}:{idempotency_key}", "request": request.model_dump(mode="json")}
    answer = _create_once(data=data, merchant=merchant, request=request)
    return _json(answer["status_code"], answer["body"], answer.get("headers"))


@app.post(
    "/payment_methods",
    responses={
        200: {
            "description": "The card, tokenized",
            "content": {"application/json": {"model": PaymentMethodView}},
        },
        **_ERRORS,
    },
    tags=["payment methods"],
)
def create_payment_method(request: Annotated[CreatePaymentMethodRequest, Body()]) -> Response[Any]:
    """The card goes to the acquirer's vault and only the token comes back (no payment, nothing stored)."""
    merchant = current_merchant()
    logger.append_keys(merchant_id=merchant)
    token = _tokenize(request.card, None, idempotency_key=f"{merchant}:pm:{uuid4().hex}")
    view = PaymentMethodView(
        id=token.token,
        card={
            "brand": token.brand,
            "last4": token.last4,
            "exp_month": token.exp_month,
            "exp_year": token.exp_year,
            "country": token.bin_country,
            "three_d_secure": token.three_d_secure,
        },
    )
    metrics.add_metric(name="PaymentMethodsCreated", unit=MetricUnit.Count, value=1)
    return _json(200, view.model_dump(mode="json"))


@app.get(
    "/payments/<payment_id>", responses={200: {"description": "The payment"}, **_ERRORS}, tags=["payments"]
)
def get_payment(payment_id: Annotated[str, Path(min_length=1, max_length=64)]) -> PaymentView:
    return PaymentView.model_validate(_owned(payment_id, current_merchant()).view())


@app.get(
    "/payments/<payment_id>/events",
    responses={200: {"description": "The payment's audit trail, oldest first"}, **_ERRORS},
    tags=["payments"],
)
def get_payment_events(payment_id: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    """Every change of the payment, in order: who or what, when, from -> to, why, which workflow run."""
    _owned(payment_id, current_merchant())
    region = os.environ.get("AWS_REGION")
    events = [event.view(region=region) for event in wiring.audit_store().events(payment_id)]
    return {"object": "list", "payment_id": payment_id, "data": events, "has_more": False}


IdempotencyKey = Annotated[str, Header(alias=IDEMPOTENCY_HEADER.lower(), min_length=1, max_length=255)]
PaymentId = Annotated[str, Path(min_length=1, max_length=64)]


@app.post(
    "/payments/<payment_id>/capture",
    responses={200: _payment_response("Captured"), **_ERRORS},
    tags=["payments"],
)
def capture_payment(
    payment_id: PaymentId,
    idempotency_key: IdempotencyKey,
    request: Annotated[CapturePaymentRequest | None, Body()] = None,
) -> Response[Any]:
    return _act("capture", payment_id, request or CapturePaymentRequest(), idempotency_key)


@app.post(
    "/payments/<payment_id>/cancel",
    responses={200: _payment_response("Canceled"), **_ERRORS},
    tags=["payments"],
)
def cancel_payment(
    payment_id: PaymentId,
    idempotency_key: IdempotencyKey,
    request: Annotated[CancelPaymentRequest | None, Body()] = None,
) -> Response[Any]:
    return _act("cancel", payment_id, request or CancelPaymentRequest(), idempotency_key)


@app.post(
    "/payments/<payment_id>/refunds",
    responses={200: {"description": "The refund"}, **_ERRORS},
    tags=["payments"],
)
def refund_payment(
    payment_id: PaymentId,
    idempotency_key: IdempotencyKey,
    request: Annotated[RefundRequest | None, Body()] = None,
) -> Response[Any]:
    return _act("refund", payment_id, request or RefundRequest(), idempotency_key)


def _owned(payment_id: str, merchant: str) -> Payment:
    payment = wiring.payment_repository().get(payment_id)
    if payment is None or payment.merchant_id != merchant:
        # Another merchant's payment is indistinguishable from a missing one.
        raise NotFoundError(f"No such payment: {payment_id}", code="resource_missing", param="id")
    return payment


def _act(action: str, payment_id: str, request: BaseModel, idempotency_key: str) -> Response[Any]:
    merchant = current_merchant()
    body = {"action": action, "payment_id": payment_id, **request.model_dump(mode="json")}
    data = {"key": f"{merchant}:{idempotency_key}", "request": body}
    answer = _act_once(data=data, merchant=merchant, idempotency_key=idempotency_key)
    return _json(answer["status_code"], answer["body"])


def _body_as_text(function: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The answer's body as the JSON text sent: Powertools stores an answer with its keys sorted, so a replay
    of a dict body would be the same JSON in another order; of the text, the same bytes (as Stripe's)."""

    @wraps(function)
    def answer_with_text(**kwargs: Any) -> dict[str, Any]:
        answer = function(**kwargs)
        return {**answer, "body": json.dumps(answer["body"])}

    return answer_with_text


@idempotent_function(
    data_keyword_argument="data", persistence_store=action_persistence, config=idempotency_config
)
@_body_as_text
def _act_once(*, data: dict[str, Any], merchant: str, idempotency_key: str) -> dict[str, Any]:
    """Capture, cancel or refund, once per (merchant, Idempotency-Key)."""
    request = data["request"]
    try:
        payment = _owned(request["payment_id"], merchant)
        acquirer, repository = wiring.acquirer_client(), wiring.payment_repository()
        if request["action"] == "capture":
            captured = operations.capture(
                payment, request.get("amount_to_capture"), acquirer=acquirer, repository=repository
            )
            return {"status_code": 200, "body": captured.view()}
        if request["action"] == "cancel":
            canceled = operations.cancel(payment, acquirer=acquirer, repository=repository)
            return {"status_code": 200, "body": canceled.view()}
        _, refund = operations.refund(
            payment,
            request.get("amount"),
            request_key=f"refund:{idempotency_key}",
            acquirer=acquirer,
            repository=repository,
        )
        return {"status_code": 200, "body": refund}
    except PaymentError as error:
        if error.http_status >= 500:
            raise  # not stored: a retry with the same key runs again
        return {"status_code": error.http_status, "body": error.body()}


@idempotent_function(data_keyword_argument="data", persistence_store=persistence, config=idempotency_config)
@_body_as_text
def _create_once(*, data: dict[str, Any], merchant: str, request: CreatePaymentRequest) -> dict[str, Any]:
    """Runs once per (merchant, Idempotency-Key); its return value (status and body) is what replays get."""
    try:
        return _create(merchant, request)
    except PaymentError as error:
        if error.http_status >= 500:
            raise  # not stored: a retry with the same key runs again
        return {"status_code": error.http_status, "body": error.body()}


def _create(merchant: str, request: CreatePaymentRequest) -> dict[str, Any]:
    payment_id = new_payment_id()
    logger.append_keys(payment_id=payment_id, merchant_id=merchant)
    card = _tokenize(request.card, request.payment_method, idempotency_key=f"{payment_id}:tokenize")
    if card.requires_3ds and not request.return_url:
        # Known only once the card is tokenized; nothing is recorded yet.
        raise InvalidRequestError(
            "return_url: is required for a card that needs 3-D Secure (the browser comes back there)",
            code="parameter_missing",
            param="return_url",
        )
    workflow = choose_workflow(
        amount=request.amount,
        currency=request.currency,
        requires_3ds=card.requires_3ds,
        limits=wiring.express_limits(),
    )
    payment = Payment(
        payment_id=payment_id,
        merchant_id=merchant,
        status=PaymentStatus.PROCESSING,
        amount=request.amount,
        currency=request.currency,
        capture_method=request.capture_method.value,
        card={
            "token": card.token,
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "bin_country": card.bin_country,
            "three_d_secure": card.three_d_secure,
        },
        workflow=workflow.value,
        created=int(time.time()),
        updated_at=utc_now_iso(),
        description=request.description,
        metadata=request.metadata,
        return_url=request.return_url,
    )
    wiring.payment_repository().create(payment)
    annotate(tracer, _annotations(payment))
    metrics.add_metric(name=f"Payments{workflow.value.title()}", unit=MetricUnit.Count, value=1)
    if workflow is Workflow.STANDARD:
        return _start_standard(payment)
    return _run_express(payment)


STANDARD_RETRY_AFTER_SECONDS = "2"  # how soon a client should poll GET /payments/{id}


def _start_standard(payment: Payment) -> dict[str, Any]:
    """Starts the STANDARD workflow (3-D Secure, large amounts) and answers 202 `processing` at once.
    The execution is named after the payment, so a retried start never runs a second one."""
    execution_input = {
        "payment_id": payment.payment_id,
        "merchant_id": payment.merchant_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "capture_method": payment.capture_method,
        "card": {k: payment.card[k] for k in ("token", "brand", "last4", "three_d_secure")},
        "return_url": payment.return_url,
        "workflow": Workflow.STANDARD.value,
        "three_d_secure": None,  # the 3-D Secure result, filled in by Request3DS / Wait3DSCallback
    }
    try:
        _sfn().start_execution(
            stateMachineArn=os.environ["STANDARD_STATE_MACHINE_ARN"],
            name=execution_name(payment.payment_id),
            input=json.dumps(execution_input),
        )
    except ClientError as exc:
        # ExecutionAlreadyExists: an earlier attempt started it, and that execution is this payment's.
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            logger.exception("StartExecution of the STANDARD workflow failed")
            raise ApiError(
                "The payment could not be started; retry later.",
                code="workflow_unavailable",
                payment_id=payment.payment_id,
            ) from exc
    return {
        "status_code": 202,
        "body": payment.view(),
        "headers": {"Retry-After": STANDARD_RETRY_AFTER_SECONDS},
    }


def _annotations(payment: Payment) -> dict[str, str]:
    """The router's X-Ray annotations: this API call's trace is findable by payment, merchant, outcome."""
    fields: dict[str, Any] = {"payment_id": payment.payment_id, "merchant_id": payment.merchant_id}
    fields |= {"amount": payment.amount, "currency": payment.currency}
    outcome = {"status": payment.status.value, "decline_code": payment.decline_code}
    return step_annotations(state="CreatePayment", event=fields, outcome=outcome, workflow=payment.workflow)


def _tokenize(card: CardInput | None, payment_method: str | None, *, idempotency_key: str) -> TokenizedCard:
    """The card into the acquirer's vault (or a vaulted token looked up): only the token comes back."""
    acquirer = wiring.acquirer_client()
    try:
        if card is None:
            return acquirer.retrieve_token(str(payment_method))
        vault = CardToVault(card.number, card.exp_month, card.exp_year, card.cvc, card.holder_name)
        return acquirer.tokenize(vault, idempotency_key=idempotency_key)
    except AcquirerRejected as exc:
        param = "payment_method" if card is None else "card"
        raise InvalidRequestError(
            f"The acquirer rejected the card: {exc.code}", code=exc.code, param=param
        ) from exc
    except AcquirerError as exc:
        raise ApiError("The card could not be tokenized; retry later.", code="acquirer_unavailable") from exc


def _run_express(payment: Payment) -> dict[str, Any]:
    execution_input = {
        "payment_id": payment.payment_id,
        "merchant_id": payment.merchant_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "capture_method": payment.capture_method,
        "card": {k: payment.card[k] for k in ("token", "brand", "last4")},
        "workflow": Workflow.EXPRESS.value,
    }
    result = _sfn().start_sync_execution(
        stateMachineArn=os.environ["EXPRESS_STATE_MACHINE_ARN"],
        name=execution_name(payment.payment_id),
        input=json.dumps(execution_input),
    )
    outcome = _outcome(result)
    if outcome is None:  # the workflow ended without telling: the table has the truth
        stored = wiring.payment_repository().get(payment.payment_id)
        payment = stored or payment
    else:
        payment = payment.with_changes(
            status=PaymentStatus(outcome["status"]),
            **{
                k: outcome.get(k)
                for k in ("authorization_id", "decline_code", "failure_code", "failure_message")
            },
            amount_authorized=outcome.get("amount_authorized") or 0,
            amount_captured=outcome.get("amount_captured") or 0,
        )
    metrics.add_metric(name=f"Express{payment.status.value.title()}", unit=MetricUnit.Count, value=1)
    annotate(tracer, _annotations(payment))
    return _answer(payment)


def _outcome(result: dict[str, Any]) -> dict[str, Any] | None:
    text = result.get("output") if result["status"] == "SUCCEEDED" else result.get("cause")
    if result["status"] not in ("SUCCEEDED", "FAILED") or not text:
        logger.error("express execution ended without an outcome", extra={"status": result["status"]})
        return None
    try:
        outcome = json.loads(text)
    except ValueError:
        return None
    valid = isinstance(outcome, dict) and outcome.get("status") in PaymentStatus.__members__.values()
    return outcome if valid else None


def _answer(payment: Payment) -> dict[str, Any]:
    if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REQUIRES_CAPTURE):
        return {"status_code": 200, "body": payment.view()}
    if payment.status is PaymentStatus.FAILED and (
        payment.decline_code or payment.failure_code == "capture_failed"
    ):
        error = CardError(
            payment.failure_message or "The card was declined.",
            code=payment.failure_code or "card_declined",
            decline_code=payment.decline_code,
            payment_id=payment.payment_id,
        )
        return {"status_code": 402, "body": error.body()}
    error_code = "processing_error" if payment.status is PaymentStatus.FAILED else "payment_status_unknown"
    api_error = ApiError(
        "The payment could not be completed; GET it later for its final status.",
        code=error_code,
        payment_id=payment.payment_id,
    )
    return {"status_code": 502, "body": api_error.body()}


def _sfn() -> Any:
    return wiring.aws_client("stepfunctions")


# --- errors -------------------------------------------------------------------------------------------------


def _json(status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> Response[Any]:
    """``body``: a dict, or the JSON text of one (an idempotent answer, see _body_as_text)."""
    text = body if isinstance(body, str) else json.dumps(body)
    kind = content_types.APPLICATION_JSON
    return Response(status_code=status, content_type=kind, body=text, headers=headers)


@app.exception_handler(PaymentError)
def _payment_error(error: PaymentError) -> Response[Any]:
    return _json(error.http_status, error.body())


@app.exception_handler(RequestValidationError)
def _validation_error(error: RequestValidationError) -> Response[Any]:
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ())]
    if location[:1] == ["header"]:
        param = IDEMPOTENCY_HEADER if location[-1].lower() == IDEMPOTENCY_HEADER.lower() else location[-1]
        reason = "header is required" if first.get("type") == "missing" else "header is invalid"
    else:
        param = (
            ".".join(location[1:]) if location[:1] in (["body"], ["path"], ["query"]) else ".".join(location)
        )
        reason = _reason(first)
    invalid = InvalidRequestError(
        f"{param or 'body'}: {reason}", code="parameter_invalid", param=param or None
    )
    if first.get("type") == "missing":
        invalid.code = "parameter_missing"
    return _json(400, invalid.body())


def _reason(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    if error.get("type") == "json_invalid":
        return "body is not valid JSON"
    return message.removeprefix("Value error, ")  # never echo the input: it may be a card number


@app.exception_handler(IdempotencyValidationError)
def _idempotency_mismatch(_: IdempotencyValidationError) -> Response[Any]:
    error = InvalidRequestError(
        "This Idempotency-Key was used with a different request body.",
        code="idempotency_key_reused",
        param=IDEMPOTENCY_HEADER,
    )
    error.error_type = "idempotency_error"
    return _json(422, error.body())


@app.exception_handler(IdempotencyAlreadyInProgressError)
def _idempotency_in_progress(_: IdempotencyAlreadyInProgressError) -> Response[Any]:
    error = InvalidRequestError(
        "A request with this Idempotency-Key is still being processed.",
        code="idempotency_in_progress",
        param=IDEMPOTENCY_HEADER,
    )
    error.error_type = "idempotency_error"
    return _json(409, error.body())


# --- entry point ---------------------------------------------------------------------------------------


@logger.inject_lambda_context(log_event=False)  # the event may carry a card number: never log it
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
