"""What every step puts on its X-Ray trace so a payment can be found and read: searchable annotations.

Keys are [A-Za-z0-9_] only (X-Ray silently drops others) and few (X-Ray indexes at most 50 per trace).
Values are ids, codes and bands: never card data, a task token or a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from payeasy.money import exponent

_KEY = re.compile(r"^[A-Za-z0-9_]{1,100}$")
# Upper bounds in major units (1 JPY, 1.00 USD, 1.000 KWD): currency-agnostic and coarse on purpose.
_BANDS = ((10, "lt_10"), (100, "10_100"), (1_000, "100_1k"), (10_000, "1k_10k"), (100_000, "10k_100k"))
# What X-Ray instruments: the AWS SDK and the HTTP calls (acquirer, merchant webhooks), which is all the
# functions do. A bare Tracer() patches every library the SDK knows, importing each one installed (sqlite3,
# ...): ~10 ms of every cold start for calls that never happen.
TRACED_MODULES = ("botocore", "requests")
ANNOTATION_KEYS = (
    "payment_id",
    "merchant_id",
    "workflow",
    "state",
    "amount_band",
    "outcome",
    "decline_code",
)


class Annotator(Protocol):
    def put_annotation(self, key: str, value: str) -> None: ...


def amount_band(amount: int, currency: str) -> str:
    """``5000 JPY`` -> ``1k_10k``; ``5000 USD`` (50.00) -> ``10_100``; unknown currency -> ``unknown``."""
    try:
        major = amount / 10 ** exponent(currency)
    except (KeyError, ValueError):
        return "unknown"
    return next((band for limit, band in _BANDS if major < limit), "gte_100k")


def step_annotations(
    *,
    state: str,
    event: Mapping[str, Any],
    outcome: Mapping[str, Any] | None = None,
    workflow: str | None = None,
) -> dict[str, str]:
    """The annotations of one workflow step (or API call) from its input ``event`` and its ``outcome``."""
    found: dict[str, str] = {"state": state}
    for key in ("payment_id", "merchant_id"):
        if event.get(key):
            found[key] = str(event[key])
    flow = workflow or event.get("workflow")
    if flow:
        found["workflow"] = str(flow)
    amount, currency = event.get("amount"), event.get("currency")
    if isinstance(amount, int) and isinstance(currency, str):
        found["amount_band"] = amount_band(amount, currency)
    if outcome:
        if outcome.get("status"):
            found["outcome"] = str(outcome["status"])
        if outcome.get("decline_code"):
            found["decline_code"] = str(outcome["decline_code"])
    return found


def annotate(tracer: Annotator, annotations: Mapping[str, str]) -> None:
    for key, value in annotations.items():
        if not _KEY.match(key):  # the SDK would drop it without a word: fail in tests instead
            raise ValueError(f"invalid X-Ray annotation key: {key!r}")
        tracer.put_annotation(key, value)
