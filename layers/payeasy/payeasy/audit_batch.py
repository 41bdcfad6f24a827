"""A batch of Payments-table stream records -> audit events, stored together; which records to retry.

Lambda-free: the audit function hands it the stream records (DynamoDB JSON) and answers Lambda with the
sequence numbers in ``failed`` (ReportBatchItemFailures: the retry starts at the first of them; records after
it that were stored are redelivered and change nothing, the store never overwrites an event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from payeasy.audit import AuditEvent, event_for_change
from payeasy.audit_store import AuditStore, image_to_python


@dataclass(frozen=True)
class WrittenEvent:
    event: AuditEvent
    workflow: str  # of the payment (the record's new image), for the outcome metric's dimension


@dataclass
class BatchResult:
    written: list[WrittenEvent] = field(default_factory=list)  # new events only, never a redelivered one
    failed: list[str] = field(default_factory=list)  # sequence numbers of the records to deliver again
    errors: list[str] = field(default_factory=list)  # why, for the log (never a record's content)
    records: int = 0

    @property
    def all_failed(self) -> bool:
        return self.records > 0 and len(self.failed) == self.records


def audit_stream_batch(records: Sequence[Mapping[str, Any]], store: AuditStore) -> BatchResult:
    """One audit event per change (none for a record that changes nothing audited), all stored in one
    ``append_all``: a store error fails every record that had an event, a record that cannot be read
    fails alone."""
    result = BatchResult(records=len(records))
    pending: list[tuple[AuditEvent, str, str]] = []  # event, sequence number, workflow
    for record in records:
        raw = record.get("dynamodb") or {}
        sequence = _sequence(record)
        try:
            new = image_to_python(raw.get("NewImage"))
            event = event_for_change(
                event_name=str(record["eventName"]),
                old=image_to_python(raw.get("OldImage")),
                new=new,
                sequence_number=raw["SequenceNumber"],
                approximate_time=float(raw.get("ApproximateCreationDateTime") or 0),
            )
        except Exception as exc:  # one unreadable record must not hold back the others
            result.failed.append(sequence)
            result.errors.append(f"record {sequence}: {type(exc).__name__}")
            continue
        if event is not None:
            pending.append((event, sequence, str((new or {}).get("workflow") or "unknown")))
    if not pending:
        return result
    try:
        stored = store.append_all([event for event, _, _ in pending])
    except Exception as exc:  # the store is unreachable or refused: deliver every one of them again
        result.errors.append(f"store: {type(exc).__name__}: {exc}")
        failed = {sequence for _, sequence, _ in pending} | set(result.failed)
        result.failed = [sequence for sequence in map(_sequence, records) if sequence in failed]
        return result
    result.written = [
        WrittenEvent(event, workflow)
        for (event, _, workflow), new in zip(pending, stored, strict=True)
        if new
    ]
    return result


def _sequence(record: Mapping[str, Any]) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))
