"""Request and response models of the payment API (pydantic v2; the router's OpenAPI comes from them)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from payeasy import cards
from payeasy.money import normalize_currency
from payeasy.status import PaymentStatus

# Stripe's metadata bounds.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
MAX_AMOUNT = 99_999_999_999  # a bound on input, not a business limit
_TOKEN = re.compile(r"^tok_[A-Za-z0-9]{8,64}$")

Amount = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT, description="Minor units (JPY has none).")]


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CardInput(_Strict):
    number: str = Field(description="Card number (PAN); tokenized before anything else and never stored.")
    exp_month: int = Field(strict=True, ge=1, le=12)
    exp_year: int = Field(strict=True, ge=2000, le=2100)
    cvc: str = Field(description="3 digits, 4 for American Express.")
    holder_name: str = Field(min_length=1, max_length=100)

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        number = cards.normalize_number(value)  # messages never repeat the input
        if not cards.luhn_valid(number):
            raise ValueError("card number is invalid (Luhn check failed)")
        return number

    @field_validator("exp_year")
    @classmethod
    def _not_expired(cls, value: int, info: ValidationInfo) -> int:
        month = info.data.get("exp_month")
        if isinstance(month, int) and cards.expired(month, value, datetime.now(UTC).date()):
            raise ValueError("card has expired")
        return value

    @field_validator("cvc")
    @classmethod
    def _cvc(cls, value: str, info: ValidationInfo) -> str:
        number = info.data.get("number")
        brand = cards.detect_brand(number) if isinstance(number, str) else cards.Brand.UNKNOWN
        if brand is cards.Brand.UNKNOWN:
            ok = value.isdigit() and len(value) in (3, 4)
        else:
            ok = cards.cvc_valid(value, brand)
        if not ok:
            raise ValueError("cvc must be 4 digits for amex, 3 digits otherwise")
        return value

    def __repr__(self) -> str:  # a stray log of the model must not print the PAN or CVC
        return f"CardInput(last4={self.number[-4:]!r}, exp={self.exp_month:02d}/{self.exp_year})"

    __str__ = __repr__


class CreatePaymentRequest(_Strict):
    amount: Amount
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. jpy, usd.")
    card: CardInput | None = None
    payment_method: str | None = Field(
        default=None, validate_default=True, description="A tok_... token instead of card (exactly one)."
    )
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    description: str | None = Field(default=None, max_length=1000)
    metadata: dict[str, str] = Field(default_factory=dict)
    return_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("payment_method")
    @classmethod
    def _exactly_one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_card = info.data.get("card") is not None
        card_invalid = "card" not in info.data  # already reported under card; do not blame this field too
        if value is None and not has_card and not card_invalid:
            raise ValueError("provide exactly one of card or payment_method")
        if value is not None and has_card:
            raise ValueError("provide exactly one of card or payment_method, not both")
        if value is not None and not _TOKEN.match(value):
            raise ValueError("payment_method must be a tok_... token")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > METADATA_MAX_KEYS:
            raise ValueError(f"metadata can have at most {METADATA_MAX_KEYS} keys")
        for key, item in value.items():
            if not key or len(key) > METADATA_KEY_MAX:
                raise ValueError(f"metadata keys must be 1 to {METADATA_KEY_MAX} characters")
            if len(item) > METADATA_VALUE_MAX:
                raise ValueError(f"metadata values must be at most {METADATA_VALUE_MAX} characters")
        return value


class CreatePaymentMethodRequest(_Strict):
    """Tokenize a card without paying (Stripe's PaymentMethod): pay later with ``payment_method``."""

    card: CardInput


class PaymentMethodView(BaseModel):
    id: str = Field(description="tok_...: pass it as payment_method to POST /payments")
    object: Literal["payment_method"] = "payment_method"
    card: dict[str, Any] = Field(description="brand, last4, exp_month, exp_year, country, three_d_secure")


class CapturePaymentRequest(_Strict):
    amount_to_capture: Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)] | None = Field(
        default=None, description="Capture less than authorized; the rest is released."
    )


class CancelPaymentRequest(_Strict):
    cancellation_reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = (
        None
    )


class RefundRequest(_Strict):
    amount: Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)] | None = Field(
        default=None, description="Omit for a full refund of what is left."
    )
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None


class CardSummary(BaseModel):
    """All we keep of a card: the acquirer's token and what a receipt may show."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    bin_country: str | None = None
    three_d_secure: str = "not_required"


class NextAction(BaseModel):
    """What the cardholder must do before the payment can go on (3-D Secure challenge)."""

    type: Literal["redirect_to_url"] = "redirect_to_url"
    url: str = Field(description="The 3-D Secure challenge page to send the cardholder's browser to.")
    return_url: str | None = Field(default=None, description="Where the browser lands afterwards.")


class Reconciliation(BaseModel):
    """Why the reconciliation job will look at this payment (docs/failure-handling.md)."""

    reason: Literal["void_pending", "capture_unknown", "needs_attention", "authorization_expiry"]
    since: str


class PaymentView(BaseModel):
    """A payment as the API shows it."""

    id: str
    object: Literal["payment"] = "payment"
    status: PaymentStatus
    amount: int
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    currency: str
    capture_method: CaptureMethod
    card: dict[str, Any] = Field(description="brand, last4, exp_month, exp_year, country")
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    authorization_id: str | None = None
    next_action: NextAction | None = Field(default=None, description="Only while status is requires_action.")
    cancellation_reason: str | None = Field(default=None, description="e.g. 3ds_abandoned")
    reconciliation: Reconciliation | None = Field(
        default=None, description="Set while the reconciliation job has work on this payment."
    )
    needs_attention: bool = Field(default=False, description="A system error stopped its workflow.")
    workflow: str
    created: int
    updated_at: str

    @model_validator(mode="after")
    def _lowercase_currency(self) -> Self:
        self.currency = self.currency.lower()  # Stripe prints codes lower-case
        return self


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None
    decline_code: str | None = None
    payment_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
