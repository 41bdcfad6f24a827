"""Builds the adapters from the environment the template gives every function (shared by all handlers)."""

from __future__ import annotations

import json
import os
from functools import lru_cache

import requests
from aws_lambda_powertools.utilities import parameters

from payeasy.acquirer_http import HttpAcquirerClient
from payeasy.repository import DynamoPaymentRepository
from payeasy.routing import DEFAULT_EXPRESS_LIMITS, parse_limits

SECRET_MAX_AGE_SECONDS = 300  # a rotated key is picked up within five minutes


def acquirer_api_key() -> str:
    """The acquirer key from Secrets Manager (cached by Powertools); the secret is ``{"api_key": "..."}``."""
    raw = parameters.get_secret(os.environ["ACQUIRER_SECRET_ARN"], max_age=SECRET_MAX_AGE_SECONDS)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return str(json.loads(text)["api_key"]) if text.lstrip().startswith("{") else text


def acquirer_client() -> HttpAcquirerClient:
    # Built per invocation (cheap: the secret is cached) so a rotated key takes effect; the session is shared.
    return HttpAcquirerClient(
        os.environ["ACQUIRER_BASE_URL"],
        acquirer_api_key(),
        read_timeout=float(os.environ.get("ACQUIRER_TIMEOUT_SECONDS", "5")),
        session=_session(),
    )


@lru_cache(maxsize=1)
def _session() -> requests.Session:
    return requests.Session()


@lru_cache(maxsize=1)
def payment_repository() -> DynamoPaymentRepository:
    return DynamoPaymentRepository(os.environ["PAYMENTS_TABLE"])


def express_limits() -> dict[str, int]:
    text = os.environ.get("EXPRESS_LIMITS", "")
    return parse_limits(text) if text.strip() else dict(DEFAULT_EXPRESS_LIMITS)
