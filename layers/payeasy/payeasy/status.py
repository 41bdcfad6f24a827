"""Payment statuses (Stripe's names) and the transitions between them."""

from __future__ import annotations

from enum import StrEnum

from payeasy.errors import ConflictError


class PaymentStatus(StrEnum):
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


ALLOWED_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PROCESSING: frozenset(
        {
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.REQUIRES_CAPTURE,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
        }
    ),
    PaymentStatus.REQUIRES_ACTION: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.CANCELED, PaymentStatus.FAILED}
    ),
    PaymentStatus.REQUIRES_CAPTURE: frozenset(
        {PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, PaymentStatus.FAILED}
    ),
    # Terminal: refunds change amount_refunded, not the status.
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if not targets)


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def ensure_transition(current: PaymentStatus, target: PaymentStatus, *, payment_id: str, action: str) -> None:
    """Raises the 409 the API answers when ``action`` would move a payment along a forbidden edge."""
    if not can_transition(current, target):
        raise ConflictError(
            f"This payment has status {current.value}; it cannot be {action}.",
            code="payment_unexpected_state",
            payment_id=payment_id,
        )
