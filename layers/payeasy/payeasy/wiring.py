"""Builds the adapters from the environment the template gives every function (shared by all handlers).

Everything here is built once per execution environment, on first use: a cold start pays only for what its
first request needs, and warm invocations reuse clients, their connection pools and the cached secret.
"""

from __future__ import annotations

import importlib
import json
import os
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from payeasy.routing import DEFAULT_EXPRESS_LIMITS, parse_limits

if TYPE_CHECKING:  # the runtime imports stay inside the functions: they cost ~0.3 s of a cold start
    import requests
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from payeasy.acquirer_http import HttpAcquirerClient
    from payeasy.audit_store import DynamoAuditStore
    from payeasy.repository import DynamoPaymentRepository
    from payeasy.threeds_adapters import DynamoChallengeStore, StepFunctionsTaskCallbacks

SECRET_MAX_AGE_SECONDS = 300  # a rotated key is picked up within five minutes


@cache
def aws_client(service: str) -> Any:
    """One boto3 client per service, all from boto3's default session.

    A client made from its own ``boto3.session.Session()`` (the Powertools default) scans botocore's data
    directory and parses the service model again (~70 ms each); from a shared session the next one is ~3 ms.
    Per call (every one is on a payment's critical path): no client-side parameter validation, a documented
    production setting (~0.2 ms a DynamoDB call): our calls have fixed shapes, and the service still
    validates them.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(parameter_validation=False))  # type: ignore[call-overload]


def prime(*services: str) -> None:
    """Build at init what a handler would otherwise build on its first request: the boto3 clients of
    ``services`` (their service models parsed), the acquirer's HTTP session and the adapters' modules. A
    function on SnapStart takes its snapshot after init, so every environment restored from it starts with
    these (the router's first restored request: ~120 -> ~60 ms CPU). No network call is made here:
    connections do not survive a restore."""
    for service in services:
        aws_client(service)
    _session()
    for module in ("payeasy.acquirer_http", "payeasy.repository"):
        importlib.import_module(module)


@lru_cache(maxsize=1)
def _secrets() -> SecretsProvider:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=aws_client("secretsmanager"))


def acquirer_api_key() -> str:
    """The acquirer key from Secrets Manager (cached for max_age); the secret is ``{"api_key": "..."}``."""
    raw = _secrets().get(os.environ["ACQUIRER_SECRET_ARN"], max_age=SECRET_MAX_AGE_SECONDS)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return str(json.loads(text)["api_key"]) if text.lstrip().startswith("{") else text


def threeds_callback_secret() -> str:
    """The secret the ACS signs callbacks with (``{"secret": "..."}``), cached like the acquirer key."""
    raw = _secrets().get(os.environ["THREEDS_SECRET_ARN"], max_age=SECRET_MAX_AGE_SECONDS)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return str(json.loads(text)["secret"]) if text.lstrip().startswith("{") else text


@lru_cache(maxsize=1)
def challenge_store() -> DynamoChallengeStore:
    from payeasy.threeds_adapters import DynamoChallengeStore

    return DynamoChallengeStore(os.environ["CHALLENGES_TABLE"], aws_client("dynamodb"))


@lru_cache(maxsize=1)
def task_callbacks() -> StepFunctionsTaskCallbacks:
    from payeasy.threeds_adapters import StepFunctionsTaskCallbacks

    return StepFunctionsTaskCallbacks(aws_client("stepfunctions"))


def acquirer_client() -> HttpAcquirerClient:
    # Built per invocation (cheap: the secret is cached) so a rotated key takes effect; the session is shared.
    from payeasy.acquirer_http import HttpAcquirerClient

    return HttpAcquirerClient(
        os.environ["ACQUIRER_BASE_URL"],
        acquirer_api_key(),
        read_timeout=float(os.environ.get("ACQUIRER_TIMEOUT_SECONDS", "5")),
        session=_session(),
        observe=_acquirer_metrics,
    )


def _acquirer_metrics(latency_ms: float, status: int | None) -> None:
    """AcquirerLatency (and AcquirerErrors for timeouts/5xx) as EMF metrics of the calling handler; its
    ``@metrics.log_metrics`` flushes them (Powertools' Metrics share one registry per process)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics()
    metrics.add_metric(name="AcquirerLatency", unit=MetricUnit.Milliseconds, value=round(latency_ms, 1))
    if status is None or status >= 500:
        metrics.add_metric(name="AcquirerErrors", unit=MetricUnit.Count, value=1)


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    import requests

    return requests.Session()  # keep-alive: one TCP connection to the acquirer across warm invocations


@lru_cache(maxsize=1)
def payment_repository() -> DynamoPaymentRepository:
    from payeasy.repository import DynamoPaymentRepository

    return DynamoPaymentRepository(os.environ["PAYMENTS_TABLE"], aws_client("dynamodb"), stamp=write_stamp)


def write_stamp(payment: Any) -> dict[str, str]:
    """``updated_by`` and ``trace_id`` for the audit trail. The API (PAYEASY_ACTOR=api) acts for the merchant
    whose key it was called with; other functions are named by their Lambda function name."""
    if os.environ.get("PAYEASY_ACTOR") == "api":
        stamp = {"updated_by": f"api:{payment.merchant_id}"}
    else:
        stamp = {"updated_by": f"function:{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'unknown')}"}
    root = trace_root(os.environ.get("_X_AMZN_TRACE_ID", ""))
    if root:
        stamp["trace_id"] = root
    return stamp


def trace_root(header: str) -> str | None:
    """``Root=1-...;Parent=...;Sampled=1`` -> ``1-...`` (the X-Ray trace id)."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


@lru_cache(maxsize=1)
def audit_store() -> DynamoAuditStore:
    from payeasy.audit_store import DynamoAuditStore

    return DynamoAuditStore(os.environ["PAYMENT_EVENTS_TABLE"], aws_client("dynamodb"))


def express_limits() -> dict[str, int]:
    text = os.environ.get("EXPRESS_LIMITS", "")
    return parse_limits(text) if text.strip() else dict(DEFAULT_EXPRESS_LIMITS)


def reset() -> None:
    """Forgets every cached client, secret and repository (tests that swap the AWS backend between runs)."""
    if _session.cache_info().currsize:
        _session().close()
    for cached in (aws_client, _secrets, _session, payment_repository, audit_store):
        cached.cache_clear()
    for cached in (challenge_store, task_callbacks):
        cached.cache_clear()
