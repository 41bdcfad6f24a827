"""The ACS challenge page in a real browser (Chromium): its script's heartbeats reach the callback receiver,
and submitting the OTP (right, wrong) or cancelling lands on the shop's return_url with the payment id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import Page

from simulators.acquirer.core import Acquirer
from simulators.acquirer.server import AcquirerServer
from tests.app.callback_receiver import CallbackReceiver, verify

KEY = "sk_test_acquirer_browser"
SECRET = "whsec_test_3ds_browser"
CHALLENGE_CARD = "4000000000003220"


class Acs:
    def __init__(self, server: AcquirerServer, receiver: CallbackReceiver) -> None:
        self.url, self.receiver = server.url, receiver
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {KEY}"

    def challenge(self, reference: str) -> dict[str, Any]:
        card = {"number": CHALLENGE_CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        token = self.http.post(f"{self.url}/v1/tokens", json=card, timeout=10).json()["id"]
        body = {
            "token": token,
            "amount": 150000,
            "currency": "JPY",
            "reference": reference,
            "return_url": f"{self.receiver.url}/shop/return?order=42",
        }
        answer = self.http.post(f"{self.url}/v1/3ds/authentications", json=body, timeout=10)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def status(self, auth_id: str) -> str:
        return str(self.http.get(f"{self.url}/v1/3ds/authentications/{auth_id}", timeout=10).json()["status"])


@pytest.fixture
def acs() -> Iterator[Acs]:
    with CallbackReceiver() as receiver:
        acquirer = Acquirer(api_keys={KEY}, threeds_secret=SECRET)
        with AcquirerServer(acquirer, port=0) as server:
            acquirer.callback_base_url = receiver.url
            yield Acs(server, receiver)


def open_challenge(page: Page, acs: Acs, reference: str) -> tuple[dict[str, Any], list[str]]:
    """Opens the challenge page with 0.2 s heartbeats; returns the authentication and every URL requested."""
    auth = acs.challenge(reference)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(auth["challenge_url"] + "?heartbeat=0.2")
    assert "123456" in page.inner_text("main")  # the page tells the sandbox OTP
    return auth, requested


def landed(page: Page, acs: Acs, reference: str) -> None:
    page.wait_for_url(f"{acs.receiver.url}/shop/return?**")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"order": ["42"], "payment_id": [reference]}
    assert page.inner_text("#shop") == "Back at the shop"


def completed_event(acs: Acs) -> dict[str, Any]:
    [callback] = acs.receiver.of_type("challenge.completed")
    assert verify(callback.headers["payeasy-3ds-signature"], callback.body, SECRET, now=time.time())
    return callback.json()


def test_heartbeats_then_the_right_otp_returns_to_the_shop(page: Page, acs: Acs) -> None:
    auth, requested = open_challenge(page, acs, "pay_browser_ok")
    beats = acs.receiver.wait_for("challenge.heartbeat", count=2, timeout_s=10)
    for beat in beats:
        assert beat.path == "/payments/pay_browser_ok/3ds/callback"
        assert verify(beat.headers["payeasy-3ds-signature"], beat.body, SECRET, now=time.time())
        assert beat.json()["authentication_id"] == auth["id"]
    page.fill("#otp", "123456")
    page.click("#submit")
    landed(page, acs, "pay_browser_ok")
    event = completed_event(acs)
    assert (event["type"], event["trans_status"], event["eci"]) == ("challenge.completed", "Y", "05")
    assert acs.status(auth["id"]) == "authenticated"
    # Only the simulator and the shop were contacted: the page loads nothing from elsewhere.
    assert {urlsplit(url).netloc for url in requested} <= {
        urlsplit(acs.url).netloc,
        urlsplit(acs.receiver.url).netloc,
    }
    count = len(acs.receiver.of_type("challenge.heartbeat"))
    time.sleep(0.5)
    assert len(acs.receiver.of_type("challenge.heartbeat")) == count  # the page is gone: no more beats


def test_a_wrong_otp_fails_and_returns_to_the_shop(page: Page, acs: Acs) -> None:
    auth, _ = open_challenge(page, acs, "pay_browser_bad")
    page.fill("#otp", "999999")
    page.click("#submit")
    landed(page, acs, "pay_browser_bad")
    event = completed_event(acs)
    assert (event["trans_status"], event["eci"]) == ("N", None)
    assert acs.status(auth["id"]) == "failed"


def test_cancel_fails_and_returns_to_the_shop(page: Page, acs: Acs) -> None:
    auth, _ = open_challenge(page, acs, "pay_browser_cancel")
    page.click("#cancel")  # no OTP typed: cancel skips the form's validation
    landed(page, acs, "pay_browser_cancel")
    assert completed_event(acs)["trans_status"] == "N"
    assert acs.status(auth["id"]) == "failed"


def test_a_second_tab_cannot_complete_it_again(page: Page, acs: Acs) -> None:
    auth, _ = open_challenge(page, acs, "pay_browser_twice")
    other = page.context.new_page()
    other.goto(auth["challenge_url"])
    page.fill("#otp", "123456")
    page.click("#submit")
    landed(page, acs, "pay_browser_twice")
    other.fill("#otp", "123456")
    other.click("#submit")
    assert other.inner_text("#title") == "Already completed"
    assert acs.status(auth["id"]) == "authenticated" and len(acs.receiver.of_type("challenge.completed")) == 1
    other.goto(auth["challenge_url"])  # opening it again: the same page
    assert other.inner_text("#title") == "Already completed"


def test_an_unknown_challenge_is_a_404_page(page: Page, acs: Acs) -> None:
    answer = page.goto(f"{acs.url}/acs/challenge/3ds_unknown")
    assert answer is not None and answer.status == 404
    assert page.inner_text("#title") == "Not found"
