"""3-D Secure on PayEasy's side (docs/3ds.md): the Request3DS and Wait3DSCallback tasks, and the ACS callback
(signature check, event model, and what each event does to the waiting workflow). Lambda-free.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from payeasy.errors import AuthenticationError, ConflictError, NotFoundError, TaskTokenExpired
from payeasy.money import Money
from payeasy.ports import AcquirerClient, Challenge, ChallengeStore, PaymentRepository, TaskCallbacks
from payeasy.status import PaymentStatus

SIGNATURE_HEADER = "PayEasy-3DS-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
# ASL error name Wait3DSCallback's Catch sends to HandleAuthFailure: part of the state machine's contract.
AUTHENTICATION_FAILED_ERROR = "ThreeDS.AuthenticationFailed"
# The challenge row outlives the wait by this much before DynamoDB's TTL deletes it, so a late callback
# still finds it and gets a clear 409 instead of a 404.
CHALLENGE_ROW_GRACE_SECONDS = 24 * 3600


# --- signature ------------------------------------------------------------------------------------------


class SignatureError(AuthenticationError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid {SIGNATURE_HEADER} header: {reason}.", code="invalid_signature")


def _digest(secret: str, timestamp: int, raw_body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + raw_body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The header value the ACS sends: ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, raw_body)}"


def verify_signature(
    header: str | None,
    raw_body: bytes,
    secret: str,
    *,
    now: float,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Raises ``SignatureError`` (401) unless ``header`` signs exactly ``raw_body`` within ``tolerance`` s of
    ``now``. Several ``v1`` entries are allowed (a secret being rotated); one must match."""
    if not header or not header.strip():
        raise SignatureError("missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("malformed")
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance")  # a replayed old callback
    expected = _digest(secret, timestamp, raw_body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no matching signature")


# --- the callback ---------------------------------------------------------------------------------------


class CallbackEvent(BaseModel):
    """What the ACS posts to ``POST /payments/{payment_id}/3ds/callback``."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    type: Literal["challenge.heartbeat", "challenge.completed"]
    authentication_id: str = Field(min_length=1, max_length=128)
    payment_id: str = Field(min_length=1, max_length=64)
    trans_status: str | None = Field(
        default=None, validate_default=True, pattern=r"^[A-Z]$", description="Y = authenticated"
    )
    eci: str | None = Field(default=None, max_length=2)
    authentication_value_ref: str | None = Field(default=None, max_length=128)
    created: int = Field(strict=True, ge=0)

    @field_validator("trans_status")
    @classmethod
    def _completed_has_result(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("type") == "challenge.completed":
            raise ValueError("trans_status is required for challenge.completed")
        return value


@dataclass(frozen=True, slots=True)
class Decision:
    """What the callback does to the waiting task."""

    action: Literal["heartbeat", "succeed", "fail"]
    output: dict[str, Any] | None = None  # SendTaskSuccess output (the workflow's $.three_d_secure)
    cause: str | None = None  # SendTaskFailure cause


def decide(event: CallbackEvent, challenge: Challenge | None, *, now: int) -> Decision:
    """The rules: unknown challenge 404; another authentication, a finished or an expired challenge 409."""
    if challenge is None:
        raise NotFoundError(
            f"No 3-D Secure challenge for payment {event.payment_id}.",
            code="resource_missing",
            param="payment_id",
        )
    if challenge.authentication_id != event.authentication_id:
        raise ConflictError(
            "This callback is for another 3-D Secure authentication of the payment.",
            code="authentication_mismatch",
            payment_id=event.payment_id,
        )
    if challenge.state != "pending":
        raise ConflictError(
            f"The 3-D Secure challenge is already {challenge.state}.",
            code="challenge_" + challenge.state,
            payment_id=event.payment_id,
        )
    if challenge.wait_until <= now:
        raise _expired(event.payment_id)
    if event.type == "challenge.heartbeat":
        return Decision("heartbeat")
    if event.trans_status == "Y":
        return Decision(
            "succeed",
            output={
                "status": "authenticated",
                "authentication_id": event.authentication_id,
                "trans_status": event.trans_status,
                "eci": event.eci,
                "authentication_value_ref": event.authentication_value_ref,
            },
        )
    return Decision("fail", cause=f"3-D Secure authentication failed (trans_status {event.trans_status}).")


def handle_callback(
    event: CallbackEvent, *, store: ChallengeStore, tasks: TaskCallbacks, now: int
) -> dict[str, Any]:
    """Applies a verified callback. The row moves pending -> completed before the workflow is told, so of
    two concurrent callbacks only one reaches Step Functions."""
    challenge = store.get(event.payment_id)
    decision = decide(event, challenge, now=now)
    assert challenge is not None  # decide() raised otherwise
    if decision.action == "heartbeat":
        try:
            tasks.heartbeat(challenge.task_token)
        except TaskTokenExpired as exc:
            store.expire(event.payment_id)
            raise _expired(event.payment_id) from exc
        return {"received": True, "type": event.type}
    store.complete(event.payment_id, event.authentication_id, now=now)
    try:
        if decision.action == "succeed":
            tasks.succeed(challenge.task_token, decision.output or {})
        else:
            tasks.fail(challenge.task_token, error=AUTHENTICATION_FAILED_ERROR, cause=decision.cause or "")
    except TaskTokenExpired as exc:
        store.expire(event.payment_id)  # too late: the workflow already canceled the payment
        raise _expired(event.payment_id) from exc
    except Exception:
        store.release(event.payment_id, event.authentication_id)  # not delivered: let the ACS retry
        raise
    return {"received": True, "type": event.type}


def _expired(payment_id: str) -> ConflictError:
    return ConflictError(
        "The 3-D Secure challenge has expired; the payment no longer waits for it.",
        code="challenge_expired",
        payment_id=payment_id,
    )


# --- the workflow's tasks -------------------------------------------------------------------------------


def request_authentication(state: dict[str, Any], acquirer: AcquirerClient) -> dict[str, Any]:
    """Request3DS: creates the acquirer's authentication; the result becomes ``$.three_d_secure``.
    The Idempotency-Key derives from the payment, so a retried task gets the same authentication."""
    payment_id = state["payment_id"]
    auth = acquirer.create_3ds_authentication(
        token=state["card"]["token"],
        money=Money(state["amount"], state["currency"]),
        reference=payment_id,
        return_url=state.get("return_url"),
        idempotency_key=f"{payment_id}:3ds",
    )
    return {
        "status": auth.status,
        "authentication_id": auth.id,
        "challenge_url": auth.challenge_url,
        "trans_status": auth.trans_status,
        "eci": auth.eci,
        "authentication_value_ref": auth.authentication_value_ref,
    }


class WaitTask(BaseModel):
    """Wait3DSCallback's payload (the state machine builds it)."""

    model_config = ConfigDict(extra="ignore")

    payment_id: str
    task_token: str = Field(repr=False)
    authentication_id: str
    challenge_url: str
    return_url: str | None = None
    timeout_seconds: int = Field(gt=0)


def await_challenge(
    task: WaitTask, *, store: ChallengeStore, repository: PaymentRepository, now: int
) -> dict[str, Any]:
    """Wait3DSCallback: keeps the task token server-side, then shows the challenge to the merchant
    (``requires_action`` + ``next_action``). Row first: the URL is only visible once a callback can land."""
    store.put_pending(
        Challenge(
            payment_id=task.payment_id,
            authentication_id=task.authentication_id,
            task_token=task.task_token,
            state="pending",
            wait_until=now + task.timeout_seconds,
            created=now,
        )
    )
    payment = repository.get(task.payment_id)
    if payment is None:
        raise NotFoundError(f"No such payment: {task.payment_id}", code="resource_missing")
    next_action = {"type": "redirect_to_url", "url": task.challenge_url, "return_url": task.return_url}
    if payment.status is PaymentStatus.REQUIRES_ACTION:  # a retried task: same payment, new token
        updated = payment.with_changes(next_action=next_action)
    else:
        updated = payment.moved_to(
            PaymentStatus.REQUIRES_ACTION, action="sent to 3-D Secure", next_action=next_action
        )
    repository.save(updated, expected_status=payment.status.value)
    return {"payment_id": task.payment_id, "status": updated.status.value}


def challenge_row_ttl(challenge: Challenge) -> int:
    """The TTL attribute ``expires_at``: a day after the wait ends (see the grace above)."""
    return challenge.wait_until + CHALLENGE_ROW_GRACE_SECONDS
