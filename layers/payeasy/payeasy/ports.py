"""The domain's view of the outside world: the acquirer and the payment store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from payeasy.money import Money
from payeasy.payment import Payment


@dataclass(frozen=True, slots=True)
class CardToVault:
    """What the router sends the acquirer's vault, once; nothing else ever holds these fields."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str
    holder_name: str

    def __repr__(self) -> str:
        return f"CardToVault(last4={self.number[-4:]!r})"


@dataclass(frozen=True, slots=True)
class TokenizedCard:
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    bin_country: str | None
    three_d_secure: str  # "not_required" | "frictionless" | "challenge"

    @property
    def requires_3ds(self) -> bool:
        return self.three_d_secure != "not_required"


@dataclass(frozen=True, slots=True)
class Authorization:
    id: str
    status: str  # authorized | declined | captured | voided | capture_failed
    amount: int
    currency: str
    reference: str
    amount_captured: int = 0
    amount_refunded: int = 0
    decline_code: str | None = None
    message: str | None = None

    @property
    def approved(self) -> bool:
        return self.status in {"authorized", "captured"}


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    authorization_id: str
    amount: int
    status: str


class AcquirerClient(Protocol):
    def tokenize(self, card: CardToVault, *, idempotency_key: str) -> TokenizedCard: ...

    def retrieve_token(self, token: str) -> TokenizedCard: ...

    def authorize(self, *, token: str, money: Money, reference: str, idempotency_key: str) -> Authorization:
        """A decline is an ``Authorization`` with status ``declined``, never an exception."""
        ...

    def capture(self, authorization_id: str, *, amount: int | None, idempotency_key: str) -> Authorization:
        """A failed capture is status ``capture_failed``."""
        ...

    def void(self, authorization_id: str, *, idempotency_key: str) -> Authorization: ...

    def refund(self, authorization_id: str, *, amount: int, idempotency_key: str) -> Refund: ...

    def get_authorization(self, authorization_id: str) -> Authorization: ...

    def find_by_reference(self, reference: str) -> list[Authorization]: ...


class PaymentRepository(Protocol):
    def create(self, payment: Payment) -> None:
        """Stores a new payment; raises ``ConflictError`` if the id exists."""
        ...

    def get(self, payment_id: str) -> Payment | None: ...

    def save(self, payment: Payment, *, expected_status: str, expected_updated_at: str | None = None) -> None:
        """Overwrites ``payment`` only if the stored status (and ``updated_at`` when given) are unchanged
        (optimistic lock); raises ``ConflictError`` otherwise."""
        ...
