"""Money as an integer amount of a currency's minor unit. Never a float: a float cannot hold 0.10."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# ISO 4217 minor-unit exponents for the currencies we accept. A code missing here is rejected, never guessed.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AUD": 2, "BHD": 3, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3,
    "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PLN": 2, "SEK": 2, "SGD": 2, "THB": 2,
    "TND": 3, "TWD": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip


class UnknownCurrency(ValueError):
    pass


def normalize_currency(code: str) -> str:
    """Upper-cases a currency code and checks it is one we know; raises ``UnknownCurrency`` otherwise."""
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(f"unsupported currency {code!r}")
    return upper


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units (cents, yen, fils)
    currency: str

    def __post_init__(self) -> None:
        # bool is an int subclass; True is not one yen.
        if type(self.amount) is not int:
            raise TypeError(f"amount must be an int of minor units, got {type(self.amount).__name__}")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    def major(self) -> Decimal:
        """The amount in major units, exactly (1050 USD cents -> Decimal('10.50'))."""
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def __str__(self) -> str:
        return f"{self.major():f} {self.currency}"

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")
