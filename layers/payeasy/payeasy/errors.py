"""Errors as the API shows them (Stripe's shape), and the exceptions the workflow's Retry/Catch match by name.

Step Functions matches a Lambda error by the exception's class name (``errorType``), so the class names of
``AcquirerTimeout``, ``AcquirerUnavailable`` and ``CaptureFailed`` are part of the ASL contract: renaming one
silently disables its Retry or Catch.
"""

from __future__ import annotations

from typing import Any


class PaymentError(Exception):
    """An error the API answers with ``{"error": {...}}`` and ``http_status``."""

    http_status = 500
    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        decline_code: str | None = None,
        payment_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.payment_id = payment_id

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.error_type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "decline_code": self.decline_code,
                "payment_id": self.payment_id,
            }
        }


class InvalidRequestError(PaymentError):
    http_status = 400
    error_type = "invalid_request_error"


class AuthenticationError(PaymentError):
    http_status = 401
    error_type = "authentication_error"


class CardError(PaymentError):
    http_status = 402
    error_type = "card_error"


class NotFoundError(InvalidRequestError):
    http_status = 404


class ConflictError(InvalidRequestError):
    """The payment's status does not allow the operation (capture a failed payment, refund too much...)."""

    http_status = 409


class IdempotencyError(PaymentError):
    http_status = 422
    error_type = "idempotency_error"


class IdempotencyInProgress(PaymentError):
    http_status = 409
    error_type = "idempotency_error"


class ApiError(PaymentError):
    http_status = 500
    error_type = "api_error"


# --- acquirer exceptions: the names below are ASL error names -------------------------------------------


class AcquirerError(Exception):
    """Base of failures talking to the acquirer (never a decline: a decline is a result)."""


class AcquirerTimeout(AcquirerError):
    """No answer in time: the request may or may not have been processed. Retry with the same key."""


class AcquirerUnavailable(AcquirerError):
    """Connection refused or a 5xx: nothing was processed, or the acquirer tells us to retry."""


class AcquirerRejected(AcquirerError):
    """The acquirer refused the request itself (a 4xx other than a decline): our bug, never retried."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class CaptureFailed(Exception):
    """The acquirer answered that the capture failed; the workflow voids the authorization."""


class TaskTokenExpired(Exception):
    """Step Functions no longer waits for this task token (it timed out, or the execution ended)."""
