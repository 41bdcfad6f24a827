"""The reconciliation workflow (STANDARD, reconciliation.asl.json) with the real handlers on the local runtime
and the acquirer simulator: each case the EXPRESS workflow leaves for it, the 7-day manual-capture expiry on
its 5-minute schedule (virtual clock), the summary it publishes, and a second run that changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .failure_support import (
    Faults,
    TopicTap,
    flagged,
    item,
    live_authorizations,
    machine_arn,
    peek_queue,
    queue_depth,
    reconcile,
    start_payment,
)
from .stack import APPROVED, CAPTURE_FAILS, AppStack, running_app

SLOW_MS = 1300


class Env:
    def __init__(self, app: AppStack) -> None:
        self.app = app
        self.faults = Faults(app, timeout_ms=SLOW_MS, slow_ms=200)
        self.alerts = TopicTap(app, "AlertTopic")
        self.summaries = TopicTap(app, "ReconciliationTopic")

    def pay(self, number: str = APPROVED, **kwargs: Any) -> str:
        try:
            payment_id, _ = start_payment(self.app, number, **kwargs)
        finally:
            self.faults.clear()
        return payment_id

    def run(self) -> dict[str, Any]:
        """One reconciliation run; its summary (the execution output, also published on the topic)."""
        execution = reconcile(self.app)
        assert execution["status"] == "SUCCEEDED", execution
        summary = dict(json.loads(execution["output"]))
        assert [m["message"] for m in self.summaries.drain()] == [summary]
        return summary

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
def settled(env: Env) -> Iterator[None]:
    """Each case starts from a settled stack: nothing flagged, nothing queued, no live authorization (except
    manual captures within their 7 days)."""
    env.faults.clear()
    env.run()
    env.alerts.drain()
    yield


def test_void_pending_is_voided_and_the_rollback_message_accounted_for(env: Env) -> None:
    env.faults.always(void="error")  # the void fails 6 times: void_pending + rollback DLQ + alert
    payment_id = env.pay(CAPTURE_FAILS)
    assert item(env.app, payment_id)["reconcile_reason"] == "void_pending"
    [message] = peek_queue(env.app, "RollbackDLQ")
    assert message["payment_id"] == payment_id
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "capture_failed"

    summary = env.run()
    assert summary["found"] == {"void_pending": 1, "rollback_dlq": 1}
    assert summary["actions"] == {"released": 1} and summary["errors"] == []
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "voided"
    record = item(env.app, payment_id)
    assert record["status"] == "failed" and "reconcile_reason" not in record and "reconciled_at" in record
    assert queue_depth(env.app, "RollbackDLQ") == 0
    assert env.app.api.get(payment_id).json()["reconciliation"] is None


def test_unknown_capture_that_was_captured_becomes_succeeded(env: Env) -> None:
    env.faults.always(capture=["timeout", "error", "error", "error"], retrieve="timeout")
    payment_id = env.pay()
    assert (item(env.app, payment_id)["status"], item(env.app, payment_id)["reconcile_reason"]) == (
        "processing",
        "capture_unknown",
    )
    [auth] = env.acquirer(payment_id)
    assert auth["status"] == "captured"  # the first capture went through; nobody could tell

    summary = env.run()
    assert summary["actions"] == {"recorded_capture": 1}
    record = item(env.app, payment_id)
    assert (record["status"], record["amount_captured"], record["authorization_id"]) == (
        "succeeded",
        5000,
        auth["id"],
    )
    assert "reconcile_reason" not in record
    [after] = env.acquirer(payment_id)
    assert [e["type"] for e in after["events"]].count("capture") == 1  # recorded, never captured again


def test_unknown_capture_that_was_not_captured_is_voided_and_fails(env: Env) -> None:
    env.faults.always(capture="error", retrieve="timeout")  # no capture ever reached the acquirer
    payment_id = env.pay()
    assert item(env.app, payment_id)["reconcile_reason"] == "capture_unknown"
    assert env.acquirer(payment_id)[0]["status"] == "authorized"

    summary = env.run()
    assert summary["actions"] == {"voided_and_failed": 1}
    [auth] = env.acquirer(payment_id)
    assert (auth["status"], auth["amount_captured"]) == ("voided", 0)
    record = item(env.app, payment_id)
    assert (record["status"], record["failure_code"]) == ("failed", "capture_failed")


def test_stale_authorization_after_a_system_error_is_voided(env: Env) -> None:
    env.faults.always(capture="reject")  # a 4xx: AcquirerRejected -> HandleError (needs_attention)
    payment_id = env.pay()
    record = item(env.app, payment_id)
    assert (record["status"], record["reconcile_reason"], record["needs_attention"]) == (
        "processing",
        "needs_attention",
        True,
    )
    [alert] = env.alerts.drain()
    assert alert["message"]["payment_id"] == payment_id
    assert env.acquirer(payment_id)[0]["status"] == "authorized"  # held, for nothing

    summary = env.run()
    assert summary["actions"] == {"voided_and_failed": 1}
    assert env.acquirer(payment_id)[0]["status"] == "voided"
    record = item(env.app, payment_id)
    assert (record["status"], record["failure_code"]) == ("failed", "processing_error")
    assert record["needs_attention"] is True  # stays, for the human the alert called
    assert "reconcile_reason" not in record


def test_a_failure_that_resolves_itself_later_is_retried_by_the_next_run(env: Env) -> None:
    env.faults.always(void="error")
    payment_id = env.pay(CAPTURE_FAILS)
    env.faults.always(lookup="error")  # the acquirer is still down during the first run
    execution = reconcile(env.app)
    env.faults.clear()
    assert (execution["status"], execution["error"]) == ("FAILED", "ReconciliationIncomplete")
    assert payment_id in json.loads(execution["cause"])
    assert item(env.app, payment_id)["reconcile_reason"] == "void_pending"  # still flagged
    env.summaries.drain()
    time.sleep(0.1)

    summary = env.run()  # the rollback message is hidden until its visibility timeout: the flag finds it
    assert summary["actions"] == {"released": 1}
    assert env.acquirer(payment_id)[0]["status"] == "voided"
    assert "reconcile_reason" not in item(env.app, payment_id)
    # The message the failed run received is hidden for 120 s; the run that sees it next finds its payment
    # settled and deletes it ("cleared").
    assert queue_depth(env.app, "RollbackDLQ") == 1


def test_second_run_changes_nothing(env: Env) -> None:
    env.faults.always(void="error")
    env.pay(CAPTURE_FAILS)
    env.faults.always(capture=["timeout", "error", "error", "error"], retrieve="timeout")
    env.pay()
    first = env.run()
    assert first["resolved"] == 2
    depth = queue_depth(env.app, "RollbackDLQ")
    table = env.app.client("dynamodb").scan(TableName=env.app.table_name("PaymentsTable"))["Items"]
    ledger = env.app.acquirer.acquirer.ledger().body

    second = env.run()
    assert (second["found"], second["resolved"], second["actions"]) == ({}, 0, {})
    assert env.app.client("dynamodb").scan(TableName=env.app.table_name("PaymentsTable"))["Items"] == table
    assert env.app.acquirer.acquirer.ledger().body == ledger
    assert flagged(env.app) == [] and queue_depth(env.app, "RollbackDLQ") == depth


def test_manual_capture_uncaptured_for_seven_days_is_voided_and_canceled_on_schedule(env: Env) -> None:
    """Last in this module: it moves the virtual clock 8 days, which also fires the 5-minute schedule."""
    kept = env.pay(capture_method="manual")
    captured = env.pay(capture_method="manual")
    assert item(env.app, kept)["reconcile_reason"] == "authorization_expiry"
    assert env.app.api.act(captured, "capture").status_code == 200  # the merchant captures one in time
    assert env.run()["found"] == {}  # within the 7 days: not due

    sfn = env.app.client("stepfunctions")
    arn = machine_arn(env.app, "ReconciliationStateMachine")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]}
    clock = env.app.runtime.clock
    clock.advance(8 * 24 * 3600)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:
        scheduled = [
            e
            for e in sfn.list_executions(stateMachineArn=arn)["executions"]
            if e["executionArn"] not in before
        ]
        if scheduled and scheduled[0]["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, "the schedule did not run reconciliation"
        time.sleep(0.1)
    [run] = scheduled
    assert run["name"].startswith("ReconciliationStateMachineEvery5Minutes") and run["status"] == "SUCCEEDED"
    summary = json.loads(sfn.describe_execution(executionArn=run["executionArn"])["output"])
    assert summary["found"] == {"authorization_expiry": 2}
    assert summary["actions"] == {"expired_and_canceled": 1, "cleared": 1}

    record = item(env.app, kept)
    assert (record["status"], record["cancellation_reason"]) == ("canceled", "authorization_expired")
    assert env.acquirer(kept)[0]["status"] == "voided"
    assert item(env.app, captured)["status"] == "succeeded" and "reconcile_reason" not in item(
        env.app, captured
    )
    assert env.acquirer(captured)[0]["status"] == "captured"
    assert live_authorizations(env.app) == [] and flagged(env.app) == []
