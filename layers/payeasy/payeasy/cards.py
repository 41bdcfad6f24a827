"""Card checks done before a card number leaves the router: Luhn, brand, expiry, CVC length."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

_DIGITS = re.compile(r"^\d{12,19}$")


class Brand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    JCB = "jcb"
    DINERS = "diners"
    DISCOVER = "discover"
    UNIONPAY = "unionpay"
    UNKNOWN = "unknown"


def normalize_number(number: str) -> str:
    """Drops the spaces and dashes people type; the rest must be 12-19 digits."""
    compact = re.sub(r"[\s-]", "", number)
    if not _DIGITS.match(compact):
        raise ValueError("card number must be 12 to 19 digits")
    return compact


def luhn_valid(number: str) -> bool:
    if not number.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid (used to build test card numbers)."""
    for candidate in "0123456789":
        if luhn_valid(partial + candidate):
            return candidate
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def detect_brand(number: str) -> Brand:
    """Brand from the IIN ranges the networks publish (prefix and length)."""
    n = number
    length = len(n)
    two, four, six = int(n[:2]), int(n[:4]), int(n[:6])
    if n.startswith("4") and length in (13, 16, 19):
        return Brand.VISA
    if (51 <= two <= 55 or 222100 <= six <= 272099) and length == 16:
        return Brand.MASTERCARD
    if two in (34, 37) and length == 15:
        return Brand.AMEX
    if 3528 <= four <= 3589 and 16 <= length <= 19:
        return Brand.JCB
    if (300 <= int(n[:3]) <= 305 or two in (36, 38, 39)) and 14 <= length <= 19:
        return Brand.DINERS
    if (n.startswith("6011") or n.startswith("65") or 644 <= int(n[:3]) <= 649) and 16 <= length <= 19:
        return Brand.DISCOVER
    if n.startswith("62") and 16 <= length <= 19:
        return Brand.UNIONPAY
    return Brand.UNKNOWN


def cvc_valid(cvc: str, brand: Brand) -> bool:
    """Amex prints 4 digits on the front; every other brand 3 on the back."""
    if not cvc.isdigit():
        return False
    return len(cvc) == 4 if brand is Brand.AMEX else len(cvc) == 3


def expired(exp_month: int, exp_year: int, today: date) -> bool:
    """A card is valid through the last day of its expiry month."""
    return (exp_year, exp_month) < (today.year, today.month)


def last4(number: str) -> str:
    return number[-4:]
