"""Compensation tasks of the EXPRESS workflow (the error table's timeout rows), Lambda-free.

- ``lookup_and_void``: authorize timed out on every try. The request may have gone through, so the acquirer is
  asked for every authorization carrying the payment's reference and each live one is voided.
- ``capture_status``: capture timed out on every try. One status check (the state machine retries it, three
  checks in all) says whether the money was captured, not captured, or the capture failed.

Both return the workflow's ``outcome`` shape (see ``payeasy.tasks``). Acquirer failures propagate as
``AcquirerTimeout`` / ``AcquirerUnavailable`` so the state machine's Retry and Catch decide what comes next.
"""

from __future__ import annotations

from typing import Any

from payeasy.ports import AcquirerClient, Authorization
from payeasy.status import PaymentStatus
from payeasy.tasks import _outcome

# Acquirer statuses that still hold the customer's funds: each must end voided (or captured).
LIVE = frozenset({"authorized", "capture_failed"})


def void_key(payment_id: str, authorization_id: str) -> str:
    """One key per authorization: a payment may have more than one when an authorize reply was lost."""
    return f"{payment_id}:void:{authorization_id}"


def void_live(payment_id: str, auths: list[Authorization], acquirer: AcquirerClient) -> list[Authorization]:
    """Voids every live authorization (a void of a voided one answers 200: safe to repeat)."""
    return [
        acquirer.void(a.id, idempotency_key=void_key(payment_id, a.id)) if a.status in LIVE else a
        for a in auths
    ]


def lookup_and_void(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    payment_id = state["payment_id"]
    after = void_live(payment_id, acquirer.find_by_reference(payment_id), acquirer)
    voided = [a for a in after if a.status == "voided"]
    return _outcome(
        payment_id,
        PaymentStatus.FAILED,
        voided[0] if voided else None,
        amount_authorized=0,
        amount_captured=0,
        failure_code="processing_error",
        failure_message=(
            "The acquirer did not answer in time; "
            + (f"{len(voided)} authorization(s) voided." if voided else "nothing was authorized.")
        ),
        voided=[a.id for a in voided],
    )


def capture_status(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    """``capture_status``: ``captured`` (success) | ``not_captured`` (void it) | ``failed`` (void it)."""
    payment_id = state["payment_id"]
    auth = acquirer.get_authorization(state["outcome"]["authorization_id"])
    if auth.status == "captured":
        return {**_outcome(payment_id, PaymentStatus.SUCCEEDED, auth), "capture_status": "captured"}
    verdict = "failed" if auth.status == "capture_failed" else "not_captured"
    return {**_outcome(payment_id, PaymentStatus.PROCESSING, auth), "capture_status": verdict}
