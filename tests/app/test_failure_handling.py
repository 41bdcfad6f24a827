"""The seed's error table, row by row (notifications aside: their own tests), and the void fallback: the real
EXPRESS ASL and handlers on the local runtime (worker-process Lambdas, virtual clock) with the acquirer
simulator. Each test asserts the payment record, the acquirer's view, and what was queued or alerted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .failure_support import (
    Faults,
    TopicTap,
    invocations,
    item,
    queue_depth,
    start_payment,
    take_queue,
    tokenize,
)
from .stack import (
    APPROVED,
    AUTHORIZE_SLOW_ALWAYS,
    CAPTURE_FAILS,
    DECLINES,
    AppStack,
    entered_states,
    running_app,
)

# The acquirer client gives up after 1 s (the template's minimum); a "timeout" answers after 1.3 s.
SLOW_MS = 1300
CAPTURE_TIMEOUT_CAPTURED = "4000000000001034"
CAPTURE_TIMEOUT_NOT_CAPTURED = "4000000000001042"
CAPTURE_AND_VOID_FAIL = "4000000000001059"


class Env:
    def __init__(self, app: AppStack) -> None:
        self.app = app
        self.faults = Faults(app, timeout_ms=SLOW_MS, slow_ms=200)
        self.alerts = TopicTap(app, "AlertTopic")

    def pay(self, number: str, **kwargs: Any) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        """(payment id, StartSyncExecution answer, history); faults are cleared afterwards."""
        try:
            payment_id, result = start_payment(self.app, number, **kwargs)
        finally:
            self.faults.clear()
        return payment_id, result, self.app.history(result["executionArn"])

    def acquirer(self, payment_id: str) -> list[dict[str, Any]]:
        return self.app.ledger_for(payment_id)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with running_app(slow_ms=SLOW_MS, acquirer_timeout_s=1) as app:
        env = Env(app)
        try:
            yield env
        finally:
            env.faults.close()


@pytest.fixture(autouse=True)
def quiet(env: Env) -> Iterator[None]:
    """Each test starts with no faults, no pending alert and an empty rollback DLQ (and must leave it so)."""
    env.faults.clear()
    env.alerts.drain()
    yield
    env.faults.clear()


def cause(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] == "FAILED", result
    return dict(json.loads(result["cause"]))


def no_live_authorization(auths: list[dict[str, Any]]) -> bool:
    return all(a["status"] not in ("authorized", "capture_failed") for a in auths)


# --- card authentication failure / authorization declined: reject -> end, no retry -------------------


@pytest.mark.parametrize(
    "number",
    [n for n, code in DECLINES.items() if code in ("incorrect_cvc", "expired_card", "insufficient_funds")]
    + ["4000000000000002"],
)
def test_declines_reject_without_retry_alert_or_queue(env: Env, number: str) -> None:
    payment_id, result, events = env.pay(number)
    outcome = cause(result)
    assert (outcome["status"], outcome["decline_code"]) == ("failed", DECLINES[number])
    record = item(env.app, payment_id)
    assert (record["status"], record["decline_code"]) == ("failed", DECLINES[number])
    assert "reconcile_reason" not in record and not record.get("needs_attention")
    assert invocations(events, "AuthorizeFunction") == 1  # no retry
    assert entered_states(events)[-2:] == ["HandleAuthFailure", "PaymentFailed"]
    assert [a["status"] for a in env.acquirer(payment_id)] == ["declined"]
    assert env.alerts.drain() == [] and queue_depth(env.app, "RollbackDLQ") == 0


# --- authorization timeout: retry 3, then look it up and void what went through -----------------------


def test_authorize_timeout_retries_three_times_then_voids_what_went_through(env: Env) -> None:
    payment_id, result, events = env.pay(AUTHORIZE_SLOW_ALWAYS)  # the acquirer authorizes, answers late
    assert invocations(events, "AuthorizeFunction") == 4  # first try + 3 retries
    assert entered_states(events)[-3:] == ["LookupAuthorization", "RecordRejection", "PaymentFailed"]
    outcome = cause(result)
    assert (outcome["status"], outcome["failure_code"]) == ("failed", "processing_error")
    [auth] = env.acquirer(payment_id)  # idempotency key: one authorization however many tries
    assert auth["status"] == "voided" and outcome["voided"] == [auth["id"]]
    record = item(env.app, payment_id)
    assert (record["status"], record["failure_code"]) == ("failed", "processing_error")
    assert "reconcile_reason" not in record
    assert env.alerts.drain() == [] and queue_depth(env.app, "RollbackDLQ") == 0


def test_authorize_that_never_reached_the_acquirer_fails_with_nothing_to_void(env: Env) -> None:
    env.faults.always(authorize="error")  # 503 every time: nothing authorized
    payment_id, result, events = env.pay(APPROVED)
    assert invocations(events, "AuthorizeFunction") == 4
    assert "LookupAuthorization" in entered_states(events)
    assert cause(result)["failure_message"].endswith("nothing was authorized.")
    assert env.acquirer(payment_id) == []
    assert item(env.app, payment_id)["status"] == "failed"


def test_authorize_timeout_whose_void_fails_takes_the_void_fallback(env: Env) -> None:
    env.faults.always(authorize="timeout", void="error")
    payment_id, result, events = env.pay(APPROVED)
    assert invocations(events, "LookupAuthorizationFunction") == 6  # first try + 5 retries
    assert entered_states(events)[-6:] == [
        "NoAuthorizationKnown",
        "MarkVoidPending",
        "QueueRollback",
        "AlertRollbackFailure",
        "VoidPendingOutcome",
        "PaymentFailed",
    ]
    assert cause(result)["status"] == "failed"
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "authorized"  # still held: reconciliation's job (test_reconciliation.py)
    record = item(env.app, payment_id)
    assert (record["status"], record["reconcile_reason"]) == ("failed", "void_pending")
    [message] = take_queue(env.app, "RollbackDLQ")
    assert (message["payment_id"], message["authorization_id"]) == (payment_id, None)
    [alert] = env.alerts.drain()
    assert (
        alert["message"]["severity"] == "CRITICAL" and alert["message"]["requiresManualIntervention"] is True
    )


# --- capture failure: void -> reject ---------------------------------------------------------------


def test_capture_failure_voids_then_rejects(env: Env) -> None:
    payment_id, result, events = env.pay(CAPTURE_FAILS)
    assert invocations(events, "CaptureFunction") == 1  # a refusal is not retried
    assert entered_states(events)[-3:] == ["HandleCaptureFailure", "RecordRejection", "PaymentFailed"]
    assert cause(result)["failure_code"] == "capture_failed"
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "voided" and [e["type"] for e in auth["events"]] == [
        "authorization",
        "capture",
        "void",
    ]
    assert item(env.app, payment_id)["status"] == "failed"
    assert env.alerts.drain() == [] and queue_depth(env.app, "RollbackDLQ") == 0


# --- capture timeout: status check -> captured / not captured / unknown ---------------------------------


def test_capture_timeout_that_captured_succeeds_without_a_second_capture(env: Env) -> None:
    payment_id, result, _ = env.pay(CAPTURE_TIMEOUT_CAPTURED)
    assert result["status"] == "SUCCEEDED", result
    [auth] = env.acquirer(payment_id)
    assert (auth["status"], [e["type"] for e in auth["events"]].count("capture")) == ("captured", 1)
    assert item(env.app, payment_id)["status"] == "succeeded"


def test_capture_timeout_status_check_finds_it_captured(env: Env) -> None:
    # Every capture answers late (it went through the first time); the task's own lookups time out too, so
    # after the retries the workflow's status check is what finds the capture.
    env.faults.always(capture="timeout", retrieve=["timeout"] * 4)
    payment_id, result, events = env.pay(APPROVED)
    assert result["status"] == "SUCCEEDED", result
    assert invocations(events, "CaptureFunction") == 4
    assert invocations(events, "CaptureStatusFunction") == 1
    assert "DecideCaptureOutcome" in entered_states(events) and "HandleCaptureFailure" not in entered_states(
        events
    )
    [auth] = env.acquirer(payment_id)
    assert (auth["status"], auth["amount_captured"]) == ("captured", 5000)
    record = item(env.app, payment_id)
    assert (record["status"], record["amount_captured"]) == ("succeeded", 5000)


def test_capture_timeout_not_captured_is_voided_and_rejected(env: Env) -> None:
    payment_id, result, events = env.pay(CAPTURE_TIMEOUT_NOT_CAPTURED)
    assert invocations(events, "CaptureFunction") == 4
    assert entered_states(events)[-5:] == [
        "CheckCaptureStatus",
        "DecideCaptureOutcome",
        "HandleCaptureFailure",
        "RecordRejection",
        "PaymentFailed",
    ]
    assert cause(result)["failure_code"] == "capture_failed"
    [auth] = env.acquirer(payment_id)
    assert (auth["status"], auth["amount_captured"]) == ("voided", 0)
    assert item(env.app, payment_id)["status"] == "failed"


def test_capture_timeout_still_unknown_after_three_checks_is_left_to_reconciliation(env: Env) -> None:
    env.faults.always(capture=["timeout", "error", "error", "error"], retrieve="timeout")
    payment_id, result, events = env.pay(APPROVED)
    assert invocations(events, "CaptureStatusFunction") == 3  # three checks
    assert entered_states(events)[-2:] == ["FlagCaptureUnknown", "PaymentFailed"]
    outcome = cause(result)
    assert outcome["status"] == "processing"  # the router answers 502 payment_status_unknown
    record = item(env.app, payment_id)
    assert (record["status"], record["reconcile_reason"]) == ("processing", "capture_unknown")
    assert record["authorization_id"] == env.acquirer(payment_id)[0]["id"]
    view = env.app.api.get(payment_id).json()
    assert view["status"] == "processing" and view["reconciliation"]["reason"] == "capture_unknown"
    assert env.alerts.drain() == [] and queue_depth(env.app, "RollbackDLQ") == 0


# --- the void fallback ----------------------------------------------------------------------------------


def test_void_that_fails_five_retries_marks_void_pending_queues_and_alerts(env: Env) -> None:
    payment_id, result, events = env.pay(CAPTURE_AND_VOID_FAIL)
    assert invocations(events, "VoidFunction") == 6  # first try + 5 retries, exponential backoff
    failed = [
        e["lambdaFunctionFailedEventDetails"]["error"] for e in events if e["type"] == "LambdaFunctionFailed"
    ]
    assert failed == ["CaptureFailed"] + ["AcquirerUnavailable"] * 6
    stamps = [e["timestamp"] for e in events if e["type"] == "LambdaFunctionScheduled"][-6:]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]  # backoff on the virtual clock
    outcome = cause(result)
    assert (outcome["status"], outcome["failure_code"]) == ("failed", "processing_error")
    record = item(env.app, payment_id)
    assert (record["status"], record["reconcile_reason"]) == ("failed", "void_pending")
    view = env.app.api.get(payment_id).json()
    assert view["status"] == "failed" and view["reconciliation"]["reason"] == "void_pending"
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "capture_failed"  # the hold is still there
    [message] = take_queue(env.app, "RollbackDLQ")
    assert (message["payment_id"], message["authorization_id"], message["error"]) == (
        payment_id,
        auth["id"],
        "AcquirerUnavailable",
    )
    [alert] = env.alerts.drain()
    assert alert["subject"] == "CRITICAL: Rollback failed"
    assert (
        alert["message"] | {"payment_id": payment_id, "requiresManualIntervention": True} == alert["message"]
    )
    assert alert["message"]["authorization_id"] == auth["id"]


# --- system error: alert -> manual handling (needs_attention) -----------------------------------------


def test_system_error_alerts_and_flags_needs_attention(env: Env) -> None:
    token = {**tokenize(env.app, APPROVED), "id": "tok_does_not_exist"}  # the acquirer answers 400
    payment_id, result, events = env.pay(APPROVED, token=token)
    assert invocations(events, "AuthorizeFunction") == 1  # AcquirerRejected is our bug: never retried
    assert entered_states(events)[-3:] == ["HandleError", "AlertSystemError", "PaymentFailed"]
    assert cause(result)["status"] == "processing"
    record = item(env.app, payment_id)
    assert (record["status"], record["needs_attention"], record["reconcile_reason"]) == (
        "processing",
        True,
        "needs_attention",
    )
    assert env.app.api.get(payment_id).json()["needs_attention"] is True
    [alert] = env.alerts.drain()
    assert (alert["message"]["severity"], alert["message"]["payment_id"]) == ("ERROR", payment_id)
    assert alert["message"]["requiresManualIntervention"] is True
    assert alert["message"]["error"] == "AcquirerRejected"
    assert queue_depth(env.app, "RollbackDLQ") == 0


def test_a_second_execution_for_a_claimed_payment_changes_nothing_and_alerts_nobody(env: Env) -> None:
    payment_id, _, _ = env.pay(APPROVED)
    before = item(env.app, payment_id)
    again = env.app.client("stepfunctions").start_sync_execution(
        stateMachineArn=env.app.express_arn,
        name=f"{payment_id}-again",
        input=json.dumps(
            {
                "payment_id": payment_id,
                "merchant_id": "merchant_a",
                "amount": 5000,
                "currency": "JPY",
                "capture_method": "automatic",
                "card": before["card"],
            }
        ),
    )
    assert entered_states(env.app.history(again["executionArn"]))[-2:] == ["RejectUnclaimed", "PaymentFailed"]
    assert item(env.app, payment_id) == before
    assert env.alerts.drain() == []


def test_retry_counts_are_the_error_tables() -> None:
    from .stack import ROOT

    states = json.loads((ROOT / "statemachines" / "payment_express.asl.json").read_text())["States"]
    for name in ("HandleCaptureFailure", "LookupAuthorization"):  # every void: 5 retries, exponential
        [retrier] = states[name]["Retry"]
        assert (retrier["MaxAttempts"], retrier["BackoffRate"], retrier["IntervalSeconds"]) == (5, 2, 1)
    assert states["CheckCaptureStatus"]["Retry"][0]["MaxAttempts"] == 2  # 3 checks
    for name in ("AuthorizePayment", "CapturePayment"):
        assert states[name]["Retry"][0]["MaxAttempts"] == 3
    catches = {c["Next"] for c in states["AuthorizePayment"]["Catch"]}
    assert catches == {"LookupAuthorization", "HandleError"}
