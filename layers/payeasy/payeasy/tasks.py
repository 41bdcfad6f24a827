"""The workflow's task logic (AuthorizePayment, CapturePayment, HandleCaptureFailure), Lambda-free.

Each task gets the execution state and returns the ``outcome`` the state machine carries to SaveTransaction or
PaymentFailed: ``{payment_id, status, authorization_id, amount_authorized, amount_captured, decline_code,
failure_code, failure_message}``. Acquirer idempotency keys derive from the payment id, so a Retry of a task
whose first attempt did reach the acquirer replays that attempt instead of charging twice.
"""

from __future__ import annotations

from typing import Any

from payeasy.errors import AcquirerTimeout, CaptureFailed
from payeasy.money import Money
from payeasy.ports import AcquirerClient, Authorization, ThreeDSResult
from payeasy.status import PaymentStatus

# Decline codes Stripe reports under their own `code`; every other decline is code `card_declined`.
_OWN_CODE = {"expired_card", "incorrect_cvc", "processing_error", "authentication_required"}


def failure_code_for(decline_code: str) -> str:
    return decline_code if decline_code in _OWN_CODE else "card_declined"


def _outcome(
    payment_id: str, status: PaymentStatus, auth: Authorization | None, **extra: Any
) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "payment_id": payment_id,
        "status": status.value,
        "authorization_id": auth.id if auth else None,
        "amount_authorized": auth.amount if auth and auth.approved else 0,
        "amount_captured": auth.amount_captured if auth else 0,
        "decline_code": None,
        "failure_code": None,
        "failure_message": None,
    }
    outcome.update(extra)
    return outcome


def authorize(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    payment_id = state["payment_id"]
    auth = acquirer.authorize(
        token=state["card"]["token"],
        money=Money(state["amount"], state["currency"]),
        reference=payment_id,
        idempotency_key=f"{payment_id}:authorize",
        three_d_secure=three_d_secure_result(state.get("three_d_secure")),
    )
    if auth.approved:
        return _outcome(payment_id, PaymentStatus.REQUIRES_CAPTURE, auth)
    decline = auth.decline_code or "generic_decline"
    return _outcome(
        payment_id,
        PaymentStatus.FAILED,
        auth,
        decline_code=decline,
        failure_code=failure_code_for(decline),
        failure_message=auth.message or "The card was declined.",
    )


def three_d_secure_result(value: Any) -> ThreeDSResult | None:
    """The 3-D Secure result the STANDARD workflow hands the EXPRESS one (``$.three_d_secure``), if any."""
    if not isinstance(value, dict) or not value.get("authentication_id"):
        return None
    return ThreeDSResult(authentication_id=str(value["authentication_id"]), eci=value.get("eci"))


def capture(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    """Captures the authorization. On a timeout, asks the acquirer what happened before letting Retry run."""
    payment_id = state["payment_id"]
    auth_id = state["outcome"]["authorization_id"]
    try:
        auth = acquirer.capture(auth_id, amount=None, idempotency_key=f"{payment_id}:capture")
    except AcquirerTimeout:
        auth = acquirer.get_authorization(auth_id)
        if auth.status != "captured":
            raise  # not captured: the workflow retries the capture with the same key
    if auth.status != "captured":
        raise CaptureFailed(f"capture of {auth_id} failed: {auth.message or auth.status}")
    return _outcome(payment_id, PaymentStatus.SUCCEEDED, auth)


def void_after_capture_failure(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    """Releases the authorization a failed capture left behind, then reports the payment as failed."""
    payment_id = state["payment_id"]
    auth_id = state["outcome"]["authorization_id"]
    auth = acquirer.void(auth_id, idempotency_key=f"{payment_id}:void")
    cause = (state.get("error") or {}).get("Error", "CaptureFailed")
    return _outcome(
        payment_id,
        PaymentStatus.FAILED,
        auth,
        amount_authorized=0,
        failure_code="capture_failed",
        failure_message=f"The capture failed ({cause}); the authorization was voided.",
    )
