"""Why a payment is in the sparse ``ReconcileIndex`` (attribute ``reconcile_reason``, the index's hash key;
``reconcile_since``, its range key, is when the flag was set). Only flagged items carry the attributes, so
the index holds exactly the reconciliation's work and a Query per reason finds it without a Scan."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class Reason(StrEnum):
    VOID_PENDING = "void_pending"  # failed payment whose void failed after 5 tries (also in the rollback DLQ)
    CAPTURE_UNKNOWN = "capture_unknown"  # capture timed out and 3 status checks did not tell: `processing`
    NEEDS_ATTENTION = "needs_attention"  # a system error stopped the workflow: `processing`, alert sent
    AUTHORIZATION_EXPIRY = (
        "authorization_expiry"  # manual capture: void + cancel when uncaptured at 7 d
    )


# Authorizations a manual-capture payment holds are valid this long (card networks: 7 days for most).
AUTHORIZATION_VALIDITY = timedelta(days=7)

# How old a flag must be before a run acts on it.
GRACE: dict[Reason, timedelta] = {
    Reason.VOID_PENDING: timedelta(0),
    Reason.CAPTURE_UNKNOWN: timedelta(0),
    Reason.NEEDS_ATTENTION: timedelta(0),
    Reason.AUTHORIZATION_EXPIRY: AUTHORIZATION_VALIDITY,
}
