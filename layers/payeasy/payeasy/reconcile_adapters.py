"""Reconciliation's adapters: the sparse ReconcileIndex of the Payments table and the rollback DLQ (boto3
default clients: AWS_ENDPOINT_URL decides where they go)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from payeasy.reconciliation import Flagged, QueuedRollback, Record, Resolution
from payeasy.status import PaymentStatus

INDEX = "ReconcileIndex"
# A message a run received but could not resolve is seen again by a later run (runs are 5 minutes apart).
RECEIVE_VISIBILITY_SECONDS = 120


class DynamoReconcileStore:
    def __init__(self, table_name: str, client: Any, actor: str = "reconciliation") -> None:
        self._table = table_name
        self._client = client
        self._actor = actor  # updated_by of every write: the audit trail names who settled a payment

    def due(self, reason: str, cutoff: str | None, limit: int) -> list[Flagged]:
        found: list[Flagged] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX,
            "KeyConditionExpression": "reconcile_reason = :reason",
            "ExpressionAttributeValues": {":reason": {"S": reason}},
        }
        if cutoff is not None:
            kwargs["KeyConditionExpression"] += " AND reconcile_since < :cutoff"
            kwargs["ExpressionAttributeValues"][":cutoff"] = {"S": cutoff}
        while len(found) < limit:
            page = self._client.query(**kwargs, Limit=limit - len(found))
            found += [
                Flagged(i["payment_id"]["S"], i["reconcile_reason"]["S"], i["reconcile_since"]["S"])
                for i in page.get("Items", [])
            ]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    def get(self, payment_id: str) -> Record | None:
        item = self._client.get_item(
            TableName=self._table, Key={"payment_id": {"S": payment_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None

        def text(name: str) -> str | None:
            return item[name]["S"] if name in item and "S" in item[name] else None

        def number(name: str) -> int:
            return int(item[name]["N"]) if name in item and "N" in item[name] else 0

        return Record(
            payment_id=payment_id,
            status=PaymentStatus(item["status"]["S"]),
            amount=number("amount"),
            capture_method=text("capture_method") or "automatic",
            authorization_id=text("authorization_id"),
            amount_captured=number("amount_captured"),
            amount_refunded=number("amount_refunded"),
            reconcile_reason=text("reconcile_reason"),
            reconcile_since=text("reconcile_since"),
        )

    def apply(self, record: Record, resolution: Resolution, *, now: str) -> bool:
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":expected": {"S": record.status.value},
            ":now": {"S": now},
            ":actor": {"S": self._actor},
        }
        sets = ["updated_at = :now", "updated_by = :actor", "reconciled_at = :now"]
        if resolution.status is not None:
            sets.append("#status = :status")
            values[":status"] = {"S": resolution.status.value}
        for i, (name, value) in enumerate(sorted(resolution.changes.items())):
            names[f"#c{i}"] = name
            values[f":c{i}"] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
            sets.append(f"#c{i} = :c{i}")
        expression = "SET " + ", ".join(sets)
        if resolution.clear_flag:
            expression += " REMOVE reconcile_reason, reconcile_since"
        condition = "#status = :expected AND "
        if record.reconcile_reason is None:
            condition += "attribute_not_exists(reconcile_reason)"
        else:
            condition += "reconcile_reason = :reason"
            values[":reason"] = {"S": record.reconcile_reason}
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": record.payment_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


class SqsRollbackQueue:
    """The rollback DLQ: the EXPRESS void fallback sends ``{payment_id, authorization_id, ...}``."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self._url = queue_url
        self._client = client

    def receive(self, limit: int) -> list[QueuedRollback]:
        messages: list[QueuedRollback] = []
        while len(messages) < limit:
            batch = self._client.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(10, limit - len(messages)),
                WaitTimeSeconds=0,
                VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                try:
                    payment_id = str(json.loads(message["Body"])["payment_id"])
                except (ValueError, KeyError, TypeError):
                    continue  # not ours to interpret: it stays, and the DLQ depth alarm keeps calling a human
                messages.append(QueuedRollback(payment_id, message["ReceiptHandle"]))
        return messages

    def delete(self, receipt_handle: str) -> None:
        self._client.delete_message(QueueUrl=self._url, ReceiptHandle=receipt_handle)


def store_from_env() -> DynamoReconcileStore:
    import os

    from payeasy import wiring

    actor = f"function:{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'reconcile')}"
    return DynamoReconcileStore(os.environ["PAYMENTS_TABLE"], wiring.aws_client("dynamodb"), actor)


def queue_from_env() -> SqsRollbackQueue:
    import os

    from payeasy import wiring

    return SqsRollbackQueue(os.environ["ROLLBACK_QUEUE_URL"], wiring.aws_client("sqs"))
