"""Black-box tests of the payment API: the stack started as `make run` starts it (`python -m local start` with
the acquirer simulator as a sidecar, real clock), spoken to over HTTP only, as the README's curl examples."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .stack import (
    APPROVED,
    AUTHORIZE_SLOW_ONCE,
    MERCHANT_A_KEY,
    MERCHANT_B_KEY,
    THREE_DS_CHALLENGE,
    PaymentsApi,
    StackProcess,
    authorizations_for,
    payment_body,
)


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    # Slow test cards answer after 1.3 s and the acquirer client gives up after 1 s (the template's minimum),
    # so the authorize-timeout retry costs about a second of real time.
    process = StackProcess(acquirer_slow_ms=1300, parameter_overrides={"AcquirerTimeoutSeconds": "1"}).start()
    try:
        process.wait_for_acquirer()
        yield process
    finally:
        process.stop()


@pytest.fixture
def api(stack: StackProcess) -> Iterator[PaymentsApi]:
    client = PaymentsApi(stack.api_url, MERCHANT_A_KEY)
    yield client
    client.close()


def _paid(api: PaymentsApi, **fields: Any) -> dict[str, Any]:
    answer = api.create(payment_body(APPROVED, **fields))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_banner_names_the_routes_and_the_demo_merchant_keys(stack: StackProcess) -> None:
    banner = "\n".join(stack.banner)
    assert stack.endpoint_url.startswith("http://127.0.0.1:") and stack.api_url.startswith(
        "http://127.0.0.1:"
    )
    assert MERCHANT_A_KEY in banner and MERCHANT_B_KEY in banner
    assert "POST   /payments  ->" in banner


def test_approved_card_succeeds_in_one_call(api: PaymentsApi) -> None:
    payment = _paid(api, description="Order #1001")
    assert (payment["status"], payment["amount"], payment["amount_received"]) == ("succeeded", 5000, 5000)
    assert (payment["currency"], payment["description"]) == ("jpy", "Order #1001")
    assert payment["card"] == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
        "country": "US",
    }
    assert str(payment["id"]).startswith("pay_")


def test_declined_card_answers_402_with_its_decline_code(api: PaymentsApi) -> None:
    answer = api.create(payment_body("4000000000009995"))
    assert answer.status_code == 402
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "insufficient_funds",
    )
    assert api.get(error["payment_id"]).json()["status"] == "failed"


def test_same_idempotency_key_and_body_replays_the_first_answer(
    api: PaymentsApi, stack: StackProcess
) -> None:
    key = f"order-{uuid.uuid4().hex}"
    first = api.create(payment_body(APPROVED), key)
    again = api.create(payment_body(APPROVED), key)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content  # the same bytes, as Stripe replays
    assert len(authorizations_for(stack.acquirer_url, first.json()["id"])) == 1  # charged once


def test_same_idempotency_key_with_another_body_is_422(api: PaymentsApi) -> None:
    key = f"order-{uuid.uuid4().hex}"
    assert api.create(payment_body(APPROVED), key).status_code == 200
    reused = api.create(payment_body(APPROVED, amount=6000), key)
    assert reused.status_code == 422
    assert reused.json()["error"]["type"] == "idempotency_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": 10.5, "currency": "jpy", "payment_method": "tok_abcdefgh12"}, "amount"),
        ({"amount": 5000, "card": payment_body()["card"]}, "currency"),
        (payment_body(amount=-1), "amount"),
    ],
)
def test_bad_body_is_400_naming_the_field(api: PaymentsApi, body: dict[str, object], param: str) -> None:
    answer = api.create(body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"].startswith(f"{param}: ")


def test_missing_or_unknown_api_key_is_403_forbidden(stack: StackProcess) -> None:
    for headers in ({}, {"X-Api-Key": "pk_test_not_a_merchant_000000"}):
        answer = requests.post(
            f"{stack.api_url}/payments",
            data=json.dumps(payment_body()),
            headers={"Idempotency-Key": uuid.uuid4().hex, **headers},
            timeout=30,
        )
        assert answer.status_code == 403
        assert answer.json() == {"message": "Forbidden"}


def test_get_returns_the_payment_and_other_merchants_get_404(api: PaymentsApi, stack: StackProcess) -> None:
    payment = _paid(api)
    got = api.get(str(payment["id"]))
    assert got.status_code == 200
    assert {k: got.json()[k] for k in ("id", "status", "amount", "card")} == {
        k: payment[k] for k in ("id", "status", "amount", "card")
    }
    other = PaymentsApi(stack.api_url, MERCHANT_B_KEY)
    try:
        hidden = other.get(str(payment["id"]))
    finally:
        other.close()
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "resource_missing"
    assert api.get("pay_doesnotexist0000000000").status_code == 404


def test_manual_capture_then_capture_succeeds(api: PaymentsApi, stack: StackProcess) -> None:
    payment = _paid(api, capture_method="manual")
    assert (payment["status"], payment["amount_capturable"]) == ("requires_capture", 5000)
    captured = api.act(str(payment["id"]), "capture", {"amount_to_capture": 2000})
    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_received"]) == ("succeeded", 2000)
    [auth] = authorizations_for(stack.acquirer_url, str(payment["id"]))
    assert (auth["status"], auth["amount_captured"]) == ("captured", 2000)


def test_cancel_voids_an_uncaptured_payment_and_not_a_captured_one(
    api: PaymentsApi, stack: StackProcess
) -> None:
    payment = _paid(api, capture_method="manual")
    canceled = api.act(str(payment["id"]), "cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    [auth] = authorizations_for(stack.acquirer_url, str(payment["id"]))
    assert auth["status"] == "voided"
    succeeded = _paid(api)
    refused = api.act(str(succeeded["id"]), "cancel")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "payment_unexpected_state"


def test_partial_refund_then_over_refund_is_refused(api: PaymentsApi) -> None:
    payment = _paid(api)
    refund = api.act(str(payment["id"]), "refunds", {"amount": 500})
    assert refund.status_code == 200, refund.text
    assert (refund.json()["amount"], refund.json()["status"]) == (500, "succeeded")
    assert api.get(str(payment["id"])).json()["amount_refunded"] == 500
    over = api.act(str(payment["id"]), "refunds", {"amount": 5000})
    assert over.status_code == 400, over.text
    assert (over.json()["error"]["code"], over.json()["error"]["param"]) == ("amount_too_large", "amount")
    assert api.get(str(payment["id"])).json()["amount_refunded"] == 500


def test_3ds_card_is_accepted_for_the_standard_path(api: PaymentsApi) -> None:
    answer = api.create(payment_body(THREE_DS_CHALLENGE, return_url="https://shop.example/return"))
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["workflow"]) == ("processing", "standard")


def test_authorize_timeout_is_retried_in_real_time_and_succeeds(
    api: PaymentsApi, stack: StackProcess
) -> None:
    payment = _paid(api, card=payment_body(AUTHORIZE_SLOW_ONCE)["card"])
    assert payment["status"] == "succeeded"
    assert len(authorizations_for(stack.acquirer_url, str(payment["id"]))) == 1


def test_swagger_ui_and_openapi_document(stack: StackProcess) -> None:
    page = requests.get(f"{stack.api_url}/swagger", timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html") and "swagger-ui" in page.text.lower()
    spec = requests.get(f"{stack.api_url}/swagger", params={"format": "json"}, timeout=30)
    assert spec.status_code == 200
    document = spec.json()
    assert document["openapi"].startswith("3.")
    assert {"/payments", "/payments/{payment_id}"} <= set(document["paths"])
    assert "post" in document["paths"]["/payments"]


def test_ctrl_c_stops_the_stack_with_status_0(stack: StackProcess) -> None:
    assert stack.stop() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.api_url}/swagger", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.acquirer_url}/v1/_admin/ledger", timeout=5)  # the sidecar went with it
