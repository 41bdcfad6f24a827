"""The append-only PaymentEvents table (payment_id + sequence): written once per change, read in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from payeasy.audit import AuditEvent

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class AuditStore(Protocol):
    def append(self, event: AuditEvent) -> bool:
        """Stores the event unless it is already there (stream redelivery); True when it was new."""
        ...

    def append_all(self, events: Sequence[AuditEvent]) -> list[bool]:
        """``append`` for each event, in as few writes as the store allows; raises if any is not stored."""
        ...

    def events(self, payment_id: str) -> list[AuditEvent]: ...


TRANSACT_MAX_ITEMS = 100  # DynamoDB's limit per TransactWriteItems (and the stream mapping's BatchSize)
# One TransactWriteItems per stream batch instead of a PutItem per event. On `make run` (1 client, median of
# 2 paired runs): workers ~36-44 -> ~31 ms and the endpoint ~58-69 -> ~56 ms of CPU per payment. (It needs the
# local runtime's TransactWriteItems hook: stock moto deep-copies the table once per item of a transaction.)
TRANSACT_WRITES = True


class DynamoAuditStore:
    def __init__(self, table_name: str, client: Any, *, transactions: bool | None = None) -> None:
        self._table = table_name
        self._client = client
        self._transactions = TRANSACT_WRITES if transactions is None else transactions

    def _put(self, event: AuditEvent) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": {key: _SERIALIZER.serialize(value) for key, value in event.to_item().items()},
            # Never overwrite: a redelivered stream record finds its event and changes nothing.
            "ConditionExpression": "attribute_not_exists(payment_id)",
        }

    def append(self, event: AuditEvent) -> bool:
        try:
            self._client.put_item(**self._put(event))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def append_all(self, events: Sequence[AuditEvent]) -> list[bool]:
        """One TransactWriteItems per 100 events instead of a PutItem each (a stream batch is ~7 changes per
        payment). Each Put keeps its condition: events already stored (a redelivered batch) cancel the
        transaction, which names them; the others are written again without them. All or nothing per
        transaction, so an error leaves no half-written chunk behind."""
        if len(events) == 1 or not self._transactions:
            # A transaction costs twice the write capacity of a PutItem: not worth it for one event.
            return [self.append(event) for event in events]
        stored = [False] * len(events)
        for start in range(0, len(events), TRANSACT_MAX_ITEMS):
            pending = list(range(start, min(start + TRANSACT_MAX_ITEMS, len(events))))
            while pending:
                try:
                    self._client.transact_write_items(
                        TransactItems=[{"Put": self._put(events[i])} for i in pending]
                    )
                except ClientError as exc:
                    codes = _cancellation_codes(exc, len(pending))
                    if codes is None:
                        raise
                    pending = [index for index, code in zip(pending, codes, strict=True) if code == "None"]
                    continue
                for index in pending:
                    stored[index] = True
                pending = []
        return stored

    def events(self, payment_id: str) -> list[AuditEvent]:
        found: list[AuditEvent] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "payment_id = :id",
            "ExpressionAttributeValues": {":id": {"S": payment_id}},
            "ConsistentRead": True,
        }
        while True:
            answer = self._client.query(**kwargs)
            for item in answer.get("Items", []):
                found.append(AuditEvent.from_item(_plain(item)))
            if "LastEvaluatedKey" not in answer:
                return found
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _cancellation_codes(exc: ClientError, count: int) -> list[str] | None:
    """The per-item reasons of a transaction cancelled only because some events exist already; None for any
    other failure (throttling, a conflict, a validation error: the caller raises, the batch is retried)."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    reasons = exc.response.get("CancellationReasons") or []
    codes = [str(reason.get("Code") or "None") for reason in reasons]
    if len(codes) != count or "ConditionalCheckFailed" not in codes:
        return None
    if any(code not in ("None", "ConditionalCheckFailed") for code in codes):
        return None
    return codes


def image_to_python(image: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stream image (DynamoDB JSON) as plain Python with integers for numbers."""
    if image is None:
        return None
    return {key: _number(_DESERIALIZER.deserialize(value)) for key, value in image.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _number(_DESERIALIZER.deserialize(value)) for key, value in item.items()}


def _number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value
