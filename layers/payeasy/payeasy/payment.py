"""The payment record: what the Payments table holds for one payment (never a PAN or CVC)."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from payeasy.status import PaymentStatus, ensure_transition

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_payment_id() -> str:
    # 22 base62 characters = 131 bits: unguessable, and a valid execution name once prefixed.
    return "pay_" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def execution_name(payment_id: str) -> str:
    """Step Functions execution name for a payment (80 chars max, [A-Za-z0-9_-])."""
    return payment_id[:80]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Payment:
    payment_id: str
    merchant_id: str
    status: PaymentStatus
    amount: int
    currency: str
    capture_method: str
    card: dict[str, Any]  # token, brand, last4, exp_month, exp_year, bin_country, three_d_secure
    workflow: str
    created: int  # epoch seconds, as Stripe's `created`
    updated_at: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    return_url: str | None = None
    authorization_id: str | None = None
    amount_authorized: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)
    # STANDARD path: the 3-D Secure redirect while requires_action; why a payment was canceled.
    next_action: dict[str, Any] | None = None
    cancellation_reason: str | None = None
    # The workflow runs that claimed the payment, written by the state machines' ValidateRequest; kept as
    # fields so that a read-modify-write save (a put of the whole item) does not drop the claims.
    execution_id: str | None = None
    standard_execution_id: str | None = None
    # Failure handling (docs/failure-handling.md): why the payment is in the sparse ReconcileIndex and since
    # when (void_pending | capture_unknown | needs_attention | authorization_expiry), and whether a system
    # error needs a human. Fields, so that a put of the whole item keeps them.
    reconcile_reason: str | None = None
    reconcile_since: str | None = None
    needs_attention: bool = False

    def moved_to(self, target: PaymentStatus, *, action: str, **changes: Any) -> Payment:
        ensure_transition(self.status, target, payment_id=self.payment_id, action=action)
        return replace(self, status=target, updated_at=utc_now_iso(), **changes)

    def with_changes(self, **changes: Any) -> Payment:
        return replace(self, updated_at=utc_now_iso(), **changes)

    def to_item(self) -> dict[str, Any]:
        item = asdict(self)
        item["status"] = self.status.value
        return {key: value for key, value in item.items() if value is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Payment:
        known = {name for name in cls.__dataclass_fields__}
        data = {key: _plain(value) for key, value in item.items() if key in known}
        data["status"] = PaymentStatus(data["status"])
        return cls(**data)

    def view(self) -> dict[str, Any]:
        """The API's JSON for this payment (``PaymentView``'s shape)."""
        capturable = self.amount_authorized if self.status is PaymentStatus.REQUIRES_CAPTURE else 0
        card = {k: self.card.get(k) for k in ("brand", "last4", "exp_month", "exp_year")}
        card["country"] = self.card.get("bin_country")
        return {
            "id": self.payment_id,
            "object": "payment",
            "status": self.status.value,
            "amount": self.amount,
            "amount_capturable": capturable,
            "amount_received": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "currency": self.currency.lower(),
            "capture_method": self.capture_method,
            "card": card,
            "description": self.description,
            "metadata": self.metadata,
            "decline_code": self.decline_code,
            "failure_code": self.failure_code,
            "failure_message": self.failure_message,
            "authorization_id": self.authorization_id,
            # Only while the cardholder has something to do: a stale challenge URL must not be followed.
            "next_action": self.next_action if self.status is PaymentStatus.REQUIRES_ACTION else None,
            "cancellation_reason": self.cancellation_reason,
            "reconciliation": (
                {"reason": self.reconcile_reason, "since": self.reconcile_since}
                if self.reconcile_reason
                else None
            ),
            "needs_attention": self.needs_attention,
            "workflow": self.workflow,
            "created": self.created,
            "updated_at": self.updated_at,
        }


def _plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal; our numbers are all integers."""

    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
