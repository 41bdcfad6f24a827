"""3-D Secure adapters: the ThreeDSChallenges table (ChallengeStore) and Step Functions' callback API
(TaskCallbacks). boto3 default clients: AWS_ENDPOINT_URL decides where they go."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from botocore.exceptions import ClientError

from payeasy.errors import ConflictError, TaskTokenExpired
from payeasy.ports import Challenge
from payeasy.threeds import challenge_row_ttl

# What Step Functions answers once it no longer waits for a token (moto answers InvalidToken after a
# heartbeat timeout where AWS answers TaskTimedOut; both mean the same to us).
_EXPIRED_TOKEN_ERRORS = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


class DynamoChallengeStore:
    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def put_pending(self, challenge: Challenge) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "payment_id": {"S": challenge.payment_id},
                "authentication_id": {"S": challenge.authentication_id},
                "task_token": {"S": challenge.task_token},
                "state": {"S": "pending"},
                "wait_until": {"N": str(challenge.wait_until)},
                "created": {"N": str(challenge.created)},
                "expires_at": {"N": str(challenge_row_ttl(challenge))},  # the table's TTL attribute
            },
            # A retried wait task replaces its own pending row; a finished challenge is never reopened.
            ConditionExpression="attribute_not_exists(payment_id) OR #state = :pending",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":pending": {"S": "pending"}},
        )

    def get(self, payment_id: str) -> Challenge | None:
        item = self._client.get_item(
            TableName=self._table, Key={"payment_id": {"S": payment_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return Challenge(
            payment_id=item["payment_id"]["S"],
            authentication_id=item["authentication_id"]["S"],
            task_token=item["task_token"]["S"],
            state=item["state"]["S"],
            wait_until=int(item["wait_until"]["N"]),
            created=int(item["created"]["N"]),
        )

    def complete(self, payment_id: str, authentication_id: str, *, now: int) -> None:
        self._move(
            payment_id,
            "completed",
            condition="#state = :pending AND authentication_id = :auth AND wait_until > :now",
            values={":pending": {"S": "pending"}, ":auth": {"S": authentication_id}, ":now": {"N": str(now)}},
        )

    def release(self, payment_id: str, authentication_id: str) -> None:
        self._move(
            payment_id,
            "pending",
            condition="#state = :completed AND authentication_id = :auth",
            values={":completed": {"S": "completed"}, ":auth": {"S": authentication_id}},
        )

    def expire(self, payment_id: str) -> None:
        with contextlib.suppress(ConflictError):  # the row is gone: nothing left to mark
            self._move(payment_id, "expired", condition="attribute_exists(payment_id)", values={})

    def _move(self, payment_id: str, target: str, *, condition: str, values: dict[str, Any]) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"payment_id": {"S": payment_id}},
                UpdateExpression="SET #state = :target",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":target": {"S": target}, **values},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConflictError(
                    "The 3-D Secure challenge was already answered or has expired.",
                    code="challenge_completed",
                    payment_id=payment_id,
                ) from exc
            raise


class StepFunctionsTaskCallbacks:
    def __init__(self, client: Any) -> None:
        self._client = client

    def heartbeat(self, task_token: str) -> None:
        self._call(self._client.send_task_heartbeat, taskToken=task_token)

    def succeed(self, task_token: str, output: dict[str, Any]) -> None:
        self._call(self._client.send_task_success, taskToken=task_token, output=json.dumps(output))

    def fail(self, task_token: str, *, error: str, cause: str) -> None:
        self._call(self._client.send_task_failure, taskToken=task_token, error=error, cause=cause)

    @staticmethod
    def _call(method: Any, **kwargs: Any) -> None:
        try:
            method(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXPIRED_TOKEN_ERRORS:
                # The token is deliberately not in the message: it must never reach a log line.
                raise TaskTokenExpired("Step Functions no longer waits for this task") from None
            # Any other failure: re-raised without botocore's message, which may quote the token.
            code = exc.response.get("Error", {}).get("Code")
            raise TaskCallbackFailed(f"{method.__name__}: {code}") from None


class TaskCallbackFailed(Exception):
    """Step Functions refused a callback for another reason (throttling, service error): worth a retry."""
