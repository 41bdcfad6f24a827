"""Domain rules: money, cards, the routing rule, statuses, request validation."""

from __future__ import annotations

import ast
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from payeasy import cards
from payeasy.errors import ConflictError
from payeasy.models import CreatePaymentRequest
from payeasy.money import Money, UnknownCurrency, exponent, normalize_currency
from payeasy.payment import Payment, execution_name, new_payment_id
from payeasy.routing import Workflow, choose_workflow, parse_limits
from payeasy.status import TERMINAL, PaymentStatus, can_transition
from pydantic import ValidationError

from .pan_scan import find_card_data

LAYER = Path(__file__).resolve().parents[2] / "layers" / "payeasy" / "payeasy"


@pytest.mark.parametrize(
    ("code", "exp"), [("JPY", 0), ("jpy", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3)]
)
def test_currency_exponents(code: str, exp: int) -> None:
    assert exponent(code) == exp


@pytest.mark.parametrize("code", ["XXX", "JP", "usdd", ""])
def test_unknown_currency_rejected(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        normalize_currency(code)


def test_money_major_units_are_exact() -> None:
    assert Money(1050, "usd").major() == Decimal("10.50")
    assert Money(5000, "JPY").major() == Decimal("5000")
    assert Money(1234, "KWD").major() == Decimal("1.234")
    assert str(Money(10, "USD")) == "0.10 USD"
    assert Money(10, "USD") + Money(20, "USD") == Money(30, "USD")
    with pytest.raises(ValueError, match="cannot combine"):
        Money(1, "USD") + Money(1, "JPY")


@pytest.mark.parametrize("bad", [10.0, 10.5, True, "10", Decimal("10")])
def test_money_is_never_a_float(bad: Any) -> None:
    with pytest.raises(TypeError):
        Money(bad, "USD")


MONEY_MODULES = ("money.py", "models.py", "payment.py", "routing.py", "tasks.py", "status.py")


def test_no_float_in_the_modules_that_handle_amounts() -> None:
    """No float() call and no float literal where amounts are computed (timeouts live elsewhere)."""
    for name in MONEY_MODULES:
        for node in ast.walk(ast.parse((LAYER / name).read_text())):
            assert not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "float"), name
            assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), name


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4242424242424242", True),
        ("4242424242424241", False),
        ("378282246310005", True),
        ("5555555555554444", True),
        ("4000000000001018", True),
        ("0", True),
        ("12a4", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert cards.luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", cards.Brand.VISA),
        ("5555555555554444", cards.Brand.MASTERCARD),
        ("2223003122003222", cards.Brand.MASTERCARD),
        ("378282246310005", cards.Brand.AMEX),
        ("3566002020360505", cards.Brand.JCB),
        ("36227206271667", cards.Brand.DINERS),
        ("6011111111111117", cards.Brand.DISCOVER),
        ("6200000000000005", cards.Brand.UNIONPAY),
        ("9999999999999995", cards.Brand.UNKNOWN),
    ],
)
def test_brand_detection(number: str, brand: cards.Brand) -> None:
    assert cards.detect_brand(number) is brand


def test_expiry_is_through_the_end_of_the_month() -> None:
    today = date(2026, 11, 23)
    assert not cards.expired(11, 2026, today)
    assert cards.expired(10, 2026, today)
    assert cards.expired(12, 2025, today)
    assert not cards.expired(1, 2027, today)


def test_cvc_length_depends_on_brand() -> None:
    assert cards.cvc_valid("1234", cards.Brand.AMEX)
    assert not cards.cvc_valid("123", cards.Brand.AMEX)
    assert cards.cvc_valid("123", cards.Brand.VISA)
    assert not cards.cvc_valid("12a", cards.Brand.VISA)


LIMITS = {"JPY": 100_000, "USD": 50_000}


@pytest.mark.parametrize(
    ("amount", "currency", "requires_3ds", "expected"),
    [
        (100_000, "JPY", False, Workflow.EXPRESS),  # at the limit
        (100_001, "JPY", False, Workflow.STANDARD),  # one yen over
        (1, "jpy", False, Workflow.EXPRESS),
        (1, "JPY", True, Workflow.STANDARD),  # 3-D Secure always goes STANDARD
        (50_000, "USD", False, Workflow.EXPRESS),
        (50_001, "USD", False, Workflow.STANDARD),
        (100, "EUR", False, Workflow.STANDARD),  # no limit configured for EUR
    ],
)
def test_routing_rule(amount: int, currency: str, requires_3ds: bool, expected: Workflow) -> None:
    assert (
        choose_workflow(amount=amount, currency=currency, requires_3ds=requires_3ds, limits=LIMITS)
        is expected
    )


def test_limits_parse_from_the_template_parameter() -> None:
    assert parse_limits("JPY=100000, usd=50000,") == {"JPY": 100_000, "USD": 50_000}
    with pytest.raises(UnknownCurrency):
        parse_limits("ZZZ=1")


def test_status_transitions() -> None:
    assert can_transition(PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED)
    assert can_transition(PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.CANCELED)
    assert not can_transition(PaymentStatus.FAILED, PaymentStatus.SUCCEEDED)
    assert not can_transition(PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED)
    assert {PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, PaymentStatus.FAILED} == TERMINAL


def test_forbidden_transition_is_a_409() -> None:
    payment = Payment(
        payment_id="pay_x",
        merchant_id="m",
        status=PaymentStatus.FAILED,
        amount=1,
        currency="JPY",
        capture_method="manual",
        card={},
        workflow="express",
        created=0,
        updated_at="",
    )
    with pytest.raises(ConflictError) as caught:
        payment.moved_to(PaymentStatus.SUCCEEDED, action="captured")
    assert caught.value.http_status == 409
    assert caught.value.body()["error"]["code"] == "payment_unexpected_state"


def test_payment_ids_are_unique_and_valid_execution_names() -> None:
    ids = {new_payment_id() for _ in range(1000)}
    assert len(ids) == 1000
    for pid in list(ids)[:20]:
        name = execution_name(pid)
        assert len(name) <= 80 and name.replace("_", "").isalnum()


def _card(**overrides: Any) -> dict[str, Any]:
    return {
        "number": "4242 4242 4242 4242",
        "exp_month": 12,
        "exp_year": 2034,
        "cvc": "123",
        "holder_name": "Hanako Yamada",
        **overrides,
    }


def _errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        CreatePaymentRequest.model_validate(body)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_valid_request_normalizes() -> None:
    request = CreatePaymentRequest.model_validate({"amount": 5000, "currency": "jpy", "card": _card()})
    assert request.currency == "JPY"
    assert request.card is not None and request.card.number == "4242424242424242"
    assert request.capture_method.value == "automatic"
    assert find_card_data(repr(request.card)) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 10.5, "currency": "jpy", "card": _card()}, "amount"),
        ({"amount": "100", "currency": "jpy", "card": _card()}, "amount"),
        ({"amount": 0, "currency": "jpy", "card": _card()}, "amount"),
        ({"amount": 100, "currency": "xyz", "card": _card()}, "currency"),
        ({"amount": 100, "currency": "jpy", "card": _card(number="4242424242424241")}, "card.number"),
        ({"amount": 100, "currency": "jpy", "card": _card(exp_month=13)}, "card.exp_month"),
        ({"amount": 100, "currency": "jpy", "card": _card(exp_month=1, exp_year=2020)}, "card.exp_year"),
        ({"amount": 100, "currency": "jpy", "card": _card(cvc="12")}, "card.cvc"),
        ({"amount": 100, "currency": "jpy", "card": _card(number="378282246310005", cvc="123")}, "card.cvc"),
        ({"amount": 100, "currency": "jpy"}, "payment_method"),
        (
            {"amount": 100, "currency": "jpy", "card": _card(), "payment_method": "tok_abcdefgh1"},
            "payment_method",
        ),
        ({"amount": 100, "currency": "jpy", "payment_method": "card_123"}, "payment_method"),
        ({"amount": 100, "currency": "jpy", "card": _card(), "capture_method": "later"}, "capture_method"),
        (
            {
                "amount": 100,
                "currency": "jpy",
                "card": _card(),
                "metadata": {f"k{i}": "v" for i in range(51)},
            },
            "metadata",
        ),
        ({"amount": 100, "currency": "jpy", "card": _card(), "metadata": {"k" * 41: "v"}}, "metadata"),
        ({"amount": 100, "currency": "jpy", "card": _card(), "metadata": {"k": "v" * 501}}, "metadata"),
        ({"amount": 100, "currency": "jpy", "card": _card(), "return_url": "javascript:x"}, "return_url"),
        ({"amount": 100, "currency": "jpy", "card": _card(), "merchant_id": "other"}, "merchant_id"),
    ],
)
def test_validation_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    errors = _errors(body)
    assert [loc for loc, _ in errors] == [field]
    assert find_card_data(errors) == []  # messages never echo a card number


def test_metadata_at_the_bounds_is_accepted() -> None:
    metadata = {f"{i:040d}": "v" * 500 for i in range(50)}
    request = CreatePaymentRequest.model_validate(
        {"amount": 1, "currency": "usd", "payment_method": "tok_abcdefgh12", "metadata": metadata}
    )
    assert len(request.metadata) == 50


def test_card_data_scanner_finds_pans_and_cvcs_only() -> None:
    assert find_card_data({"x": "4242 4242 4242 4242"}) == ["PAN ending 4242"]
    assert find_card_data('{"card": {"cvc": "123"}}') == ['CVC field "cvc":']
    assert find_card_data({"ts": 1795429332316, "id": "auth_0d2e69e562b84210", "last4": "4242"}) == []
