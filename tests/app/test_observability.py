"""Annotations every step puts on its trace: the keys X-Ray accepts, bands instead of amounts."""

from __future__ import annotations

import pytest
from payeasy.observability import ANNOTATION_KEYS, amount_band, annotate, step_annotations


@pytest.mark.parametrize(
    ("amount", "currency", "band"),
    [
        (5, "JPY", "lt_10"),
        (5000, "JPY", "1k_10k"),
        (100_000, "JPY", "gte_100k"),
        (99_999, "JPY", "10k_100k"),
        (5000, "USD", "10_100"),
        (1_000, "KWD", "lt_10"),  # 1.000 KWD
        (5000, "XXX", "unknown"),
    ],
)
def test_amount_band_is_in_major_units(amount: int, currency: str, band: str) -> None:
    assert amount_band(amount, currency) == band


def test_step_annotations_from_input_and_outcome() -> None:
    event = {
        "payment_id": "pay_1",
        "merchant_id": "merchant_a",
        "amount": 5000,
        "currency": "JPY",
        "workflow": "express",
        "card": {"token": "tok_x", "last4": "4242"},
    }
    outcome = {"status": "failed", "decline_code": "insufficient_funds"}
    found = step_annotations(state="AuthorizePayment", event=event, outcome=outcome)
    assert found == {
        "state": "AuthorizePayment",
        "payment_id": "pay_1",
        "merchant_id": "merchant_a",
        "workflow": "express",
        "amount_band": "1k_10k",
        "outcome": "failed",
        "decline_code": "insufficient_funds",
    }
    assert set(found) <= set(ANNOTATION_KEYS)
    assert "tok_x" not in repr(found) and "4242" not in repr(found)


def test_annotate_refuses_keys_xray_would_drop() -> None:
    seen: dict[str, object] = {}

    class Tracer:
        def put_annotation(self, key: str, value: object) -> None:
            seen[key] = value

    annotate(Tracer(), {"payment_id": "pay_1"})
    assert seen == {"payment_id": "pay_1"}
    with pytest.raises(ValueError, match="payment-id"):
        annotate(Tracer(), {"payment-id": "pay_1"})
