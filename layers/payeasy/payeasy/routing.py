"""Which workflow runs a payment: the pure rule the router applies after tokenizing the card."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from payeasy.money import normalize_currency


class Workflow(StrEnum):
    EXPRESS = "express"  # synchronous: the HTTP call waits for the final answer
    STANDARD = "standard"  # asynchronous: 3-D Secure, large amounts (its own issue)


# Largest amount (minor units) that may run synchronously, per currency; about 100,000 JPY everywhere.
DEFAULT_EXPRESS_LIMITS: dict[str, int] = {
    "JPY": 100_000,
    "USD": 100_000,  # 1,000.00
    "EUR": 100_000,
    "GBP": 100_000,
    "KWD": 300_000,  # 300.000
}


def parse_limits(text: str) -> dict[str, int]:
    """Parses the template's ``JPY=100000,USD=100000`` parameter into a limit table."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, _, value = item.partition("=")
        limits[normalize_currency(code)] = int(value)
    return limits


def choose_workflow(
    *, amount: int, currency: str, requires_3ds: bool, limits: Mapping[str, int] = DEFAULT_EXPRESS_LIMITS
) -> Workflow:
    """EXPRESS only when no 3-D Secure is needed and the amount is within that currency's limit.

    A currency without a configured limit always goes STANDARD: unknown risk is never rushed.
    """
    if requires_3ds:
        return Workflow.STANDARD
    limit = limits.get(normalize_currency(currency))
    if limit is None or amount > limit:
        return Workflow.STANDARD
    return Workflow.EXPRESS
