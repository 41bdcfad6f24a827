"""PaymentRepository on DynamoDB (boto3 default client: AWS_ENDPOINT_URL decides where it goes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from payeasy.errors import ConflictError
from payeasy.payment import Payment

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


# Who wrote, for the audit trail: extra attributes stored with every write (``updated_by``, ``trace_id``).
WriteStamp = Callable[[Payment], dict[str, str]]


class DynamoPaymentRepository:
    def __init__(self, table_name: str, client: Any | None = None, stamp: WriteStamp | None = None) -> None:
        self._table = table_name
        self._client = client or boto3.client("dynamodb")
        self._stamp = stamp or (lambda _: {})

    def _item(self, payment: Payment) -> dict[str, Any]:
        return _to_attributes({**payment.to_item(), **self._stamp(payment)})

    def create(self, payment: Payment) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(payment),
                ConditionExpression="attribute_not_exists(payment_id)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise ConflictError(
                    "A payment with this id exists.",
                    code="resource_already_exists",
                    payment_id=payment.payment_id,
                ) from exc
            raise

    def get(self, payment_id: str) -> Payment | None:
        answer = self._client.get_item(
            TableName=self._table, Key={"payment_id": {"S": payment_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return None
        return Payment.from_item({key: _DESERIALIZER.deserialize(value) for key, value in item.items()})

    def save(self, payment: Payment, *, expected_status: str, expected_updated_at: str | None = None) -> None:
        condition = "#status = :expected"
        values = {":expected": {"S": expected_status}}
        if expected_updated_at is not None:  # optimistic lock for changes that keep the status (refunds)
            condition += " AND updated_at = :updated"
            values[":updated"] = {"S": expected_updated_at}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(payment),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise ConflictError(
                    "The payment changed while this request ran; retry it.",
                    code="payment_unexpected_state",
                    payment_id=payment.payment_id,
                ) from exc
            raise


def _to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _SERIALIZER.serialize(value) for key, value in item.items()}


def _conditional_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
