"""AWS adapters of the notification ports, built from the environment the template gives the functions.

- ``SecretWebhookEndpoints``: one Secrets Manager secret ``payeasy/<stage>/merchant-webhooks`` holding
  ``{"<merchant_id>": {"url": "...", "secret": "whsec_..."}, ...}``, read with Powertools Parameters and
  cached (a rotated secret or a new endpoint is picked up within ``SECRET_MAX_AGE_SECONDS``).
- ``SnsNoticePublisher`` (customer notices topic) and ``EventBridgePublisher`` (the payment event bus).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from payeasy import wiring
from payeasy.notifications import (
    EVENT_SOURCE,
    WebhookEndpoint,
    WebhookSender,
    encode_body,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

SECRET_MAX_AGE_SECONDS = 300


class EventPublishFailed(Exception):
    """PutEvents answered a failed entry."""


class SecretWebhookEndpoints:
    def __init__(self, secret_id: str, provider: SecretsProvider) -> None:
        self.secret_id = secret_id
        self.provider = provider

    def endpoint_for(self, merchant_id: str) -> WebhookEndpoint | None:
        raw = self.provider.get(self.secret_id, max_age=SECRET_MAX_AGE_SECONDS)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        entry = json.loads(text).get(merchant_id)
        if not isinstance(entry, dict) or not entry.get("url") or not entry.get("secret"):
            return None
        return WebhookEndpoint(url=str(entry["url"]), secret=str(entry["secret"]))


class SnsNoticePublisher:
    def __init__(self, topic_arn: str, sns: Any) -> None:
        self.topic_arn = topic_arn
        self.sns = sns

    def publish_notice(self, notice: dict[str, Any]) -> str:
        # Same message and attribute as the workflow's NotifyCustomer state (subscribers filter on
        # event_type).
        answer = self.sns.publish(
            TopicArn=self.topic_arn,
            Message=json.dumps(notice, separators=(",", ":")),
            MessageAttributes={"event_type": {"DataType": "String", "StringValue": notice["type"]}},
        )
        return str(answer["MessageId"])


class EventBridgePublisher:
    def __init__(self, bus_name: str, events: Any) -> None:
        self.bus_name = bus_name
        self.events = events

    def put_event(self, event: dict[str, Any]) -> str:
        answer = self.events.put_events(
            Entries=[
                {
                    "EventBusName": self.bus_name,
                    "Source": EVENT_SOURCE,
                    "DetailType": event["type"],
                    "Detail": encode_body(event).decode(),
                }
            ]
        )
        entry = answer["Entries"][0]
        if answer.get("FailedEntryCount") or "EventId" not in entry:
            raise EventPublishFailed(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
        return str(entry["EventId"])


@lru_cache(maxsize=1)
def _secrets() -> SecretsProvider:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=wiring.aws_client("secretsmanager"))


@lru_cache(maxsize=1)
def _session() -> Any:
    import requests

    return requests.Session()


def webhook_endpoints() -> SecretWebhookEndpoints:
    return SecretWebhookEndpoints(os.environ["MERCHANT_WEBHOOKS_SECRET_ARN"], _secrets())


def webhook_sender() -> WebhookSender:
    return WebhookSender(_session(), timeout_s=float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "2")))


def notice_publisher() -> SnsNoticePublisher:
    return SnsNoticePublisher(os.environ["CUSTOMER_NOTICES_TOPIC_ARN"], wiring.aws_client("sns"))


def event_publisher() -> EventBridgePublisher:
    return EventBridgePublisher(os.environ["PAYMENT_EVENTS_BUS_NAME"], wiring.aws_client("events"))


def reset() -> None:
    """Forgets the cached secret provider and HTTP session (tests that swap the AWS backend)."""
    for cached in (_secrets, _session):
        cached.cache_clear()
