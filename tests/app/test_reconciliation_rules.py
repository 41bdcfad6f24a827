"""payeasy.reconciliation on its own: what a record becomes given the acquirer's truth, and which flags are
due (in-memory store and queue; the workflow tests drive the real ones)."""

from __future__ import annotations

from typing import Any

import pytest
from payeasy.ports import Authorization
from payeasy.reconciliation import (
    Flagged,
    QueuedRollback,
    Record,
    Resolution,
    decide,
    find_candidates,
    resolve,
)
from payeasy.status import PaymentStatus

P = PaymentStatus
NOW = "2026-11-23T12:00:00.000Z"


def auth(status: str, captured: int = 0, refunded: int = 0, id_: str = "auth_1") -> Authorization:
    return Authorization(
        id_, status, 5000, "JPY", "pay_1", amount_captured=captured, amount_refunded=refunded
    )


def record(status: PaymentStatus, reason: str | None = None, since: str | None = None) -> Record:
    return Record("pay_1", status, 5000, "automatic", reconcile_reason=reason, reconcile_since=since)


@pytest.mark.parametrize(
    ("status", "reason", "since", "auths", "action", "after"),
    [
        (P.PROCESSING, "capture_unknown", NOW, [auth("captured", 5000)], "recorded_capture", "succeeded"),
        (P.PROCESSING, "capture_unknown", NOW, [auth("authorized")], "voided_and_failed", "failed"),
        (PaymentStatus.PROCESSING, "needs_attention", NOW, [], "voided_and_failed", "failed"),
        (PaymentStatus.FAILED, "void_pending", NOW, [auth("capture_failed")], "released", None),
        (PaymentStatus.FAILED, "void_pending", NOW, [auth("voided")], "cleared", None),
        (PaymentStatus.FAILED, "void_pending", NOW, [auth("captured", 5000)], "refunded", None),
        (PaymentStatus.REQUIRES_CAPTURE, "authorization_expiry", "2026-11-16T11:59:00Z", [auth("authorized")],
         "expired_and_canceled", "canceled"),
        (PaymentStatus.REQUIRES_CAPTURE, "authorization_expiry", "2026-11-20T12:00:00Z", [auth("authorized")],
         "unchanged", None),
        (PaymentStatus.SUCCEEDED, "authorization_expiry", "2026-11-01T00:00:00Z", [auth("captured", 5000)],
         "cleared", None),
        (PaymentStatus.REQUIRES_ACTION, None, None, [], "unchanged", None),
    ],
)  # fmt: skip
def test_decide(
    status: PaymentStatus,
    reason: str | None,
    since: str | None,
    auths: list[Authorization],
    action: str,
    after: str | None,
) -> None:
    resolution = decide(record(status, reason, since), auths, NOW)
    assert resolution.action == action
    assert (resolution.status.value if resolution.status else None) == after


def test_a_failed_capture_code_tells_an_unknown_capture_from_a_system_error() -> None:
    unknown = decide(record(PaymentStatus.PROCESSING, "capture_unknown", NOW), [], NOW)
    system = decide(record(PaymentStatus.PROCESSING, "needs_attention", NOW), [], NOW)
    assert (unknown.changes["failure_code"], system.changes["failure_code"]) == (
        "capture_failed",
        "processing_error",
    )


class Store:
    def __init__(self, flags: list[Flagged], records: dict[str, Record]) -> None:
        self.flags, self.records = flags, records
        self.applied: list[tuple[str, Resolution]] = []

    def due(self, reason: str, cutoff: str | None, limit: int) -> list[Flagged]:
        return [f for f in self.flags if f.reason == reason and (cutoff is None or f.since < cutoff)][:limit]

    def get(self, payment_id: str) -> Record | None:
        return self.records.get(payment_id)

    def apply(self, record: Record, resolution: Resolution, *, now: str) -> bool:
        self.applied.append((record.payment_id, resolution))
        return True


class Queue:
    def __init__(self, messages: list[QueuedRollback]) -> None:
        self.messages, self.deleted = messages, []  # type: list[QueuedRollback], list[str]

    def receive(self, limit: int) -> list[QueuedRollback]:
        return self.messages[:limit]

    def delete(self, receipt_handle: str) -> None:
        self.deleted.append(receipt_handle)


def test_find_merges_flags_and_messages_per_payment_and_waits_seven_days_for_manual_captures() -> None:
    store = Store(
        [
            Flagged("pay_a", "void_pending", "2026-11-23T11:59:00Z"),
            Flagged("pay_b", "authorization_expiry", "2026-11-16T11:00:00Z"),  # 7 days and an hour
            Flagged("pay_c", "authorization_expiry", "2026-11-16T13:00:00Z"),  # not yet 7 days
            Flagged("pay_d", "authorization_expiry", "2026-11-20T00:00:00Z"),
        ],
        {},
    )
    found = find_candidates(
        NOW, store, Queue([QueuedRollback("pay_a", "rh-1"), QueuedRollback("pay_e", "rh-2")])
    )
    by_id = {c["payment_id"]: c for c in found["candidates"]}
    assert set(by_id) == {"pay_a", "pay_b", "pay_e"}
    assert by_id["pay_a"] == {
        "payment_id": "pay_a",
        "reasons": ["void_pending", "rollback_dlq"],
        "receipt_handles": ["rh-1"],
    }
    assert found["found"] == {"void_pending": 1, "authorization_expiry": 1, "rollback_dlq": 2}


class Acquirer:
    def __init__(self, auths: list[Authorization]) -> None:
        self.auths = auths
        self.calls: list[tuple[str, Any]] = []

    def find_by_reference(self, reference: str) -> list[Authorization]:
        return list(self.auths)

    def void(self, authorization_id: str, *, idempotency_key: str) -> Authorization:
        self.calls.append(("void", idempotency_key))
        return auth("voided", id_=authorization_id)

    def refund(self, authorization_id: str, *, amount: int, idempotency_key: str) -> Any:
        self.calls.append(("refund", amount))


def test_resolve_voids_stores_and_deletes_the_message_and_a_settled_payment_is_not_written() -> None:
    store = Store([], {"pay_1": record(PaymentStatus.FAILED, "void_pending", NOW)})
    queue = Queue([])
    acquirer = Acquirer([auth("capture_failed")])
    result = resolve({"payment_id": "pay_1", "receipt_handles": ["rh"]}, NOW, store, queue, acquirer)  # type: ignore[arg-type]
    assert (result["action"], acquirer.calls, queue.deleted) == (
        "released",
        [("void", "pay_1:void:auth_1")],
        ["rh"],
    )
    assert [p for p, _ in store.applied] == ["pay_1"]

    settled = Store([], {"pay_1": record(PaymentStatus.FAILED)})
    again = resolve({"payment_id": "pay_1"}, NOW, settled, Queue([]), Acquirer([auth("voided")]))  # type: ignore[arg-type]
    assert again["action"] == "cleared" and settled.applied == []


def test_resolve_refunds_money_a_failed_payment_took() -> None:
    store = Store([], {"pay_1": record(PaymentStatus.FAILED, "void_pending", NOW)})
    acquirer = Acquirer([auth("captured", 5000, 1000)])
    result = resolve({"payment_id": "pay_1"}, NOW, store, Queue([]), acquirer)  # type: ignore[arg-type]
    assert result["action"] == "refunded" and acquirer.calls == [("refund", 4000)]
    assert store.applied[0][1].changes == {"amount_captured": 5000, "amount_refunded": 5000}
