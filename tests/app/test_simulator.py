"""The acquirer simulator over real HTTP: auth, every test card's outcome, idempotency, latency, ledger."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests

from simulators.acquirer import lambda_handler
from simulators.acquirer.cards import TEST_CARDS
from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY


class Api:
    def __init__(self, server: AcquirerServer) -> None:
        self.url = server.url
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        key: str = ACQUIRER_KEY,
        headers: dict[str, str] | None = None,
        timeout: float = 5,
    ) -> requests.Response:
        all_headers = {"Authorization": f"Bearer {key}", **(headers or {})}
        return self.session.request(method, self.url + path, json=body, headers=all_headers, timeout=timeout)

    def token(self, number: str, cvc: str = "123") -> dict[str, Any]:
        answer = self.call(
            "POST",
            "/v1/tokens",
            {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": cvc, "holder_name": "T"},
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def authorize(self, number: str, amount: int = 1000, **headers: str) -> requests.Response:
        token = self.token(number)["id"]
        body = {"token": token, "amount": amount, "currency": "JPY", "reference": "pay_test"}
        return self.call("POST", "/v1/authorizations", body, headers=headers)


@pytest.fixture
def api(acquirer_server: AcquirerServer) -> Api:
    return Api(acquirer_server)


def test_test_cards_are_luhn_valid_and_unique() -> None:
    from payeasy.cards import luhn_valid

    assert all(luhn_valid(number) for number in TEST_CARDS)
    assert len({card.outcome for card in TEST_CARDS.values()}) == len(TEST_CARDS)


def test_api_key_required(api: Api) -> None:
    for key in ("", "sk_wrong"):
        answer = api.call("GET", "/v1/authorizations", key=key)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"


def test_tokenize_keeps_the_pan_in_the_vault(api: Api) -> None:
    token = api.token("4242424242424242")
    assert token["id"].startswith("tok_")
    assert (token["brand"], token["last4"], token["bin_country"]) == ("visa", "4242", "US")
    assert token["three_d_secure"] == "not_required"
    assert "4242424242424242" not in json.dumps(token) and "cvc" not in token
    assert api.call("GET", f"/v1/tokens/{token['id']}").json()["last4"] == "4242"


def test_tokenize_rejects_a_bad_number(api: Api) -> None:
    answer = api.call(
        "POST", "/v1/tokens", {"number": "4242424242424241", "exp_month": 1, "exp_year": 2030, "cvc": "123"}
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_number"


def test_approved_authorize_capture_refund(api: Api) -> None:
    auth = api.authorize("4242424242424242", 5000).json()
    assert auth["status"] == "authorized" and auth["amount"] == 5000
    captured = api.call("POST", f"/v1/authorizations/{auth['id']}/capture", {}).json()
    assert captured["status"] == "captured" and captured["amount_captured"] == 5000
    refund = api.call("POST", "/v1/refunds", {"authorization": auth["id"], "amount": 2000})
    assert refund.status_code == 201 and refund.json()["amount"] == 2000
    too_much = api.call("POST", "/v1/refunds", {"authorization": auth["id"], "amount": 3001})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    assert api.call("POST", f"/v1/authorizations/{auth['id']}/void", {}).status_code == 409


@pytest.mark.parametrize(
    ("number", "decline_code"),
    [
        ("4000000000000002", "generic_decline"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4000000000000119", "processing_error"),
        ("4000000000003220", "authentication_required"),
    ],
)
def test_declines_answer_402_with_decline_code(api: Api, number: str, decline_code: str) -> None:
    answer = api.authorize(number)
    assert answer.status_code == 402
    assert answer.json()["status"] == "declined" and answer.json()["decline_code"] == decline_code


def test_three_d_secure_flags_on_tokens(api: Api) -> None:
    assert api.token("4000000000003220")["three_d_secure"] == "challenge"
    assert api.token("4000000000001067")["three_d_secure"] == "frictionless"


def test_slow_authorize_once_then_replay_is_fast(api: Api) -> None:
    token = api.token("4000000000001018")["id"]
    body = {"token": token, "amount": 1000, "currency": "JPY", "reference": "pay_slow"}
    headers = {"Idempotency-Key": "k-slow"}
    with pytest.raises(requests.Timeout):
        api.call("POST", "/v1/authorizations", body, headers=headers, timeout=0.15)
    started = time.monotonic()
    replay = api.call("POST", "/v1/authorizations", body, headers=headers)
    assert time.monotonic() - started < 0.3
    assert replay.status_code == 201 and replay.json()["status"] == "authorized"
    ledger = api.call("GET", "/v1/_admin/ledger").json()
    assert len([a for a in ledger["authorizations"] if a["reference"] == "pay_slow"]) == 1  # charged once


def test_slow_authorize_always_stays_slow(api: Api) -> None:
    token = api.token("4000000000001075")["id"]
    body = {"token": token, "amount": 1000, "currency": "JPY", "reference": "pay_slow2"}
    for _ in range(2):
        with pytest.raises(requests.Timeout):
            api.call("POST", "/v1/authorizations", body, headers={"Idempotency-Key": "k2"}, timeout=0.15)


def test_capture_failure_then_void(api: Api) -> None:
    auth = api.authorize("4000000000001026").json()
    failed = api.call("POST", f"/v1/authorizations/{auth['id']}/capture", {})
    assert failed.status_code == 402 and failed.json()["status"] == "capture_failed"
    voided = api.call("POST", f"/v1/authorizations/{auth['id']}/void", {})
    assert voided.status_code == 200 and voided.json()["status"] == "voided"


def test_capture_and_void_failure(api: Api) -> None:
    auth = api.authorize("4000000000001059").json()
    assert api.call("POST", f"/v1/authorizations/{auth['id']}/capture", {}).status_code == 402
    assert api.call("POST", f"/v1/authorizations/{auth['id']}/void", {}).status_code == 503


@pytest.mark.parametrize(("number", "captured"), [("4000000000001034", True), ("4000000000001042", False)])
def test_capture_timeout_then_status_lookup(api: Api, number: str, captured: bool) -> None:
    auth = api.authorize(number).json()
    with pytest.raises(requests.Timeout):
        api.call("POST", f"/v1/authorizations/{auth['id']}/capture", {}, timeout=0.15)
    looked_up = api.call("GET", f"/v1/authorizations?reference={auth['reference']}").json()["data"]
    status = {a["id"]: a["status"] for a in looked_up}[auth["id"]]
    assert status == ("captured" if captured else "authorized")


def test_idempotency_replays_and_rejects_other_bodies(api: Api) -> None:
    token = api.token("4242424242424242")["id"]
    body = {"token": token, "amount": 1000, "currency": "JPY", "reference": "pay_idem"}
    first = api.call("POST", "/v1/authorizations", body, headers={"Idempotency-Key": "k1"}).json()
    again = api.call("POST", "/v1/authorizations", body, headers={"Idempotency-Key": "k1"}).json()
    assert first == again
    other = api.call("POST", "/v1/authorizations", {**body, "amount": 999}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_error"
    ledger = api.call("GET", "/v1/_admin/ledger").json()
    assert [a["id"] for a in ledger["authorizations"] if a["reference"] == "pay_idem"] == [first["id"]]


def test_latency_header(api: Api) -> None:
    started = time.monotonic()
    api.call("GET", "/v1/authorizations", headers={"X-Sim-Latency-Ms": "150"})
    assert time.monotonic() - started >= 0.15


def test_lambda_handler_shares_the_same_logic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lambda_handler.ACQUIRER, "api_keys", {ACQUIRER_KEY})
    body = json.dumps({"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"})
    event = {
        "rawPath": "/v1/tokens",
        "isBase64Encoded": True,
        "body": base64.b64encode(body.encode()).decode(),
        "headers": {"authorization": f"Bearer {ACQUIRER_KEY}", "content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/v1/tokens"}},
    }
    answer = lambda_handler.handler(event, None)
    assert answer["statusCode"] == 201 and json.loads(answer["body"])["last4"] == "4242"
    event["headers"] = {}
    assert lambda_handler.handler(event, None)["statusCode"] == 401
