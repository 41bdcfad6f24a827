"""Test helper: finds card data (a PAN or a CVC) anywhere in a value, so tests can prove it is never kept."""

from __future__ import annotations

import json
import re
from typing import Any

# Card numbers start 2-6 (MII); epoch-millisecond timestamps (17...) and ids inside words are not PANs.
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z.])[2-6](?:[ -]?\d){12,18}(?![0-9A-Za-z.])")
_CVC_FIELD = re.compile(r'"(?:cvc|cvv|cvc2|card_verification)"\s*:', re.IGNORECASE)
# Ids whose digit groups can look like a dashed card number by chance (a UUID's "...-4123-8123-4567..." is
# Luhn-valid about once in ten thousand): request ids, execution names, X-Ray trace ids. Blanked first.
_RANDOM_IDS = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r"|\b1-[0-9a-f]{8}-[0-9a-f]{24}\b"  # X-Ray trace id
    # X-Ray segment ids (16 hex digits: all-decimal and Luhn-valid ~1 in 40,000) where they are named as such
    r'|Parent=[0-9a-f]{16}\b|"(?:id|parent_id|segment_id|subsegment_id)":\s*"[0-9a-f]{16}"'
)


def _luhn(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char) * (2 if index % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def find_card_data(value: Any) -> list[str]:
    """Every Luhn-valid 13-19 digit run (spaces/dashes allowed) and every CVC field in ``value``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _RANDOM_IDS.sub("<id>", text)
    found = []
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            found.append(f"PAN ending {digits[-4:]}")
    found += [f"CVC field {m.group()}" for m in _CVC_FIELD.finditer(text)]
    return found
