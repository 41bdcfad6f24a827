"""The reconciliation job's logic (STANDARD workflow on a 5-minute schedule), Lambda-free.

``find_candidates`` reads the sparse ``ReconcileIndex`` (one Query per reason, never a Scan) and drains the
rollback DLQ; ``resolve`` asks the acquirer for the truth about one payment and makes the record agree with it
(void what is still held, record a capture that happened, refund money taken for a failed payment);
``summarize`` counts what a run did. A resolved payment leaves the index, so a second run finds nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from payeasy.compensation import LIVE, void_live
from payeasy.ports import AcquirerClient, Authorization
from payeasy.reconcile_flags import AUTHORIZATION_VALIDITY, GRACE, Reason
from payeasy.status import PaymentStatus


@dataclass(frozen=True)
class Flagged:
    payment_id: str
    reason: str
    since: str


@dataclass(frozen=True)
class QueuedRollback:
    payment_id: str
    receipt_handle: str


@dataclass
class Record:
    """What reconciliation needs of a stored payment (the item's own attributes)."""

    payment_id: str
    status: PaymentStatus
    amount: int
    capture_method: str
    authorization_id: str | None = None
    amount_captured: int = 0
    amount_refunded: int = 0
    reconcile_reason: str | None = None
    reconcile_since: str | None = None


@dataclass
class Resolution:
    """The changes to store; ``status`` None keeps the status."""

    action: str
    status: PaymentStatus | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    clear_flag: bool = True


class ReconcileStore(Protocol):
    def due(self, reason: str, cutoff: str | None, limit: int) -> list[Flagged]:
        """Payments flagged ``reason`` whose ``reconcile_since`` sorts below ``cutoff`` (all when None)."""
        ...

    def get(self, payment_id: str) -> Record | None: ...

    def apply(self, record: Record, resolution: Resolution, *, now: str) -> bool:
        """Stores ``resolution`` only if status and flag are still those of ``record``; False otherwise."""
        ...


class RollbackQueue(Protocol):
    def receive(self, limit: int) -> list[QueuedRollback]: ...

    def delete(self, receipt_handle: str) -> None: ...


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def day_after(when: datetime) -> str:
    """The index's range bound for "flagged at or before ``when``": the next day's date. Stamps written as
    ``2026-11-23T..Z`` (AWS) or ``..+00:00`` (moto) both sort below it; the exact time is checked after."""
    return (when + timedelta(days=1)).date().isoformat()


def find_candidates(
    now: str, store: ReconcileStore, queue: RollbackQueue, *, limit: int = 500
) -> dict[str, Any]:
    """One candidate per payment: ``{payment_id, reasons, receipt_handles}``, flagged ones first."""
    by_payment: dict[str, dict[str, Any]] = {}
    found: Counter[str] = Counter()
    for reason in Reason:
        # A flag without grace is due at once: no range condition (clocks of writers may differ slightly).
        cutoff = _parse(now) - GRACE[reason] if GRACE[reason] else None
        for flagged in store.due(reason.value, day_after(cutoff) if cutoff else None, limit):
            if cutoff is not None and _parse(flagged.since) > cutoff:
                continue  # same day as the cutoff but later: not due yet
            found[reason.value] += 1
            entry = by_payment.setdefault(
                flagged.payment_id, {"payment_id": flagged.payment_id, "reasons": [], "receipt_handles": []}
            )
            entry["reasons"].append(reason.value)
    for message in queue.receive(limit):
        found["rollback_dlq"] += 1
        entry = by_payment.setdefault(
            message.payment_id, {"payment_id": message.payment_id, "reasons": [], "receipt_handles": []}
        )
        entry["reasons"].append("rollback_dlq")
        entry["receipt_handles"].append(message.receipt_handle)
    candidates = list(by_payment.values())[:limit]
    return {"now": now, "candidates": candidates, "found": dict(found), "count": len(candidates)}


def decide(record: Record, auths: list[Authorization], now: str) -> Resolution:
    """What the record must become, given what the acquirer holds. Voids/refunds are done by ``resolve``."""
    captured = [a for a in auths if a.status == "captured"]
    status = record.status
    if status is PaymentStatus.REQUIRES_ACTION:
        return Resolution("unchanged", clear_flag=False)  # a 3-D Secure challenge still owns it
    if captured and status in (PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_CAPTURE):
        kept = next((a for a in captured if a.id == record.authorization_id), captured[0])
        return Resolution(
            "recorded_capture",
            PaymentStatus.SUCCEEDED,
            {
                "authorization_id": kept.id,
                "amount_authorized": kept.amount,
                "amount_captured": kept.amount_captured,
            },
        )
    if status is PaymentStatus.PROCESSING:
        code = "capture_failed" if record.reconcile_reason == Reason.CAPTURE_UNKNOWN else "processing_error"
        return Resolution(
            "voided_and_failed",
            PaymentStatus.FAILED,
            {
                "amount_authorized": 0,
                "amount_captured": 0,
                "failure_code": code,
                "failure_message": "The outcome was unknown; reconciliation released the authorization.",
            },
        )
    if status is PaymentStatus.REQUIRES_CAPTURE:
        since = record.reconcile_since
        if since and _parse(since) <= _parse(now) - AUTHORIZATION_VALIDITY:
            return Resolution(
                "expired_and_canceled",
                PaymentStatus.CANCELED,
                {"amount_authorized": 0, "cancellation_reason": "authorization_expired"},
            )
        return Resolution("unchanged", clear_flag=False)  # within its validity: the merchant may capture
    # Terminal: only the acquirer side is tidied (void leftovers, refund money a failed payment took).
    if captured and status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
        taken = sum(a.amount_captured for a in captured)
        return Resolution("refunded", None, {"amount_captured": taken, "amount_refunded": taken})
    return Resolution("released" if any(a.status in LIVE for a in auths) else "cleared")


def resolve(
    candidate: dict[str, Any], now: str, store: ReconcileStore, queue: RollbackQueue, acquirer: AcquirerClient
) -> dict[str, Any]:
    payment_id = candidate["payment_id"]
    record = store.get(payment_id)
    result: dict[str, Any] = {"payment_id": payment_id, "reasons": candidate.get("reasons", [])}
    if record is None:
        result["action"] = "unknown_payment"
    else:
        auths = acquirer.find_by_reference(payment_id)
        resolution = decide(record, auths, now)
        keep = {a.id for a in auths if a.status == "captured"}
        if resolution.action != "unchanged":
            void_live(payment_id, [a for a in auths if a.id not in keep], acquirer)
        if resolution.action == "refunded":
            for auth in auths:
                left = auth.amount_captured - auth.amount_refunded
                if auth.status == "captured" and left > 0:
                    key = f"{payment_id}:reconcile-refund:{auth.id}"
                    acquirer.refund(auth.id, amount=left, idempotency_key=key)
        to_store = bool(resolution.status or resolution.changes) or (
            resolution.clear_flag and record.reconcile_reason is not None
        )
        if to_store and not store.apply(record, resolution, now=now):
            resolution = Resolution("changed_meanwhile", clear_flag=False)  # the next run looks again
        result.update(
            action=resolution.action,
            status_before=record.status.value,
            status_after=(resolution.status or record.status).value,
        )
    for handle in candidate.get("receipt_handles", []):
        queue.delete(handle)  # resolved (or nothing to do): the rollback message is accounted for
    return result


def summarize(now: str, found: dict[str, int], results: list[dict[str, Any]]) -> dict[str, Any]:
    actions = Counter(str(r.get("action", "error")) for r in results)
    errors = [r["payment_id"] for r in results if r.get("action", "error") == "error"]
    return {
        "type": "reconciliation.summary",
        "run_at": now,
        "found": found,
        "resolved": len(results) - len(errors),
        "actions": dict(actions),
        "errors": errors,
    }
