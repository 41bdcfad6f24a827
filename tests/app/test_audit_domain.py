"""The audit trail's rules: which change becomes which event, and what an event may carry."""

from __future__ import annotations

from typing import Any

import pytest
from payeasy.audit import AuditEvent, event_for_change, outcome_metric, sequence_key
from payeasy.audit_store import image_to_python
from payeasy.wiring import trace_root, write_stamp

ARN = "arn:aws:states:ap-northeast-1:123456789012:express:payeasy-payment-express-dev:pay_x:1b2c"


def _item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "payment_id": "pay_x",
        "merchant_id": "merchant_a",
        "status": "processing",
        "amount": 5000,
        "currency": "JPY",
        "card": {"token": "tok_secret123", "brand": "visa", "last4": "4242"},
        "updated_at": "2026-11-23T10:00:00.000Z",
        "updated_by": "api:merchant_a",
        "trace_id": "1-6741a000-0123456789abcdef01234567",
    }
    base.update(changes)
    return base


def _event(
    name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, seq: str = "1234"
) -> AuditEvent:
    event = event_for_change(
        event_name=name, old=old, new=new, sequence_number=seq, approximate_time=1_700_000_000
    )
    assert event is not None
    return event


def test_insert_is_created_with_the_writer_and_no_card_token() -> None:
    event = _event("INSERT", None, _item())
    assert event.type == "payment.created"
    assert (event.from_status, event.to_status, event.actor) == (None, "processing", "api:merchant_a")
    assert event.changes == {
        "status": [None, "processing"],
        "amount": [None, 5000],
        "currency": [None, "JPY"],
    }
    assert "tok_secret123" not in repr(event.to_item())
    assert event.other_changes == []
    assert event.trace_id == "1-6741a000-0123456789abcdef01234567"


def test_a_workflow_claim_is_workflow_started_with_its_execution() -> None:
    old = _item()
    new = _item(execution_id=ARN, updated_by=f"workflow:{ARN}", updated_at="2026-11-23T10:00:00.100Z")
    event = _event("MODIFY", old, new)
    assert event.type == "payment.workflow_started"
    assert event.execution_arn == ARN and event.actor == f"workflow:{ARN}"
    assert event.at == "2026-11-23T10:00:00.100Z"


def test_status_change_names_from_to_and_the_reason() -> None:
    old = _item(execution_id=ARN)
    new = _item(
        execution_id=ARN,
        status="failed",
        decline_code="insufficient_funds",
        failure_code="card_declined",
        updated_by=f"workflow:{ARN}",
    )
    event = _event("MODIFY", old, new)
    assert event.type == "payment.status_changed"
    assert (event.from_status, event.to_status) == ("processing", "failed")
    assert event.reason == "card_declined"  # failure_code before decline_code
    assert event.changes["decline_code"] == [None, "insufficient_funds"]
    assert event.execution_arn == ARN  # from the actor: the workflow run that wrote it


def test_cancellation_reason_wins_and_api_changes_have_no_execution() -> None:
    old = _item(status="requires_capture")
    new = _item(status="canceled", cancellation_reason="requested_by_customer")
    event = _event("MODIFY", old, new)
    assert event.reason == "requested_by_customer" and event.execution_arn is None


def test_refund_without_status_change_is_an_update_with_amounts() -> None:
    event = _event("MODIFY", _item(status="succeeded"), _item(status="succeeded", amount_refunded=500))
    assert event.type == "payment.updated" and event.changes == {"amount_refunded": [None, 500]}


def test_bookkeeping_only_writes_make_no_event() -> None:
    old = _item()
    new = _item(updated_at="2026-11-23T11:00:00.000Z", trace_id="1-x", updated_by="function:y")
    assert (
        event_for_change(event_name="MODIFY", old=old, new=new, sequence_number="9", approximate_time=0)
        is None
    )


def test_other_fields_are_named_not_copied() -> None:
    event = _event("MODIFY", _item(), _item(next_action={"url": "https://acs"}, status="requires_action"))
    assert event.other_changes == ["next_action"] and "next_action" not in event.changes


@pytest.mark.parametrize(
    ("short", "long"),
    [("1100000000017454423009", "0" * 18 + "1100000000017454423009"), ("7", "0" * 39 + "7")],
)
def test_sequence_keys_sort_numerically(short: str, long: str) -> None:
    assert sequence_key(short) == long
    assert sequence_key("99") < sequence_key("100")


def test_view_links_the_execution_history_and_round_trips_items() -> None:
    new = _item(status="succeeded", updated_by=f"workflow:{ARN}")
    event = _event("MODIFY", _item(execution_id=ARN), {**new, "execution_id": ARN}, seq="42")
    view = event.view(region="ap-northeast-1")
    assert view["id"] == "pev_42" and view["changes"] == {"status": {"from": "processing", "to": "succeeded"}}
    assert view["execution_history_url"].endswith(f"#/v2/executions/details/{ARN}")
    assert AuditEvent.from_item(event.to_item()) == event


def test_stream_images_become_plain_python() -> None:
    image = {"amount": {"N": "5000"}, "status": {"S": "processing"}, "meta": {"M": {"k": {"S": "v"}}}}
    assert image_to_python(image) == {"amount": 5000, "status": "processing", "meta": {"k": "v"}}
    assert image_to_python(None) is None


def test_write_stamp_names_the_merchant_for_the_api_and_the_function_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class P:
        merchant_id = "merchant_b"

    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-abc-def;Parent=53995c3f42cd8ad8;Sampled=1")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "payeasy-dev-ReconcileFunction")
    monkeypatch.delenv("PAYEASY_ACTOR", raising=False)
    assert write_stamp(P()) == {
        "updated_by": "function:payeasy-dev-ReconcileFunction",
        "trace_id": "1-abc-def",
    }
    monkeypatch.setenv("PAYEASY_ACTOR", "api")
    assert write_stamp(P())["updated_by"] == "api:merchant_b"
    assert trace_root("Parent=1;Sampled=0") is None


@pytest.mark.parametrize(
    ("old", "new", "metric"),
    [
        ({}, {"status": "succeeded"}, "PaymentsSucceeded"),
        ({}, {"status": "failed", "decline_code": "insufficient_funds"}, "PaymentsDeclined"),
        ({}, {"status": "failed", "failure_code": "capture_failed"}, "PaymentsFailed"),
        ({"status": "requires_action"}, {"status": "canceled"}, "PaymentsCanceled"),
        ({}, {"status": "requires_capture"}, None),
        ({"status": "succeeded"}, {"status": "succeeded", "amount_refunded": 5}, None),
    ],
)
def test_final_outcomes_are_counted_once_per_change(
    old: dict[str, Any], new: dict[str, Any], metric: str | None
) -> None:
    event = _event("MODIFY", _item(**old), _item(**new))
    assert outcome_metric(event) == metric
