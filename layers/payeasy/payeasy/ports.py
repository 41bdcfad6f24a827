"""The domain's view of the outside world: the acquirer and the payment store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

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
class ThreeDSAuthentication:
    """The acquirer's 3-D Secure authentication of a card for one payment."""

    id: str
    status: str  # challenge_required | authenticated | failed
    reference: str
    challenge_url: str | None = None
    trans_status: str | None = None  # Y | N | C
    eci: str | None = None
    authentication_value_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ThreeDSResult:
    """What authorize tells the acquirer after 3-D Secure (the acquirer checks it against its own record)."""

    authentication_id: str
    eci: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    authorization_id: str
    amount: int
    status: str


class AcquirerClient(Protocol):
    def tokenize(self, card: CardToVault, *, idempotency_key: str) -> TokenizedCard: ...

    def retrieve_token(self, token: str) -> TokenizedCard: ...

    def authorize(
        self,
        *,
        token: str,
        money: Money,
        reference: str,
        idempotency_key: str,
        three_d_secure: ThreeDSResult | None = None,
    ) -> Authorization:
        """A decline is an ``Authorization`` with status ``declined``, never an exception."""
        ...

    def create_3ds_authentication(
        self, *, token: str, money: Money, reference: str, return_url: str | None, idempotency_key: str
    ) -> ThreeDSAuthentication: ...

    def get_3ds_authentication(self, authentication_id: str) -> ThreeDSAuthentication: ...

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


@dataclass(frozen=True, slots=True)
class Challenge:
    """A 3-D Secure challenge the STANDARD workflow waits on (ThreeDSChallenges table, keyed by payment id).

    The task token is the capability to resume the workflow: it stays in this row and nowhere else."""

    payment_id: str
    authentication_id: str
    task_token: str = field(repr=False)
    state: str  # pending | completed | expired
    wait_until: int  # epoch seconds: the workflow stops waiting then (the table's TTL comes a day later)
    created: int


class ChallengeStore(Protocol):
    def put_pending(self, challenge: Challenge) -> None:
        """Stores (or replaces, for a retried wait task) the pending challenge of a payment."""
        ...

    def get(self, payment_id: str) -> Challenge | None: ...

    def complete(self, payment_id: str, authentication_id: str, *, now: int) -> None:
        """pending -> completed, only if still pending, for that authentication, and not expired;
        raises ``ConflictError`` otherwise (the first callback wins)."""
        ...

    def release(self, payment_id: str, authentication_id: str) -> None:
        """completed -> pending again: the workflow could not be told, so the ACS may retry the callback."""
        ...

    def expire(self, payment_id: str) -> None:
        """Marks the challenge expired: the workflow stopped waiting (timeout or heartbeat timeout)."""
        ...


class TaskCallbacks(Protocol):
    """Step Functions' callback API for a waiting task; ``TaskTokenExpired`` once it stopped waiting."""

    def heartbeat(self, task_token: str) -> None: ...

    def succeed(self, task_token: str, output: dict[str, Any]) -> None: ...

    def fail(self, task_token: str, *, error: str, cause: str) -> None: ...
