"""The router with events/ samples: DynamoDB and Secrets Manager under moto, the simulator over HTTP, and a
test double for Step Functions (test_express_workflow.py runs the real ASL on the local engine)."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws
from payeasy import tasks, wiring
from payeasy.errors import CaptureFailed
from payeasy.status import PaymentStatus

from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY
from .handler_support import ROOT, FakeContext, aws_env, load_event, load_function, reset_caches
from .pan_scan import find_card_data

KEY_A = "pk_test_merchant_a_4f8b2c71d9e6"
KEY_B = "pk_test_merchant_b_93ad5e07c1f2"
MACHINE_ARN = "arn:aws:states:ap-northeast-1:123456789012:stateMachine:payeasy-payment-express-test"
STANDARD_ARN = "arn:aws:states:ap-northeast-1:123456789012:stateMachine:payeasy-payment-standard-test"


@dataclass
class FakeExpressWorkflow:
    """Stands in for StartSyncExecution: runs the real task logic against the simulator and answers as Step
    Functions does (SUCCEEDED + output, or FAILED + PaymentFailed + the outcome as cause)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    during_run: Any = None  # called once while the "execution" runs (to send a concurrent duplicate)
    started: list[dict[str, Any]] = field(default_factory=list)  # StartExecution (STANDARD) calls
    start_error: Exception | None = None

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        self.started.append({"arn": stateMachineArn, "name": name, "input": json.loads(input)})
        if self.start_error is not None:
            raise self.start_error
        return {"executionArn": f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"}

    def start_sync_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        self.calls.append({"arn": stateMachineArn, "name": name, "input": json.loads(input)})
        if self.during_run is not None:
            hook, self.during_run = self.during_run, None
            hook()
        state = json.loads(input)
        acquirer = wiring.acquirer_client()
        outcome = tasks.authorize(state, acquirer)
        if outcome["status"] == "requires_capture" and state["capture_method"] == "automatic":
            try:
                outcome = tasks.capture({**state, "outcome": outcome}, acquirer)
            except CaptureFailed:
                outcome = tasks.void_after_capture_failure({**state, "outcome": outcome}, acquirer)
        repository = wiring.payment_repository()
        stored = repository.get(state["payment_id"])
        assert stored is not None
        keep = ("authorization_id", "amount_authorized", "amount_captured", "decline_code", "failure_code")
        changes = {k: outcome[k] for k in keep}  # what SaveTransaction / HandleAuthFailure write
        repository.save(
            stored.with_changes(status=PaymentStatus(outcome["status"]), **changes),
            expected_status="processing",
        )
        if outcome["status"] == "failed":
            return {"status": "FAILED", "error": "PaymentFailed", "cause": json.dumps(outcome)}
        return {"status": "SUCCEEDED", "output": json.dumps(outcome)}


@pytest.fixture
def router(acquirer_server: AcquirerServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    aws_env(
        monkeypatch,
        ACQUIRER_BASE_URL=acquirer_server.url,
        ACQUIRER_TIMEOUT_SECONDS="2",
        PAYMENTS_TABLE="payments",
        IDEMPOTENCY_TABLE="idempotency",
        EXPRESS_STATE_MACHINE_ARN=MACHINE_ARN,
        STANDARD_STATE_MACHINE_ARN=STANDARD_ARN,
        EXPRESS_LIMITS="JPY=100000,USD=100000",
        MERCHANT_API_KEYS=f"{KEY_A}=merchant_a,{KEY_B}=merchant_b",
    )
    with mock_aws():
        ddb = boto3.client("dynamodb")
        for name, key in (("payments", "payment_id"), ("idempotency", "id")):
            ddb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            )
        arn = boto3.client("secretsmanager").create_secret(
            Name="payeasy/test/acquirer-api-key", SecretString=json.dumps({"api_key": ACQUIRER_KEY})
        )["ARN"]
        monkeypatch.setenv("ACQUIRER_SECRET_ARN", arn)
        reset_caches()
        module = load_function("router")
        module._merchants_by_key.cache_clear()
        workflow = FakeExpressWorkflow()
        monkeypatch.setattr(module, "_sfn", lambda: workflow)
        monkeypatch.setattr(module, "fake_workflow", workflow, raising=False)
        yield module
        reset_caches()


def call(router: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = router.handler(event, FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


def payment_event(
    number: str = "4242424242424242", *, key: str = "k-1", api_key: str = KEY_A, **body: Any
) -> dict[str, Any]:
    event = load_event("create_payment_approved")
    data = json.loads(event["body"])
    data["card"]["number"] = number
    data.update(body)
    event["body"] = json.dumps(data)
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    event["requestContext"]["identity"]["apiKey"] = api_key
    return event


def all_items(table: str) -> list[dict[str, Any]]:
    return list(boto3.client("dynamodb").scan(TableName=table)["Items"])


def test_approved_payment_in_one_call(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_approved"))
    assert status == 200, body
    assert body["status"] == "succeeded" and body["amount"] == 5000 and body["currency"] == "jpy"
    assert (
        body["amount_received"] == 5000
        and body["card"]["last4"] == "4242"
        and body["card"]["brand"] == "visa"
    )
    assert body["metadata"] == {"order_id": "1001"} and body["workflow"] == "express"
    [execution] = router.fake_workflow.calls
    assert execution["name"] == body["id"] and execution["arn"] == MACHINE_ARN
    assert execution["input"]["merchant_id"] == "merchant_a"  # from the API key, never the body
    assert execution["input"]["card"]["token"].startswith("tok_")


def test_card_data_is_never_kept(
    router: ModuleType, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    call(router, load_event("create_payment_approved"))
    call(router, load_event("create_payment_declined"))
    call(router, load_event("create_payment_invalid"))
    assert find_card_data(router.fake_workflow.calls) == []
    assert find_card_data(all_items("payments")) == []
    assert find_card_data(all_items("idempotency")) == []
    out = capsys.readouterr()
    assert find_card_data(out.out + out.err + caplog.text) == []


def test_manual_capture_answers_requires_capture(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_manual_capture"))
    assert (status, body["status"], body["amount_capturable"], body["currency"]) == (
        200,
        "requires_capture",
        2599,
        "usd",
    )


def test_decline_is_402_with_decline_code(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_declined"))
    assert status == 402
    error = body["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "insufficient_funds",
    )
    assert error["payment_id"].startswith("pay_")


def test_capture_failure_is_402_capture_failed(router: ModuleType) -> None:
    status, body = call(router, payment_event("4000000000001026"))
    assert status == 402 and body["error"]["code"] == "capture_failed"


def test_same_key_same_body_replays_the_first_answer(router: ModuleType) -> None:
    first = call(router, payment_event("4000000000000002", key="same"))
    again = call(router, payment_event("4000000000000002", key="same"))
    assert first == again and first[0] == 402
    assert len(router.fake_workflow.calls) == 1


def test_a_replay_is_the_same_bytes_as_the_first_answer(router: ModuleType) -> None:
    """Powertools would store a dict body with sorted keys: the answer is stored as the text that was sent."""
    first = router.handler(payment_event(key="bytes"), FakeContext())
    again = router.handler(payment_event(key="bytes"), FakeContext())
    assert first["statusCode"] == again["statusCode"] == 200
    assert again["body"] == first["body"]
    assert len(router.fake_workflow.calls) == 1


def test_same_key_other_body_is_422(router: ModuleType) -> None:
    assert call(router, payment_event(key="k-x", amount=5000))[0] == 200
    status, body = call(router, payment_event(key="k-x", amount=5001))
    assert status == 422 and body["error"]["type"] == "idempotency_error"


def test_keys_are_per_merchant(router: ModuleType) -> None:
    call(router, payment_event(key="shared"))
    status, _ = call(router, payment_event(key="shared", api_key=KEY_B, amount=7000))
    assert status == 200 and len(router.fake_workflow.calls) == 2


def test_concurrent_duplicate_is_409(router: ModuleType) -> None:
    event = payment_event(key="k-concurrent")
    seen: list[tuple[int, dict[str, Any]]] = []
    router.fake_workflow.during_run = lambda: seen.append(call(router, copy.deepcopy(event)))
    assert call(router, event)[0] == 200
    [(status, body)] = seen
    assert status == 409 and body["error"]["type"] == "idempotency_error"


def test_invalid_body_names_the_field_and_writes_nothing(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_invalid"))
    assert status == 400
    assert (body["error"]["type"], body["error"]["param"]) == ("invalid_request_error", "amount")
    assert all_items("payments") == [] and router.fake_workflow.calls == []


@pytest.mark.parametrize(
    ("change", "param"),
    [
        (
            {
                "card": {
                    "number": "4242424242424241",
                    "exp_month": 1,
                    "exp_year": 2034,
                    "cvc": "123",
                    "holder_name": "x",
                }
            },
            "card.number",
        ),
        ({"currency": "abc"}, "currency"),
        ({"capture_method": "later"}, "capture_method"),
    ],
)
def test_bad_fields(router: ModuleType, change: dict[str, Any], param: str) -> None:
    status, body = call(router, payment_event(**change))
    assert status == 400 and body["error"]["param"] == param
    assert find_card_data(body) == []


def test_malformed_json_is_400(router: ModuleType) -> None:
    event = payment_event()
    event["body"] = '{"amount": '
    status, body = call(router, event)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


def test_idempotency_key_is_required(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_no_idempotency_key"))
    assert status == 400 and body["error"]["param"] == "Idempotency-Key"


def test_three_d_secure_goes_standard_and_answers_202(router: ModuleType) -> None:
    status, body = call(router, load_event("create_payment_3ds"))
    assert (status, body["status"], body["workflow"]) == (202, "processing", "standard")
    assert router.fake_workflow.calls == []
    [started] = router.fake_workflow.started
    assert (started["arn"], started["name"]) == (STANDARD_ARN, body["id"])


def test_over_the_express_limit_goes_standard(router: ModuleType) -> None:
    status, body = call(router, payment_event(amount=100_001))
    assert (status, body["workflow"]) == (202, "standard")
    assert [s["name"] for s in router.fake_workflow.started] == [body["id"]]


def test_get_payment_and_other_merchants_404(router: ModuleType) -> None:
    _, created = call(router, load_event("create_payment_approved"))
    event = load_event("get_payment")
    event["path"] = f"/payments/{created['id']}"
    event["pathParameters"] = {"payment_id": created["id"]}
    status, body = call(router, event)
    assert status == 200 and body["id"] == created["id"] and body["status"] == "succeeded"
    event["requestContext"]["identity"]["apiKey"] = KEY_B
    status, body = call(router, event)
    assert status == 404 and body["error"]["code"] == "resource_missing"


def test_unknown_api_key_is_401(router: ModuleType) -> None:
    status, body = call(router, payment_event(api_key="pk_unknown_key_000000"))
    assert status == 401 and body["error"]["type"] == "authentication_error"


def test_openapi_comes_from_the_models(router: ModuleType) -> None:
    event = load_event("get_payment")
    event.update(
        path="/swagger",
        resource="/swagger",
        pathParameters=None,
        queryStringParameters={"format": "json"},
        multiValueQueryStringParameters={"format": ["json"]},
    )
    answer = router.handler(event, FakeContext())
    spec = json.loads(answer["body"])
    assert {
        "/payments",
        "/payments/{payment_id}",
        "/payments/{payment_id}/capture",
        "/payments/{payment_id}/cancel",
        "/payments/{payment_id}/refunds",
    } <= set(spec["paths"])
    assert "CreatePaymentRequest" in spec["components"]["schemas"]
    html = router.handler(
        {**event, "queryStringParameters": None, "multiValueQueryStringParameters": None}, FakeContext()
    )
    assert html["statusCode"] == 200 and "swagger" in html["body"].lower()


def action_event(
    payment_id: str, action: str, body: dict[str, Any] | None, *, key: str, api_key: str = KEY_A
) -> dict[str, Any]:
    event = payment_event(key=key, api_key=api_key)
    resource = f"/payments/{{payment_id}}/{action}"
    event.update(
        path=f"/payments/{payment_id}/{action}",
        resource=resource,
        pathParameters={"payment_id": payment_id},
        body=None if body is None else json.dumps(body),
    )
    event["requestContext"]["resourcePath"] = resource
    return event


def test_manual_capture_then_refunds(router: ModuleType, acquirer_server: AcquirerServer) -> None:
    _, created = call(router, load_event("create_payment_manual_capture"))
    pid = created["id"]
    status, body = call(router, action_event(pid, "capture", {"amount_to_capture": 9999}, key="c0"))
    assert status == 400 and body["error"]["param"] == "amount_to_capture", body
    status, body = call(router, action_event(pid, "capture", {"amount_to_capture": 2000}, key="c1"))
    assert (status, body["status"], body["amount_received"]) == (200, "succeeded", 2000)
    assert call(router, action_event(pid, "capture", {"amount_to_capture": 2000}, key="c1")) == (status, body)
    status, body = call(router, action_event(pid, "capture", None, key="c2"))
    assert status == 409 and body["error"]["code"] == "payment_unexpected_state"
    status, refund = call(router, action_event(pid, "refunds", {"amount": 1500}, key="r1"))
    assert (status, refund["amount"], refund["status"]) == (200, 1500, "succeeded")
    status, body = call(router, action_event(pid, "refunds", {"amount": 501}, key="r2"))
    assert status == 400 and body["error"]["code"] == "amount_too_large"
    status, refund = call(router, action_event(pid, "refunds", None, key="r3"))  # the rest
    assert (status, refund["amount"]) == (200, 500)
    assert call(router, action_event(pid, "cancel", None, key="x1"))[0] == 409
    ledger = requests.get(
        acquirer_server.url + "/v1/_admin/ledger",
        headers={"Authorization": f"Bearer {ACQUIRER_KEY}"},
        timeout=5,
    ).json()
    [auth] = [a for a in ledger["authorizations"] if a["reference"] == pid]
    assert (auth["amount_captured"], auth["amount_refunded"]) == (2000, 2000)


def test_cancel_voids_an_uncaptured_payment(router: ModuleType) -> None:
    _, created = call(router, load_event("create_payment_manual_capture"))
    pid = created["id"]
    assert call(router, action_event(pid, "cancel", None, key="x2", api_key=KEY_B))[0] == 404
    status, body = call(router, action_event(pid, "cancel", {"cancellation_reason": "abandoned"}, key="x3"))
    assert (status, body["status"]) == (200, "canceled")
    assert call(router, action_event(pid, "capture", None, key="x4"))[0] == 409


def test_failed_payment_cannot_be_refunded(router: ModuleType) -> None:
    _, declined = call(router, load_event("create_payment_declined"))
    status, body = call(router, action_event(declined["error"]["payment_id"], "refunds", None, key="r9"))
    assert status == 409 and "failed" in body["error"]["message"]


def test_cold_import_defers_what_no_payment_needs(tmp_path: Path) -> None:
    """A fresh environment's import of the router builds one boto3 client per service a payment uses (at
    init, so SnapStart's snapshot holds them) and leaves the OpenAPI models (only /swagger needs them)
    unimported."""
    probe = (
        "import sys, boto3.session\n"
        "made = []\n"
        "real = boto3.session.Session.client\n"
        "def client(self, name, *a, **k):\n"
        "    made.append(name)\n"
        "    return real(self, name, *a, **k)\n"
        "boto3.session.Session.client = client\n"
        "import app\n"
        "print(sorted(made), 'aws_lambda_powertools.event_handler.openapi.models' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / "router"), str(ROOT / "layers" / "payeasy")]),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['dynamodb',", "'secretsmanager',", "'stepfunctions']", "False"]


def test_payment_method_tokenizes_without_paying_then_pays(router: ModuleType) -> None:
    status, method = call(router, load_event("create_payment_method"))
    assert status == 200 and method["object"] == "payment_method" and method["id"].startswith("tok_")
    assert method["card"] == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
        "country": "US",
        "three_d_secure": "not_required",
    }
    assert all_items(os.environ["PAYMENTS_TABLE"]) == []  # nothing is paid or stored
    event = payment_event(key="pm-1")
    data = json.loads(event["body"])
    del data["card"]
    data["payment_method"] = method["id"]
    event["body"] = json.dumps(data)
    status, paid = call(router, event)
    assert status == 200 and paid["status"] == "succeeded" and paid["card"]["last4"] == "4242"


def test_payment_method_with_a_bad_card_is_400_naming_the_field(router: ModuleType) -> None:
    event = load_event("create_payment_method")
    event["body"] = json.dumps({"card": {**json.loads(event["body"])["card"], "number": "4242424242424241"}})
    status, body = call(router, event)
    assert status == 400 and body["error"]["param"] == "card.number"
    assert "4242424242424241" not in json.dumps(body)
