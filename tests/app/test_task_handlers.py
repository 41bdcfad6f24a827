"""Task handlers (authorize, capture, void) with Secrets Manager under moto and the simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws
from payeasy.acquirer_http import HttpAcquirerClient
from payeasy.errors import AcquirerRejected, AcquirerTimeout, AcquirerUnavailable, CaptureFailed
from payeasy.money import Money

from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY
from .handler_support import FakeContext, aws_env, load_event, load_function, reset_caches
from .pan_scan import find_card_data


@pytest.fixture
def handlers(
    acquirer_server: AcquirerServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, ModuleType]]:
    aws_env(monkeypatch, ACQUIRER_BASE_URL=acquirer_server.url, ACQUIRER_TIMEOUT_SECONDS="0.2")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="payeasy/test/acquirer-api-key", SecretString=json.dumps({"api_key": ACQUIRER_KEY})
        )["ARN"]
        monkeypatch.setenv("ACQUIRER_SECRET_ARN", arn)
        reset_caches()
        yield {name: load_function(name) for name in ("authorize", "capture", "void")}
        reset_caches()


def _state(server: AcquirerServer, number: str, amount: int = 5000) -> dict[str, Any]:
    """The sample task event with a real vault token for ``number``."""
    token = requests.post(
        server.url + "/v1/tokens",
        json={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "T"},
        headers={"Authorization": f"Bearer {ACQUIRER_KEY}"},
        timeout=5,
    ).json()
    state = load_event("task_authorize")
    state["card"]["token"] = token["id"]
    state["amount"] = amount
    return state


def _ledger(server: AcquirerServer) -> list[dict[str, Any]]:
    answer = requests.get(
        server.url + "/v1/_admin/ledger", headers={"Authorization": f"Bearer {ACQUIRER_KEY}"}, timeout=5
    )
    return list(answer.json()["authorizations"])


def test_sample_events_carry_no_card_data() -> None:
    for name in ("task_authorize", "task_capture", "task_void", "get_payment"):
        assert find_card_data(load_event(name)) == []


def test_authorize_approved(handlers: dict[str, ModuleType], acquirer_server: AcquirerServer) -> None:
    outcome = handlers["authorize"].handler(_state(acquirer_server, "4242424242424242"), FakeContext())
    assert outcome["status"] == "requires_capture"
    assert outcome["authorization_id"].startswith("auth_") and outcome["amount_authorized"] == 5000
    assert outcome["decline_code"] is None


@pytest.mark.parametrize(
    ("number", "decline", "code"),
    [
        ("4000000000009995", "insufficient_funds", "card_declined"),
        ("4000000000000069", "expired_card", "expired_card"),
        ("4000000000000002", "generic_decline", "card_declined"),
    ],
)
def test_authorize_decline_is_a_result(
    handlers: dict[str, ModuleType], acquirer_server: AcquirerServer, number: str, decline: str, code: str
) -> None:
    outcome = handlers["authorize"].handler(_state(acquirer_server, number), FakeContext())
    assert (outcome["status"], outcome["decline_code"], outcome["failure_code"]) == ("failed", decline, code)
    assert outcome["amount_authorized"] == 0


def test_authorize_timeout_raises_the_asl_error_then_retry_replays(
    handlers: dict[str, ModuleType], acquirer_server: AcquirerServer
) -> None:
    state = _state(acquirer_server, "4000000000001018")
    with pytest.raises(AcquirerTimeout) as caught:
        handlers["authorize"].handler(state, FakeContext())
    assert type(caught.value).__name__ == "AcquirerTimeout"  # the ASL Retry matches this name
    outcome = handlers["authorize"].handler(state, FakeContext())  # what Retry does
    assert outcome["status"] == "requires_capture"
    mine = [a for a in _ledger(acquirer_server) if a["reference"] == state["payment_id"]]
    assert [a["id"] for a in mine] == [outcome["authorization_id"]]  # authorized exactly once


def _authorized(handlers: dict[str, ModuleType], server: AcquirerServer, number: str) -> dict[str, Any]:
    state = _state(server, number)
    state["outcome"] = handlers["authorize"].handler(state, FakeContext())
    assert state["outcome"]["status"] == "requires_capture"
    return state


def test_capture_succeeds(handlers: dict[str, ModuleType], acquirer_server: AcquirerServer) -> None:
    state = _authorized(handlers, acquirer_server, "4242424242424242")
    outcome = handlers["capture"].handler(state, FakeContext())
    assert (outcome["status"], outcome["amount_captured"]) == ("succeeded", 5000)
    assert outcome["authorization_id"] == state["outcome"]["authorization_id"]


def test_capture_failure_raises_capture_failed(
    handlers: dict[str, ModuleType], acquirer_server: AcquirerServer
) -> None:
    state = _authorized(handlers, acquirer_server, "4000000000001026")
    with pytest.raises(CaptureFailed):
        handlers["capture"].handler(state, FakeContext())


def test_capture_timeout_but_captured_is_a_success(
    handlers: dict[str, ModuleType], acquirer_server: AcquirerServer
) -> None:
    state = _authorized(handlers, acquirer_server, "4000000000001034")
    outcome = handlers["capture"].handler(state, FakeContext())
    assert outcome["status"] == "succeeded" and outcome["amount_captured"] == 5000


def test_capture_timeout_not_captured_is_retried(
    handlers: dict[str, ModuleType], acquirer_server: AcquirerServer
) -> None:
    state = _authorized(handlers, acquirer_server, "4000000000001042")
    with pytest.raises(AcquirerTimeout):
        handlers["capture"].handler(state, FakeContext())


def test_void_after_capture_failure(handlers: dict[str, ModuleType], acquirer_server: AcquirerServer) -> None:
    state = _authorized(handlers, acquirer_server, "4000000000001026")
    with pytest.raises(CaptureFailed):
        handlers["capture"].handler(state, FakeContext())
    state["error"] = {"Error": "CaptureFailed", "Cause": "{}"}
    outcome = handlers["void"].handler(state, FakeContext())
    assert (outcome["status"], outcome["failure_code"]) == ("failed", "capture_failed")
    auth = next(a for a in _ledger(acquirer_server) if a["id"] == state["outcome"]["authorization_id"])
    assert auth["status"] == "voided"


def test_void_failure_is_transient(handlers: dict[str, ModuleType], acquirer_server: AcquirerServer) -> None:
    state = _authorized(handlers, acquirer_server, "4000000000001059")
    with pytest.raises(AcquirerUnavailable):
        handlers["void"].handler(state, FakeContext())


def test_http_client_failure_mapping(acquirer_server: AcquirerServer) -> None:
    with pytest.raises(AcquirerUnavailable):
        HttpAcquirerClient("http://127.0.0.1:9", ACQUIRER_KEY).get_authorization("auth_x")  # nothing listens
    with pytest.raises(AcquirerRejected) as caught:
        HttpAcquirerClient(acquirer_server.url, "sk_wrong").get_authorization("auth_x")
    assert caught.value.status == 401
    client = HttpAcquirerClient(
        acquirer_server.url, ACQUIRER_KEY, extra_headers={"X-Sim-Latency-Ms": "300"}, read_timeout=0.1
    )
    with pytest.raises(AcquirerTimeout):
        client.authorize(token="tok_x", money=Money(1, "JPY"), reference="r", idempotency_key="k")
