"""What a merchant can do to an existing payment: capture, cancel, refund. Each checks the status first
(409 when it does not allow the operation), calls the acquirer, then stores the result conditionally."""

from __future__ import annotations

import time
from typing import Any

from payeasy.errors import AcquirerError, ApiError, CardError, ConflictError, InvalidRequestError
from payeasy.payment import Payment
from payeasy.ports import AcquirerClient, PaymentRepository
from payeasy.status import PaymentStatus


def _conflict(payment: Payment, action: str) -> ConflictError:
    return ConflictError(
        f"This payment has status {payment.status.value}; it cannot be {action}.",
        code="payment_unexpected_state",
        payment_id=payment.payment_id,
    )


def _unavailable(payment: Payment, exc: AcquirerError) -> ApiError:
    return ApiError(
        f"The acquirer did not answer ({type(exc).__name__}); retry with the same Idempotency-Key.",
        code="acquirer_unavailable",
        payment_id=payment.payment_id,
    )


def capture(
    payment: Payment, amount: int | None, *, acquirer: AcquirerClient, repository: PaymentRepository
) -> Payment:
    if payment.status is not PaymentStatus.REQUIRES_CAPTURE or payment.authorization_id is None:
        raise _conflict(payment, "captured")
    to_capture = payment.amount_authorized if amount is None else amount
    if to_capture > payment.amount_authorized:
        raise InvalidRequestError(
            f"amount_to_capture ({to_capture}) exceeds the authorized amount ({payment.amount_authorized}).",
            code="amount_too_large",
            param="amount_to_capture",
            payment_id=payment.payment_id,
        )
    try:
        auth = acquirer.capture(
            str(payment.authorization_id), amount=to_capture, idempotency_key=f"{payment.payment_id}:capture"
        )
    except AcquirerError as exc:
        raise _unavailable(payment, exc) from exc
    if auth.status != "captured":
        raise CardError(
            auth.message or "The capture failed.", code="capture_failed", payment_id=payment.payment_id
        )
    captured = payment.moved_to(
        PaymentStatus.SUCCEEDED, action="captured", amount_captured=auth.amount_captured
    )
    repository.save(captured, expected_status=PaymentStatus.REQUIRES_CAPTURE.value)
    return captured


def cancel(payment: Payment, *, acquirer: AcquirerClient, repository: PaymentRepository) -> Payment:
    """Voids an uncaptured authorization; a STANDARD payment not yet authorized is canceled without one."""
    cancelable = payment.status is PaymentStatus.REQUIRES_CAPTURE or (
        # A STANDARD payment waiting for its workflow; an EXPRESS one in flight belongs to its execution.
        payment.status is PaymentStatus.PROCESSING and payment.workflow == "standard"
    )
    if not cancelable:
        raise _conflict(payment, "canceled")
    if payment.authorization_id is not None:
        try:
            acquirer.void(payment.authorization_id, idempotency_key=f"{payment.payment_id}:void")
        except AcquirerError as exc:
            raise _unavailable(payment, exc) from exc
    canceled = payment.moved_to(PaymentStatus.CANCELED, action="canceled")
    repository.save(canceled, expected_status=payment.status.value)
    return canceled


def refund(
    payment: Payment,
    amount: int | None,
    *,
    request_key: str,
    acquirer: AcquirerClient,
    repository: PaymentRepository,
) -> tuple[Payment, dict[str, Any]]:
    """Refunds part or all of what is left; never more than was captured."""
    if payment.status is not PaymentStatus.SUCCEEDED or payment.authorization_id is None:
        raise _conflict(payment, "refunded")
    left = payment.amount_captured - payment.amount_refunded
    to_refund = left if amount is None else amount
    if to_refund <= 0 or to_refund > left:
        raise InvalidRequestError(
            f"Refund amount ({to_refund}) is more than the {left} left to refund.",
            code="amount_too_large",
            param="amount",
            payment_id=payment.payment_id,
        )
    try:
        done = acquirer.refund(
            str(payment.authorization_id),
            amount=to_refund,
            idempotency_key=f"{payment.payment_id}:{request_key}",
        )
    except AcquirerError as exc:
        raise _unavailable(payment, exc) from exc
    record = {
        "id": done.id,
        "object": "refund",
        "amount": done.amount,
        "currency": payment.currency.lower(),
        "payment_id": payment.payment_id,
        "status": done.status,
        "created": int(time.time()),
    }
    updated = payment.with_changes(
        amount_refunded=payment.amount_refunded + done.amount, refunds=[*payment.refunds, record]
    )
    repository.save(updated, expected_status=payment.status.value, expected_updated_at=payment.updated_at)
    return updated, record
