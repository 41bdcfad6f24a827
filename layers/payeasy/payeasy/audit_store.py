"""The append-only PaymentEvents table (payment_id + sequence): written once per change, read in order."""

from __future__ import annotations

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

    def events(self, payment_id: str) -> list[AuditEvent]: ...


class DynamoAuditStore:
    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def append(self, event: AuditEvent) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={key: _SERIALIZER.serialize(value) for key, value in event.to_item().items()},
                # Never overwrite: a redelivered stream record finds its event and changes nothing.
                ConditionExpression="attribute_not_exists(payment_id)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

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
