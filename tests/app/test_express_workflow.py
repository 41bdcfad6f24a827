"""The real EXPRESS ASL with the real task handlers, on the local runtime's Step Functions engine (moto +
local.moto_adapter) with a virtual clock, and the acquirer simulator over HTTP. Lambdas run in-process here;
the full stack (worker processes, API Gateway) is the local runtime's own end-to-end suite."""

from __future__ import annotations

import json
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from payeasy.payment import Payment, new_payment_id, utc_now_iso
from payeasy.repository import DynamoPaymentRepository
from payeasy.status import PaymentStatus

from local import moto_adapter
from local.aws_endpoint import AwsEndpoint
from local.clock import VirtualClock
from local.ports import InvokeResult
from simulators.acquirer.server import AcquirerServer

from .conftest import ACQUIRER_KEY
from .handler_support import FakeContext, aws_env, load_function, reset_caches
from .pan_scan import find_card_data

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
FUNCTIONS = {
    "authorize": "AuthorizeFunctionArn",
    "capture": "CaptureFunctionArn",
    "void": "VoidFunctionArn",
    "lookup_authorization": "LookupAuthorizationFunctionArn",
    "capture_status": "CaptureStatusFunctionArn",
}


class InProcessInvoker:
    """LambdaInvoker running our handlers in this process; an exception becomes an Unhandled function error
    whose errorType is the exception's class name, as the Lambda runtime reports it."""

    def __init__(self) -> None:
        self.handlers = {name: load_function(name).handler for name in FUNCTIONS}
        self.calls: list[str] = []

    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        name = function.rsplit(":", 1)[-1]
        self.calls.append(name)
        try:
            result = self.handlers[name](json.loads(payload), FakeContext(function_name=name))
        except Exception as exc:
            body = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return InvokeResult(json.dumps(body).encode(), function_error="Unhandled")
        return InvokeResult(json.dumps(result).encode())


class Stack:
    def __init__(
        self, sfn: Any, machine_arn: str, invoker: InProcessInvoker, server: AcquirerServer, table: str
    ) -> None:
        self.sfn, self.machine_arn, self.invoker, self.server = sfn, machine_arn, invoker, server
        self.repository = DynamoPaymentRepository(table)

    def pay(
        self, number: str, *, amount: int = 5000, capture_method: str = "automatic"
    ) -> tuple[dict[str, Any], Payment]:
        token = self.server.acquirer.tokenize(
            {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123", "holder_name": "T"}
        ).body
        payment = Payment(
            payment_id=new_payment_id(),
            merchant_id="merchant_a",
            status=PaymentStatus.PROCESSING,
            amount=amount,
            currency="JPY",
            capture_method=capture_method,
            card={"token": token["id"], "brand": token["brand"], "last4": token["last4"]},
            workflow="express",
            created=int(time.time()),
            updated_at=utc_now_iso(),
        )
        self.repository.create(payment)
        execution_input = {
            "payment_id": payment.payment_id,
            "merchant_id": "merchant_a",
            "amount": amount,
            "currency": "JPY",
            "capture_method": capture_method,
            "card": payment.card,
        }
        result = self.sfn.start_sync_execution(
            stateMachineArn=self.machine_arn, name=payment.payment_id, input=json.dumps(execution_input)
        )
        stored = self.repository.get(payment.payment_id)
        assert stored is not None
        return dict(result), stored


@pytest.fixture
def stack(acquirer_server: AcquirerServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    endpoint = AwsEndpoint(port=0).start()
    clock = VirtualClock(auto=True)
    table = f"payments-{uuid.uuid4().hex[:8]}"  # moto's backends are per process, not per endpoint
    try:
        aws_env(
            monkeypatch,
            AWS_DEFAULT_REGION=REGION,
            ACQUIRER_BASE_URL=acquirer_server.url,
            ACQUIRER_TIMEOUT_SECONDS="0.2",
            PAYMENTS_TABLE=table,
        )
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        monkeypatch.setenv("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
        boto3.client("dynamodb").create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "payment_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "payment_id", "KeyType": "HASH"}],
        )
        secret = boto3.client("secretsmanager").create_secret(
            Name=f"acquirer-{table}", SecretString=json.dumps({"api_key": ACQUIRER_KEY})
        )
        monkeypatch.setenv("ACQUIRER_SECRET_ARN", secret["ARN"])
        reset_caches()
        invoker = InProcessInvoker()
        moto_adapter.install(clock=clock, lambda_invoker=invoker, endpoint_url=endpoint.url, region=REGION)
        definition = (ROOT / "statemachines" / "payment_express.asl.json").read_text()
        definition = definition.replace("${PaymentsTable}", table)
        for name, placeholder in FUNCTIONS.items():
            arn = f"arn:aws:lambda:{REGION}:123456789012:function:{name}"
            definition = definition.replace("${" + placeholder + "}", arn)
        # SendNotifications' channels are not driven here (test_notification_workflow is): they fail, are
        # not queued either, and the payment goes on.
        definition = definition.replace(
            "${SendWebhookFunctionArn}", f"arn:aws:lambda:{REGION}:123456789012:function:none"
        )
        for placeholder in ("NotificationQueueUrl", "CustomerNoticesTopicArn"):
            dead_end = f"arn:aws:sns:{REGION}:123456789012:none"
            definition = definition.replace("${" + placeholder + "}", dead_end)
        definition = definition.replace("${PaymentEventsBusName}", "none")
        # The void fallback's queue and alert topic (test_failure_handling drives them on the whole stack).
        definition = definition.replace("${RollbackQueueUrl}", f"https://sqs.{REGION}.amazonaws.com/1/none")
        definition = definition.replace("${AlertTopicArn}", f"arn:aws:sns:{REGION}:123456789012:none")
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name=f"express-{table}",
            definition=definition,
            type="EXPRESS",
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )
        yield Stack(sfn, machine["stateMachineArn"], invoker, acquirer_server, table)
    finally:
        reset_caches()
        clock.close()
        endpoint.stop()


def test_approved_card_succeeds(stack: Stack) -> None:
    result, stored = stack.pay("4242424242424242")
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["status"] == "succeeded" and output["amount_captured"] == 5000
    assert output["payment_id"] == stored.payment_id and find_card_data(output) == []
    assert stored.status is PaymentStatus.SUCCEEDED and stored.authorization_id == output["authorization_id"]
    assert stored.amount_captured == 5000


def test_manual_capture_skips_capture(stack: Stack) -> None:
    result, stored = stack.pay("4242424242424242", capture_method="manual")
    assert json.loads(result["output"])["status"] == "requires_capture"
    assert stored.status is PaymentStatus.REQUIRES_CAPTURE and stored.amount_authorized == 5000
    assert "capture" not in stack.invoker.calls


def test_decline_fails_with_the_outcome_as_cause(stack: Stack) -> None:
    result, stored = stack.pay("4000000000009995")
    assert (result["status"], result["error"]) == ("FAILED", "PaymentFailed")
    cause = json.loads(result["cause"])
    assert (cause["status"], cause["decline_code"]) == ("failed", "insufficient_funds")
    assert stored.status is PaymentStatus.FAILED and stored.decline_code == "insufficient_funds"


def test_authorize_timeout_is_retried_and_succeeds(stack: Stack) -> None:
    result, stored = stack.pay("4000000000001018")
    assert result["status"] == "SUCCEEDED", result
    assert stack.invoker.calls.count("authorize") == 2
    ledger = stack.server.acquirer.ledger().body["authorizations"]
    assert len([a for a in ledger if a["reference"] == stored.payment_id]) == 1


def test_authorize_timeouts_exhaust_retries_then_handle_error(stack: Stack) -> None:
    result, stored = stack.pay("4000000000001075")
    assert result["status"] == "FAILED"
    assert stack.invoker.calls.count("authorize") == 4  # first attempt + MaxAttempts 3
    assert json.loads(result["cause"])["failure_code"] == "processing_error"
    assert stored.status is PaymentStatus.FAILED and stored.failure_code == "processing_error"


def test_capture_failure_voids_then_fails(stack: Stack) -> None:
    result, stored = stack.pay("4000000000001026")
    assert json.loads(result["cause"])["failure_code"] == "capture_failed"
    assert stored.status is PaymentStatus.FAILED and stored.failure_code == "capture_failed"
    [auth] = [
        a
        for a in stack.server.acquirer.ledger().body["authorizations"]
        if a["reference"] == stored.payment_id
    ]
    assert auth["status"] == "voided"


def test_a_second_execution_for_the_same_payment_changes_nothing(stack: Stack) -> None:
    _result, stored = stack.pay("4242424242424242")
    again = stack.sfn.start_sync_execution(
        stateMachineArn=stack.machine_arn,
        name=stored.payment_id + "-2",
        input=json.dumps(
            {
                "payment_id": stored.payment_id,
                "merchant_id": "merchant_a",
                "amount": 5000,
                "currency": "JPY",
                "capture_method": "automatic",
                "card": stored.card,
            }
        ),
    )
    assert again["status"] == "FAILED"
    after = stack.repository.get(stored.payment_id)
    assert after is not None and after.status is PaymentStatus.SUCCEEDED
