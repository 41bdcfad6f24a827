"""The real EXPRESS ASL and the real handlers, on the whole local runtime (worker-process Lambdas, API
Gateway, moto's Step Functions engine, virtual clock) with the acquirer simulator over HTTP. Driven only
through unmodified boto3 (StartSyncExecution with the input the router builds) and the payment API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from payeasy.payment import Payment, execution_name, new_payment_id, utc_now_iso
from payeasy.repository import DynamoPaymentRepository
from payeasy.status import PaymentStatus

from .pan_scan import find_card_data
from .stack import (
    ACQUIRER_KEY,
    APPROVED,
    AUTHORIZE_SLOW_ALWAYS,
    AUTHORIZE_SLOW_ONCE,
    CAPTURE_FAILS,
    DECLINES,
    AppStack,
    card,
    entered_states,
    payment_body,
    running_app,
)

# The acquirer client times out after 1 s (the template's minimum); slow cards answer after 1.3 s.
SLOW_MS = 1300
TIMEOUT_S = 1
USED_PANS = [APPROVED, *DECLINES, AUTHORIZE_SLOW_ALWAYS, AUTHORIZE_SLOW_ONCE, CAPTURE_FAILS]


@pytest.fixture(scope="module")
def app() -> Iterator[AppStack]:
    with running_app(slow_ms=SLOW_MS, acquirer_timeout_s=TIMEOUT_S) as stack:
        yield stack


# --- helpers -----------------------------------------------------------------------------------------------


def start_express(
    app: AppStack, number: str, *, capture_method: str = "automatic"
) -> tuple[str, dict[str, Any]]:
    """What the router does for an EXPRESS payment: tokenize, record the payment `processing`, then
    StartSyncExecution named after the payment with the router's input shape. (payment id, response)."""
    token = requests.post(
        f"{app.acquirer.url}/v1/tokens",
        json=card(number),
        headers={"Authorization": f"Bearer {ACQUIRER_KEY}"},
        timeout=10,
    ).json()
    payment = Payment(
        payment_id=new_payment_id(),
        merchant_id="merchant_a",
        status=PaymentStatus.PROCESSING,
        amount=5000,
        currency="JPY",
        capture_method=capture_method,
        card={"token": token["id"], "brand": token["brand"], "last4": token["last4"]},
        workflow="express",
        created=int(time.time()),
        updated_at=utc_now_iso(),
    )
    DynamoPaymentRepository(app.table_name("PaymentsTable"), client=app.client("dynamodb")).create(payment)
    execution_input = {
        "payment_id": payment.payment_id,
        "merchant_id": payment.merchant_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "capture_method": capture_method,
        "card": payment.card,
    }
    result = app.client("stepfunctions").start_sync_execution(
        stateMachineArn=app.express_arn,
        name=execution_name(payment.payment_id),
        input=json.dumps(execution_input),
    )
    return payment.payment_id, result


def execution_of(app: AppStack, payment_id: str) -> dict[str, Any]:
    found = [
        e
        for e in app.client("stepfunctions").list_executions(stateMachineArn=app.express_arn)["executions"]
        if e["name"] == payment_id
    ]
    assert len(found) == 1, f"expected one execution named {payment_id}, got {found}"
    return dict(found[0])


def stored_item(app: AppStack, payment_id: str) -> dict[str, Any]:
    item = app.client("dynamodb").get_item(
        TableName=app.table_name("PaymentsTable"), Key={"payment_id": {"S": payment_id}}
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


# --- StartSyncExecution from an unmodified boto3 client ---------------------------------------------------


def test_automatic_capture_succeeds_and_the_acquirer_captured_once(app: AppStack) -> None:
    payment_id, result = start_express(app, APPROVED)
    assert result["status"] == "SUCCEEDED", result
    assert result["name"] == payment_id and f":{payment_id}:" in result["executionArn"]
    output = json.loads(result["output"])
    assert (output["status"], output["amount_captured"]) == ("succeeded", 5000)
    [auth] = app.ledger_for(payment_id)
    assert (auth["status"], auth["amount_captured"], auth["id"]) == (
        "captured",
        5000,
        output["authorization_id"],
    )
    assert [e["type"] for e in auth["events"]].count("capture") == 1
    item = stored_item(app, payment_id)
    assert (item["status"], item["amount_captured"], item["execution_id"]) == (
        "succeeded",
        "5000",
        result["executionArn"],
    )
    states = entered_states(app.history(result["executionArn"]))
    channels = {"SendMerchantWebhook", "NotifyCustomer", "PublishPaymentEvent"}  # parallel: any order
    assert sorted(s for s in states if s in channels) == sorted(channels)
    assert [s for s in states if s not in channels] == [
        "ValidateRequest",
        "AuthorizePayment",
        "CheckAuthResult",
        "CapturePayment",
        "SendNotifications",
        "BuildPaymentEvent",
        "NotifyChannels",
        "AfterNotifications",
        "SaveTransaction",
        "PaymentSuccess",
    ]


def test_manual_capture_stops_at_requires_capture_without_capturing(app: AppStack) -> None:
    payment_id, result = start_express(app, APPROVED, capture_method="manual")
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"])["status"] == "requires_capture"
    [auth] = app.ledger_for(payment_id)
    assert (auth["status"], auth["amount_captured"]) == ("authorized", 0)
    assert "capture" not in [e["type"] for e in auth["events"]]
    assert "CapturePayment" not in entered_states(app.history(result["executionArn"]))
    assert stored_item(app, payment_id)["status"] == "requires_capture"


def test_authorize_timeouts_are_retried_three_times_on_the_virtual_clock(app: AppStack) -> None:
    started = time.monotonic()
    payment_id, result = start_express(app, AUTHORIZE_SLOW_ALWAYS)
    wall = time.monotonic() - started
    assert result["status"] == "FAILED"
    assert json.loads(result["cause"])["failure_code"] == "processing_error"
    events = app.history(result["executionArn"])
    scheduled = [e for e in events if e["type"] in ("LambdaFunctionScheduled", "TaskScheduled")]
    authorize = [e for e in scheduled if "AuthorizeFunction" in json.dumps(e, default=str)]
    failed = [e for e in events if e["type"] in ("LambdaFunctionFailed", "TaskFailed")]
    assert len(authorize) == 4  # the first attempt + MaxAttempts 3
    assert [
        next(iter(v for k, v in e.items() if k.endswith("FailedEventDetails")))["error"] for e in failed
    ] == ["AcquirerTimeout"] * 4
    # Backoff (IntervalSeconds 1, BackoffRate 2, FULL jitter) ran on the virtual clock: history time moved
    # between attempts while the wall time is only the four real 1 s client timeouts.
    stamps = [e["timestamp"] for e in authorize]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    assert wall < 4 * SLOW_MS / 1000 + 3
    assert entered_states(events)[-3:] == ["LookupAuthorization", "RecordRejection", "PaymentFailed"]
    item = stored_item(app, payment_id)
    assert (item["status"], item["failure_code"]) == ("failed", "processing_error")


def test_one_authorize_timeout_is_retried_and_the_payment_succeeds_with_one_authorization(
    app: AppStack,
) -> None:
    payment_id, result = start_express(app, AUTHORIZE_SLOW_ONCE)
    assert result["status"] == "SUCCEEDED", result
    events = app.history(result["executionArn"])
    assert [e["type"] for e in events].count("LambdaFunctionFailed") == 1
    # The retry reuses the acquirer idempotency key: one authorization, captured once.
    [auth] = app.ledger_for(payment_id)
    assert auth["status"] == "captured"


# --- through the payment API (API Gateway -> router Lambda -> StartSyncExecution) -------------------------


def test_api_payment_runs_an_execution_named_after_the_payment(app: AppStack) -> None:
    answer = app.api.create(payment_body(APPROVED))
    assert answer.status_code == 200, answer.text
    payment = answer.json()
    assert (payment["status"], payment["amount_received"]) == ("succeeded", 5000)
    execution = execution_of(app, payment["id"])
    assert execution["status"] == "SUCCEEDED"
    assert execution["name"] == execution_name(payment["id"])
    assert stored_item(app, payment["id"])["execution_id"] == execution["executionArn"]
    [auth] = app.ledger_for(payment["id"])
    assert auth["status"] == "captured"


@pytest.mark.parametrize(("number", "decline_code"), sorted(DECLINES.items()))
def test_decline_card_fails_with_its_code_and_leaves_no_live_authorization(
    app: AppStack, number: str, decline_code: str
) -> None:
    answer = app.api.create(payment_body(number))
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["decline_code"]) == ("card_error", decline_code)
    payment_id = error["payment_id"]
    assert execution_of(app, payment_id)["status"] == "FAILED"
    view = app.api.get(payment_id).json()
    assert (view["status"], view["decline_code"]) == ("failed", decline_code)
    auths = app.ledger_for(payment_id)
    assert auths and {a["status"] for a in auths} == {"declined"}


def test_capture_failure_voids_the_authorization_and_fails_the_payment(app: AppStack) -> None:
    answer = app.api.create(payment_body(CAPTURE_FAILS))
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert error["code"] == "capture_failed"
    [auth] = app.ledger_for(error["payment_id"])
    assert (auth["status"], auth["amount_captured"]) == ("voided", 0)
    assert [e["type"] for e in auth["events"]] == ["authorization", "capture", "void"]
    events = app.history(execution_of(app, error["payment_id"])["executionArn"])
    assert "HandleCaptureFailure" in entered_states(events)
    assert app.api.get(error["payment_id"]).json()["status"] == "failed"


# --- card data ---------------------------------------------------------------------------------------------


def _all_log_events(app: AppStack) -> list[str]:
    logs = app.client("logs")
    groups = [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]]
    messages: list[str] = []
    for group in groups:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            messages += [event["message"] for event in page["events"]]
    return messages


def _scan_table(app: AppStack, logical_id: str) -> list[dict[str, Any]]:
    pages = app.client("dynamodb").get_paginator("scan").paginate(TableName=app.table_name(logical_id))
    return [item for page in pages for item in page["Items"]]


def test_no_card_number_or_cvc_in_histories_tables_or_logs(app: AppStack) -> None:
    # Self-contained: one approved and one declined payment through the API, whatever ran before.
    assert app.api.create(payment_body(APPROVED)).status_code == 200
    assert app.api.create(payment_body("4000000000000002")).status_code == 402
    assert find_card_data(json.dumps(payment_body(APPROVED))), "the scanner must see a card in a request body"

    sfn = app.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=app.express_arn)["executions"]
    histories = [app.history(e["executionArn"]) for e in executions]
    payments = _scan_table(app, "PaymentsTable")
    idempotency = _scan_table(app, "IdempotencyTable")
    log_lines = _all_log_events(app)
    router_group = f"/aws/lambda/{app.function_name('RouterFunction')}"
    assert len(executions) >= 2 and len(payments) >= 2 and len(idempotency) >= 2
    assert any(
        router_group in g["logGroupName"] for g in app.client("logs").describe_log_groups()["logGroups"]
    )
    assert len(log_lines) > 10, "the functions must have logged something for this scan to mean anything"

    for where, value in (
        ("execution histories", histories),
        ("Payments table", payments),
        ("Idempotency table", idempotency),
        ("CloudWatch Logs", log_lines),
    ):
        text = json.dumps(value, default=str)
        assert find_card_data(text) == [], where
        assert [pan for pan in USED_PANS if pan in text] == [], where
