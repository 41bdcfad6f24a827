"""The audit trail: every change of a payment record becomes an append-only event, in order.

The events come from the Payments table's change stream, so no writer (API, EXPRESS or STANDARD workflow,
reconciliation) can change a payment without leaving one, and none has to remember to. Only the fields below
are copied into an event: never the card token, a task token or anything a merchant should not read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# What an auditor needs to follow a payment; anything else that changes is named, not copied.
AUDITED_FIELDS = (
    "status",
    "amount",
    "currency",
    "authorization_id",
    "amount_authorized",
    "amount_captured",
    "amount_refunded",
    "decline_code",
    "failure_code",
    "cancellation_reason",
    "needs_attention",
    "attention_reason",
    "void_status",
    "capture_status",
)
EXECUTION_FIELDS = ("execution_id", "standard_execution_id")  # which workflow run claimed the payment
REASON_FIELDS = ("cancellation_reason", "failure_code", "decline_code", "attention_reason")
_IGNORED = {"updated_at", "updated_by", "trace_id"}  # bookkeeping of every write, not a change of its own


@dataclass(frozen=True)
class AuditEvent:
    payment_id: str
    sequence: str  # the change's position in the table's stream, zero-padded: sorts in order
    type: str  # payment.created | payment.status_changed | payment.workflow_started | payment.updated
    at: str  # when the writer says it changed the payment (its updated_at), ISO 8601
    actor: str  # "api:<merchant>" | "workflow:<execution arn>" | ... as the writer recorded it
    merchant_id: str
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    execution_arn: str | None = None
    trace_id: str | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # field -> [old, new] (audited fields)
    other_changes: list[str] = field(default_factory=list)  # names of other fields that changed

    def to_item(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, [], {})}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> AuditEvent:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in item.items() if key in known})

    def view(self, *, region: str | None = None) -> dict[str, Any]:
        """The API's JSON for this event; links the workflow run's history when there is one."""
        out: dict[str, Any] = {
            "id": f"pev_{self.sequence.lstrip('0') or '0'}",
            "object": "payment_event",
            "type": self.type,
            "created_at": self.at,
            "actor": self.actor,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "reason": self.reason,
            "execution_arn": self.execution_arn,
            "trace_id": self.trace_id,
            "changes": {key: {"from": old, "to": new} for key, (old, new) in sorted(self.changes.items())},
        }
        if self.execution_arn and region:
            out["execution_history_url"] = (
                f"https://{region}.console.aws.amazon.com/states/home?region={region}"
                f"#/v2/executions/details/{self.execution_arn}"
            )
        return out


def sequence_key(sequence_number: str) -> str:
    """Stream sequence numbers are decimal strings of varying length: pad so they sort as numbers."""
    return sequence_number.rjust(40, "0")


def event_for_change(
    *,
    event_name: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    sequence_number: str,
    approximate_time: float,
) -> AuditEvent | None:
    """The audit event for one stream record (plain Python images), or None when nothing changed."""
    old, new = old or {}, new or {}
    current = new or old
    payment_id = str(current.get("payment_id", ""))
    if not payment_id:
        return None
    changed = sorted(
        key for key in set(old) | set(new) if key not in _IGNORED and old.get(key) != new.get(key)
    )
    if event_name != "INSERT" and not changed:
        return None
    audited = {key: [old.get(key), new.get(key)] for key in changed if key in AUDITED_FIELDS}
    execution = next((str(new[key]) for key in EXECUTION_FIELDS if key in changed and new.get(key)), None)
    if event_name == "INSERT":
        kind = "payment.created"
        audited = {key: [None, new[key]] for key in AUDITED_FIELDS if new.get(key) not in (None, "", 0)}
    elif event_name == "REMOVE":
        kind = "payment.deleted"
    elif "status" in changed:
        kind = "payment.status_changed"
    elif execution:
        kind = "payment.workflow_started"
    else:
        kind = "payment.updated"
    actor = str(new.get("updated_by") or old.get("updated_by") or "unknown")
    if execution is None and actor.startswith("workflow:"):
        execution = actor.removeprefix("workflow:")
    reason = next((str(new[key]) for key in REASON_FIELDS if key in changed and new.get(key)), None)
    return AuditEvent(
        payment_id=payment_id,
        sequence=sequence_key(sequence_number),
        type=kind,
        at=str(new.get("updated_at") or _iso(approximate_time)),
        actor=actor,
        merchant_id=str(current.get("merchant_id", "")),
        from_status=None if event_name == "INSERT" else _text(old.get("status")),
        to_status=_text(new.get("status")),
        reason=reason,
        execution_arn=execution,
        trace_id=_text(new.get("trace_id") or old.get("trace_id")),
        changes=audited,
        other_changes=[]
        if event_name == "INSERT"
        else [key for key in changed if key not in AUDITED_FIELDS and key not in EXECUTION_FIELDS],
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Final outcomes, counted once per payment where every path meets: the change stream.
_OUTCOME_METRICS = {"succeeded": "PaymentsSucceeded", "canceled": "PaymentsCanceled"}


def outcome_metric(event: AuditEvent) -> str | None:
    """PaymentsSucceeded / PaymentsDeclined (the card or the cardholder said no) / PaymentsFailed (we could
    not complete it) / PaymentsCanceled, for a change into a final status; None for any other change."""
    if event.type != "payment.status_changed" or event.to_status is None:
        return None
    if event.to_status == "failed":
        declined = event.changes.get("decline_code", [None, None])[1]
        return "PaymentsDeclined" if declined else "PaymentsFailed"
    return _OUTCOME_METRICS.get(event.to_status)

