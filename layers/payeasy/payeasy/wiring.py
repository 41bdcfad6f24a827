"""Builds the adapters from the environment the template gives every function (shared by all handlers).

Everything here is built once per execution environment, on first use: a cold start pays only for what its
first request needs, and warm invocations reuse clients, their connection pools and the cached secret.
"""

from __future__ import annotations

import json
import os
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from payeasy.routing import DEFAULT_EXPRESS_LIMITS, parse_limits

if TYPE_CHECKING:  # the runtime imports stay inside the functions: they cost ~0.3 s of a cold start
    import requests
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from payeasy.acquirer_http import HttpAcquirerClient
    from payeasy.repository import DynamoPaymentRepository

SECRET_MAX_AGE_SECONDS = 300  # a rotated key is picked up within five minutes


@cache
def aws_client(service: str) -> Any:
    """One boto3 client per service, all from boto3's default session.

    A client made from its own ``boto3.session.Session()`` (the Powertools default) scans botocore's data
    directory and parses the service model again (~70 ms each); from a shared session the next one is ~3 ms.
    """
    import boto3

    return boto3.client(service)  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def _secrets() -> SecretsProvider:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=aws_client("secretsmanager"))


def acquirer_api_key() -> str:
    """The acquirer key from Secrets Manager (cached for max_age); the secret is ``{"api_key": "..."}``."""
    raw = _secrets().get(os.environ["ACQUIRER_SECRET_ARN"], max_age=SECRET_MAX_AGE_SECONDS)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return str(json.loads(text)["api_key"]) if text.lstrip().startswith("{") else text


def acquirer_client() -> HttpAcquirerClient:
    # Built per invocation (cheap: the secret is cached) so a rotated key takes effect; the session is shared.
    from payeasy.acquirer_http import HttpAcquirerClient

    return HttpAcquirerClient(
        os.environ["ACQUIRER_BASE_URL"],
        acquirer_api_key(),
        read_timeout=float(os.environ.get("ACQUIRER_TIMEOUT_SECONDS", "5")),
        session=_session(),
    )


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    import requests

    return requests.Session()  # keep-alive: one TCP connection to the acquirer across warm invocations


@lru_cache(maxsize=1)
def payment_repository() -> DynamoPaymentRepository:
    from payeasy.repository import DynamoPaymentRepository

    return DynamoPaymentRepository(os.environ["PAYMENTS_TABLE"], aws_client("dynamodb"))


def express_limits() -> dict[str, int]:
    text = os.environ.get("EXPRESS_LIMITS", "")
    return parse_limits(text) if text.strip() else dict(DEFAULT_EXPRESS_LIMITS)


def reset() -> None:
    """Forgets every cached client, secret and repository (tests that swap the AWS backend between runs)."""
    if _session.cache_info().currsize:
        _session().close()
    for cached in (aws_client, _secrets, _session, payment_repository):
        cached.cache_clear()
