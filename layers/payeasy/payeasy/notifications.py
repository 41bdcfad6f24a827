"""Payment notifications, Lambda-free: the payment event, its webhook signature, delivery and resend.

The EXPRESS workflow builds the same event in the ``BuildPaymentEvent`` Pass state inside its
``SendNotifications`` Parallel (no Lambda on the payment's path); ``build_event`` is its Python twin, and
the workflow tests check that both agree. An event carries a payment summary only: never a card number, CVC
or token.

Signature (Stripe's scheme):
``PayEasy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
over the exact bytes of the body. A receiver recomputes it with its ``whsec_...`` secret and refuses a
timestamp older than the tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests

SIGNATURE_HEADER = "PayEasy-Signature"
EVENT_SOURCE = "payeasy.payments"  # EventBridge Source of every payment event
DEFAULT_TOLERANCE_SECONDS = 300
# One event type per payment status a notification is sent for.
EVENT_TYPES = frozenset(
    {
        "payment.succeeded",
        "payment.requires_capture",
        "payment.failed",
        "payment.canceled",
        "payment.requires_action",
        "payment.processing",
    }
)
CHANNELS = ("webhook", "customer_notice", "event")


class InvalidNotification(ValueError):
    """A notification request or queued message that cannot be processed (never retried usefully)."""


class WebhookDeliveryFailed(Exception):
    """5xx, 429, timeout or connection error: the merchant may accept a later try. (ASL Retry matches this
    class name.)"""


class WebhookRejected(Exception):
    """The endpoint answered another 4xx (bad signature on its side, gone...): queued for resend, not retried
    in the payment's path."""


class SignatureVerificationError(Exception):
    """A webhook signature header that does not match the body and secret, or is too old."""


# --- the event ---------------------------------------------------------------------------------------------


def event_id_for(payment_id: str, event_type: str) -> str:
    """Deterministic, so a resend or a re-run carries the same id (receivers deduplicate on it); the ASL
    computes the same with ``States.Hash(States.Format('{}:{}', payment_id, type), 'SHA-1')``."""
    return "evt_" + hashlib.sha1(f"{payment_id}:{event_type}".encode()).hexdigest()


def payment_summary(state: dict[str, Any]) -> dict[str, Any]:
    """The payment as an event shows it, from the workflow state (``payment_id``, ``amount``, ``currency``,
    ``capture_method``, ``card`` {brand, last4}, ``outcome``). Only brand and last4 of the card are read."""
    outcome = state["outcome"]
    card = state.get("card") or {}
    return {
        "id": state["payment_id"],
        "object": "payment",
        "status": outcome["status"],
        "amount": state["amount"],
        "amount_received": outcome.get("amount_captured") or 0,
        "currency": state["currency"],
        "capture_method": state.get("capture_method", "automatic"),
        "card": {"brand": card.get("brand"), "last4": card.get("last4")},
        "decline_code": outcome.get("decline_code"),
        "failure_code": outcome.get("failure_code"),
    }


def build_event(state: dict[str, Any], *, created: str) -> dict[str, Any]:
    """The payment event for the state's outcome; ``created`` is ISO 8601 (the payment API's format)."""
    summary = payment_summary(state)
    event_type = f"payment.{summary['status']}"
    if event_type not in EVENT_TYPES:
        raise InvalidNotification(f"outcome.status: no event for status {summary['status']!r}")
    return {
        "id": event_id_for(summary["id"], event_type),
        "object": "event",
        "type": event_type,
        "created": created,
        "merchant_id": state["merchant_id"],
        "data": {"object": summary},
    }


def customer_notice(event: dict[str, Any]) -> dict[str, Any]:
    """What the customer-notice topic carries: no card data at all (a mailer renders it)."""
    payment = event["data"]["object"]
    return {
        "type": event["type"],
        "event_id": event["id"],
        "merchant_id": event["merchant_id"],
        "payment_id": payment["id"],
        "status": payment["status"],
        "amount": payment["amount"],
        "currency": payment["currency"],
        "created": event["created"],
    }


def validate_event(event: Any) -> dict[str, Any]:
    """Checks the fields delivery relies on; raises ``InvalidNotification`` naming the field."""
    if not isinstance(event, dict):
        raise InvalidNotification("event: must be an object")
    for key in ("id", "type", "created", "merchant_id"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise InvalidNotification(f"event.{key}: required string")
    if event["type"] not in EVENT_TYPES:
        raise InvalidNotification(f"event.type: unknown type {event['type']!r}")
    payment = (event.get("data") or {}).get("object")
    if not isinstance(payment, dict) or not isinstance(payment.get("id"), str):
        raise InvalidNotification("event.data.object.id: required string")
    return event


@dataclass(frozen=True, slots=True)
class QueuedNotification:
    """A message of the notification queue: ``{"channel", "merchant_id", "event", "failed"?}``."""

    channel: str
    event: dict[str, Any]

    @property
    def merchant_id(self) -> str:
        return str(self.event["merchant_id"])

    @classmethod
    def parse(cls, body: str) -> QueuedNotification:
        try:
            message = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise InvalidNotification("body: not JSON") from exc
        if not isinstance(message, dict):
            raise InvalidNotification("body: must be an object")
        channel = message.get("channel")
        if channel not in CHANNELS:
            raise InvalidNotification(f"channel: must be one of {', '.join(CHANNELS)}")
        return cls(channel=str(channel), event=validate_event(message.get("event")))


# --- signing -----------------------------------------------------------------------------------------------


def encode_body(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int) -> str:
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def verify_signature(
    header: str,
    body: bytes,
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Checks a ``PayEasy-Signature`` header; answers its timestamp or raises ``SignatureVerificationError``.
    Any one ``v1`` matching is enough (several appear while a secret is being rolled)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureVerificationError("timestamp is not an integer") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureVerificationError("header needs t=<unix> and v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureVerificationError(f"timestamp outside the {tolerance_s} s tolerance")
    expected = compute_signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureVerificationError("no v1 signature matches")
    return timestamp


# --- delivery ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    url: str
    secret: str

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"WebhookEndpoint(url={self.url!r})"


class WebhookEndpoints(Protocol):
    def endpoint_for(self, merchant_id: str) -> WebhookEndpoint | None:
        """The merchant's endpoint, or None when it has none configured (nothing to send)."""
        ...


class NoticePublisher(Protocol):
    def publish_notice(self, notice: dict[str, Any]) -> str:
        """Publishes a customer notice; answers the message id."""
        ...


class EventPublisher(Protocol):
    def put_event(self, event: dict[str, Any]) -> str:
        """Puts the event on the payment event bus; answers the event id the bus gave it."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    status: int
    event_id: str


class WebhookSender:
    """Signed POST of an event; raises ``WebhookDeliveryFailed`` (retryable) or ``WebhookRejected``."""

    def __init__(self, session: requests.Session, *, timeout_s: float = 2.0) -> None:
        self.session = session
        self.timeout_s = timeout_s

    def send(self, endpoint: WebhookEndpoint, event: dict[str, Any], *, now: float | None = None) -> Delivery:
        body = encode_body(event)
        timestamp = int(time.time() if now is None else now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PayEasy-Webhooks/1.0",
            SIGNATURE_HEADER: signature_header(endpoint.secret, body, timestamp=timestamp),
        }
        try:
            reply = self.session.post(endpoint.url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise WebhookDeliveryFailed(f"timeout after {self.timeout_s} s") from exc
        except requests.RequestException as exc:
            raise WebhookDeliveryFailed(f"connection error: {type(exc).__name__}") from exc
        if reply.status_code >= 500 or reply.status_code == 429:
            raise WebhookDeliveryFailed(f"endpoint answered {reply.status_code}")
        if reply.status_code >= 300:
            raise WebhookRejected(f"endpoint answered {reply.status_code}")
        return Delivery(url=endpoint.url, status=reply.status_code, event_id=event["id"])


def deliver_webhook(
    merchant_id: str, event: dict[str, Any], endpoints: WebhookEndpoints, sender: WebhookSender
) -> dict[str, Any]:
    """Sends the event to the merchant's endpoint; a merchant without one is skipped, not failed."""
    endpoint = endpoints.endpoint_for(merchant_id)
    if endpoint is None:
        return {"channel": "webhook", "delivered": False, "reason": "no_endpoint", "event_id": event["id"]}
    delivery = sender.send(endpoint, event)
    return {"channel": "webhook", "delivered": True, "status": delivery.status, "event_id": event["id"]}


def resend(
    message: QueuedNotification,
    *,
    endpoints: WebhookEndpoints,
    sender: WebhookSender,
    notices: NoticePublisher,
    events: EventPublisher,
) -> dict[str, Any]:
    """One queued notification, sent again on its channel; any exception leaves it on the queue."""
    if message.channel == "webhook":
        return deliver_webhook(message.merchant_id, message.event, endpoints, sender)
    if message.channel == "customer_notice":
        return {
            "channel": message.channel,
            "message_id": notices.publish_notice(customer_notice(message.event)),
        }
    return {"channel": message.channel, "event_id": events.put_event(message.event)}
