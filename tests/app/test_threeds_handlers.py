"""The 3-D Secure handlers (request_3ds, await_3ds, threeds_callback) with the events/ samples: DynamoDB and
Secrets Manager under moto, the simulator over HTTP, Step Functions' callback API as a recording fake (moto's
accepts any token); the adapters' error mapping with botocore's Stubber."""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto import mock_aws
from payeasy import threeds, wiring
from payeasy.errors import TaskTokenExpired
from payeasy.payment import Payment, utc_now_iso
from payeasy.repository import DynamoPaymentRepository
from payeasy.status import PaymentStatus
from payeasy.threeds_adapters import DynamoChallengeStore, StepFunctionsTaskCallbacks, TaskCallbackFailed

from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY
from .handler_support import FakeContext, aws_env, load_event, load_function, reset_caches

SECRET = "whsec_test_3ds_handlers_0123456789"
PAYMENT_ID = "pay_0123456789abcdefghijkl"
TOKEN = load_event("task_wait_3ds")["task_token"]


@dataclass
class RecordingCallbacks:
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    raises: Exception | None = None

    def _record(self, kind: str, token: str, payload: Any) -> None:
        if self.raises is not None:
            raise self.raises
        self.calls.append((kind, token, payload))

    def heartbeat(self, task_token: str) -> None:
        self._record("heartbeat", task_token, None)

    def succeed(self, task_token: str, output: dict[str, Any]) -> None:
        self._record("succeed", task_token, output)

    def fail(self, task_token: str, *, error: str, cause: str) -> None:
        self._record("fail", task_token, (error, cause))


@dataclass
class Env:
    functions: dict[str, ModuleType]
    callbacks: RecordingCallbacks
    server: AcquirerServer


@pytest.fixture
def env(acquirer_server: AcquirerServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    aws_env(
        monkeypatch,
        ACQUIRER_BASE_URL=acquirer_server.url,
        ACQUIRER_TIMEOUT_SECONDS="2",
        PAYMENTS_TABLE="payments",
        CHALLENGES_TABLE="challenges",
    )
    with mock_aws():
        ddb = boto3.client("dynamodb")
        for name in ("payments", "challenges"):
            ddb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "payment_id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "payment_id", "KeyType": "HASH"}],
            )
        secrets = boto3.client("secretsmanager")
        acquirer_arn = secrets.create_secret(Name="acq", SecretString=json.dumps({"api_key": ACQUIRER_KEY}))[
            "ARN"
        ]
        threeds_arn = secrets.create_secret(Name="3ds", SecretString=json.dumps({"secret": SECRET}))["ARN"]
        monkeypatch.setenv("ACQUIRER_SECRET_ARN", acquirer_arn)
        monkeypatch.setenv("THREEDS_SECRET_ARN", threeds_arn)
        reset_caches()
        callbacks = RecordingCallbacks()
        monkeypatch.setattr(wiring, "task_callbacks", functools.cache(lambda: callbacks))
        functions = {name: load_function(name) for name in ("request_3ds", "await_3ds", "threeds_callback")}
        yield Env(functions, callbacks, acquirer_server)
        reset_caches()


def _store_payment(status: PaymentStatus = PaymentStatus.PROCESSING) -> None:
    DynamoPaymentRepository("payments").create(
        Payment(
            payment_id=PAYMENT_ID,
            merchant_id="merchant_a",
            status=status,
            amount=5000,
            currency="JPY",
            capture_method="automatic",
            card={"token": "tok_x", "brand": "visa", "last4": "3220", "three_d_secure": "challenge"},
            workflow="standard",
            created=int(time.time()),
            updated_at=utc_now_iso(),
        )
    )


def _await(env: Env) -> dict[str, Any]:
    _store_payment()
    result: dict[str, Any] = env.functions["await_3ds"].handler(load_event("task_wait_3ds"), FakeContext())
    return result


def _callback_event(
    *, signature: str | None = "sign", now: float | None = None, **body: Any
) -> dict[str, Any]:
    """The sample callback event re-signed now (its own signature is from when it was written: stale)."""
    event = copy.deepcopy(load_event("threeds_callback"))
    data = {**json.loads(event["body"]), **body}
    data = {k: v for k, v in data.items() if v is not None}
    raw = json.dumps(data, separators=(",", ":"))
    event["body"] = raw
    headers = {k: v for k, v in event["headers"].items() if k != threeds.SIGNATURE_HEADER}
    if signature == "sign":
        signature = threeds.sign(raw.encode(), SECRET, int(now if now is not None else time.time()))
    if signature is not None:
        headers[threeds.SIGNATURE_HEADER.lower()] = signature  # header names arrive in any case
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return event


def _call(env: Env, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = env.functions["threeds_callback"].handler(event, FakeContext())
    return answer["statusCode"], json.loads(answer["body"])


def _challenge_state() -> str:
    challenge = DynamoChallengeStore("challenges", boto3.client("dynamodb")).get(PAYMENT_ID)
    assert challenge is not None
    return challenge.state


# --- request_3ds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "status", "has_url"),
    [("4000000000003220", "challenge_required", True), ("4000000000001067", "authenticated", False)],
)
def test_request_3ds_creates_one_authentication_per_payment(
    env: Env, number: str, status: str, has_url: bool
) -> None:
    token = requests.post(
        env.server.url + "/v1/tokens",
        json={"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "T"},
        headers={"Authorization": f"Bearer {ACQUIRER_KEY}"},
        timeout=5,
    ).json()
    event = load_event("task_request_3ds")
    event["card"]["token"] = token["id"]
    first = env.functions["request_3ds"].handler(event, FakeContext())
    again = env.functions["request_3ds"].handler(event, FakeContext())  # a Retry of the task
    assert first["status"] == status and first["authentication_id"].startswith("3ds_")
    assert bool(first["challenge_url"]) is has_url
    assert again["authentication_id"] == first["authentication_id"]  # Idempotency-Key <payment_id>:3ds
    if status == "authenticated":
        assert (first["trans_status"], first["eci"]) == ("Y", "05")


# --- await_3ds ----------------------------------------------------------------------------------------------


def test_await_3ds_stores_the_token_and_moves_the_payment_to_requires_action(env: Env) -> None:
    # The function's own log lines: its Powertools handler's stream, swapped for the call.
    handler = env.functions["await_3ds"].logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        result = _await(env)
    finally:
        handler.setStream(previous)
    assert result == {"payment_id": PAYMENT_ID, "status": "requires_action"}
    row = boto3.client("dynamodb").get_item(TableName="challenges", Key={"payment_id": {"S": PAYMENT_ID}})[
        "Item"
    ]
    assert (row["task_token"]["S"], row["state"]["S"]) == (TOKEN, "pending")
    assert int(row["expires_at"]["N"]) > int(row["wait_until"]["N"]) > time.time()  # TTL after the wait
    payment = DynamoPaymentRepository("payments").get(PAYMENT_ID)
    assert payment is not None and payment.status is PaymentStatus.REQUIRES_ACTION
    assert payment.view()["next_action"]["url"] == load_event("task_wait_3ds")["challenge_url"]
    payments = boto3.client("dynamodb").scan(TableName="payments")["Items"]
    assert "Wait3DSCallback armed" in stream.getvalue()  # it did log
    assert TOKEN not in json.dumps(payments) + json.dumps(result) + stream.getvalue()


# --- threeds_callback ---------------------------------------------------------------------------------------


def test_signed_completion_resumes_the_task_and_a_duplicate_is_409(env: Env) -> None:
    _await(env)
    status, body = _call(env, _callback_event())
    assert (status, body) == (200, {"received": True, "type": "challenge.completed"})
    [(kind, token, output)] = env.callbacks.calls
    assert (kind, token, output["status"], output["eci"]) == ("succeed", TOKEN, "authenticated", "05")
    assert _challenge_state() == "completed"
    status, body = _call(env, _callback_event())
    assert (status, body["error"]["code"]) == (409, "challenge_completed")
    assert len(env.callbacks.calls) == 1 and TOKEN not in json.dumps(body)


def test_failed_challenge_sends_task_failure(env: Env) -> None:
    _await(env)
    status, _ = _call(env, _callback_event(trans_status="N", eci=None, authentication_value_ref=None))
    assert status == 200
    [(kind, _, (error, _))] = env.callbacks.calls
    assert (kind, error) == ("fail", "ThreeDS.AuthenticationFailed")


def test_heartbeat_reaches_send_task_heartbeat(env: Env) -> None:
    _await(env)
    status, _ = _call(env, _callback_event(type="challenge.heartbeat", trans_status=None, eci=None))
    assert status == 200 and [c[0] for c in env.callbacks.calls] == ["heartbeat"]
    assert _challenge_state() == "pending"


@pytest.mark.parametrize(
    ("signature", "now_offset"),
    [
        (None, 0),  # missing
        ("t=1,v1=" + "0" * 64, 0),  # forged
        ("sign", -301),  # stale
        ("garbage", 0),
    ],
)
def test_bad_signature_is_401_and_changes_nothing(env: Env, signature: str | None, now_offset: int) -> None:
    _await(env)
    status, body = _call(env, _callback_event(signature=signature, now=time.time() + now_offset))
    assert (status, body["error"]["type"], body["error"]["code"]) == (
        401,
        "authentication_error",
        "invalid_signature",
    )
    assert env.callbacks.calls == [] and _challenge_state() == "pending"


def test_signature_with_another_secret_is_401(env: Env) -> None:
    _await(env)
    event = _callback_event()
    raw = event["body"].encode()
    forged = threeds.sign(raw, "whsec_attacker_guess_0000000000", int(time.time()))
    event["headers"][threeds.SIGNATURE_HEADER.lower()] = forged
    assert _call(env, event)[0] == 401 and env.callbacks.calls == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"type": "challenge.unknown"}, "type"),
        ({"trans_status": None}, "trans_status"),
        ({"authentication_id": None}, "authentication_id"),
        ({"payment_id": "pay_somebody_else_entirely"}, "payment_id"),  # must match the URL
    ],
)
def test_bad_body_is_400_naming_the_field(env: Env, body: dict[str, Any], param: str) -> None:
    _await(env)
    status, answer = _call(env, _callback_event(**body))
    assert (status, answer["error"]["param"]) == (400, param)
    assert env.callbacks.calls == []


def test_body_that_is_not_json_is_400(env: Env) -> None:
    event = _callback_event()
    event["body"] = "{not json"
    event["headers"][threeds.SIGNATURE_HEADER.lower()] = threeds.sign(b"{not json", SECRET, int(time.time()))
    status, answer = _call(env, event)
    assert (status, answer["error"]["param"]) == (400, "body")


def test_unknown_payment_is_404(env: Env) -> None:
    status, body = _call(env, _callback_event())  # no challenge stored
    assert (status, body["error"]["code"]) == (404, "resource_missing")


def test_late_callback_after_the_workflow_stopped_waiting_is_409(env: Env) -> None:
    _await(env)
    env.callbacks.raises = TaskTokenExpired("timed out")
    status, body = _call(env, _callback_event())
    assert (status, body["error"]["code"]) == (409, "challenge_expired")
    assert _challenge_state() == "expired"


# --- adapters -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_expired_token_errors_map_to_task_token_expired(code: str) -> None:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("send_task_success", service_error_code=code, service_message=f"bad {TOKEN}")
        with pytest.raises(TaskTokenExpired) as caught:
            StepFunctionsTaskCallbacks(client).succeed(TOKEN, {"status": "authenticated"})
    assert TOKEN not in str(caught.value)


def test_other_step_functions_errors_are_retryable_and_never_quote_the_token() -> None:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error(
            "send_task_heartbeat", service_error_code="ThrottlingException", service_message=TOKEN
        )
        with pytest.raises(TaskCallbackFailed) as caught:
            StepFunctionsTaskCallbacks(client).heartbeat(TOKEN)
    assert "ThrottlingException" in str(caught.value) and TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
