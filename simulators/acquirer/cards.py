"""The simulator's test cards: Stripe's numbers where Stripe has the outcome, our own Luhn-valid ones else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestCard:
    number: str
    outcome: str  # a short name, shown in the README table
    decline_code: str | None = None  # authorize declines with this code
    three_d_secure: str = "not_required"  # not_required | frictionless | challenge
    authorize_slow: str | None = None  # "first": the first answer is slow, replays fast | "always"
    capture: str = "ok"  # ok | fail | slow_captured | slow_not_captured
    void_fails: bool = False


TEST_CARDS: dict[str, TestCard] = {
    card.number: card
    for card in (
        TestCard("4242424242424242", "approved"),
        TestCard("4000000000000002", "generic_decline", decline_code="generic_decline"),
        TestCard("4000000000009995", "insufficient_funds", decline_code="insufficient_funds"),
        TestCard("4000000000000069", "expired_card", decline_code="expired_card"),
        TestCard("4000000000000127", "incorrect_cvc", decline_code="incorrect_cvc"),
        TestCard("4000000000000119", "processing_error", decline_code="processing_error"),
        TestCard("4000000000003220", "3ds_challenge", three_d_secure="challenge"),
        TestCard("4000000000001018", "authorize_timeout_once", authorize_slow="first"),
        TestCard("4000000000001075", "authorize_timeout_always", authorize_slow="always"),
        TestCard("4000000000001026", "capture_fails", capture="fail"),
        TestCard("4000000000001034", "capture_timeout_captured", capture="slow_captured"),
        TestCard("4000000000001042", "capture_timeout_not_captured", capture="slow_not_captured"),
        TestCard("4000000000001059", "capture_and_void_fail", capture="fail", void_fails=True),
        TestCard("4000000000001067", "3ds_frictionless", three_d_secure="frictionless"),
    )
}

APPROVED = TestCard("", "approved")  # any other Luhn-valid number


def card_for(number: str) -> TestCard:
    return TEST_CARDS.get(number, APPROVED)


def bin_country(number: str) -> str:
    """Issuer country by BIN, coarsely: JCB (35) is Japanese, everything else US in test mode."""
    return "JP" if number.startswith("35") else "US"
