"""3-D Secure challenge end to end, in Chromium, through the whole stack as `make run` starts it.

A real `POST /payments` with the challenge card; the client polls until `requires_action`, opens
`next_action.url` (the simulator's ACS page) in the browser, and the cardholder approves, fails or abandons
it. The page's heartbeats and the outcome reach PayEasy as signed callbacks from the simulator, and the
browser comes back to the shop's return_url served by this test.

The stack runs on a scaled real clock (`--clock-scale`), so the STANDARD machine's production timeouts
(HeartbeatSeconds 60 of Wait3DSCallback) pass in seconds of wall time; the page's heartbeat interval is
scaled with it (simulator `--heartbeat-interval`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from playwright.sync_api import Page

from tests.app.callback_receiver import CallbackReceiver
from tests.app.stack import (
    ROOT,
    THREE_DS_CHALLENGE,
    PaymentsApi,
    StackProcess,
    authorizations_for,
    payment_body,
)

# Virtual seconds per real second. The scale shrinks every clock-measured limit, API Gateway's 29 s
# integration timeout too (2.4 s here), so it stays low enough for a loaded machine.
SCALE = 12.0
_WAIT_STATE = json.loads((ROOT / "statemachines/payment_standard.asl.json").read_text())["States"][
    "Wait3DSCallback"
]
# The production values, in wall seconds under SCALE: 60 s → 5 s, 600 s → 50 s.
HEARTBEAT_TIMEOUT_S = _WAIT_STATE["HeartbeatSeconds"] / SCALE
CHALLENGE_TIMEOUT_S = _WAIT_STATE["TimeoutSeconds"] / SCALE
HEARTBEAT_EVERY_S = HEARTBEAT_TIMEOUT_S / 6  # the page's interval: several heartbeats per timeout window
OTP = "123456"


def eventually[T](probe: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """Polls ``probe`` until it returns something other than None (as a merchant polls the API)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(every_s)


class Shop:
    """The merchant's side: the API client and the return_url page (served by a CallbackReceiver)."""

    def __init__(self, stack: StackProcess, receiver: CallbackReceiver) -> None:
        self.stack, self.receiver = stack, receiver
        self.api = PaymentsApi(stack.api_url)

    def return_url(self, order: str) -> str:
        return f"{self.receiver.url}/shop/return?order={order}"

    def pay_with_challenge(self, order: str) -> tuple[str, dict[str, Any]]:
        """POST /payments with the challenge card; polls until requires_action: (payment id, payment)."""
        answer = self.api.create(payment_body(THREE_DS_CHALLENGE, return_url=self.return_url(order)))
        assert answer.status_code == 202, answer.text
        assert answer.headers["Retry-After"] == "2"
        assert (answer.json()["status"], answer.json()["next_action"]) == ("processing", None)
        payment_id = str(answer.json()["id"])
        payment = self.wait_status(payment_id, {"requires_action"}, timeout_s=20)
        next_action = payment["next_action"]
        assert next_action["type"] == "redirect_to_url"
        assert next_action["return_url"] == self.return_url(order)
        assert next_action["url"].startswith(f"{self.stack.acquirer_url}/acs/challenge/3ds_")
        return payment_id, payment

    def payment(self, payment_id: str) -> dict[str, Any]:
        for _ in range(5):
            answer = self.api.get(payment_id)
            if answer.status_code != 504:  # a reader asks again (the 29 s limit is scaled too: SCALE)
                break
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_status(self, payment_id: str, wanted: set[str], timeout_s: float) -> dict[str, Any]:
        seen: list[str] = []

        def probe() -> dict[str, Any] | None:
            payment = self.payment(payment_id)
            if not seen or seen[-1] != payment["status"]:
                seen.append(payment["status"])
            return payment if payment["status"] in wanted else None

        try:
            return eventually(probe, timeout_s, f"{payment_id} {wanted}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; statuses seen: {seen}") from None

    def events(self, payment_id: str) -> list[dict[str, Any]]:
        answer = self.api.session.get(
            f"{self.stack.api_url}/payments/{payment_id}/events", headers=self.api.headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    def deliveries(self, payment_id: str, kind: str) -> list[dict[str, Any]]:
        """The simulator's log of its signed callbacks to PayEasy (each attempt with PayEasy's status)."""
        answer = requests.get(f"{self.stack.acquirer_url}/_sim/3ds/deliveries", timeout=10)
        answer.raise_for_status()
        return [
            d
            for d in answer.json()["data"]
            if d["payment_id"] == payment_id and d["type"] == f"challenge.{kind}"
        ]

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn: Any = boto3.client(
            "stepfunctions",
            endpoint_url=self.stack.endpoint_url,
            region_name=execution_arn.split(":")[3],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        return list(sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"])

    def authentication(self, url: str) -> dict[str, Any]:
        auth_id = url.rsplit("/", 1)[1]
        answer = requests.get(
            f"{self.stack.acquirer_url}/v1/3ds/authentications/{auth_id}",
            headers={"Authorization": "Bearer sk_test_acquirer_local"},
            timeout=10,
        )
        answer.raise_for_status()
        return dict(answer.json())


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    stack = StackProcess(clock_scale=SCALE, heartbeat_interval_s=HEARTBEAT_EVERY_S).start()
    try:
        stack.wait_for_acquirer()
        with CallbackReceiver() as receiver:
            shop = Shop(stack, receiver)
            warm_up(shop)
            yield shop
            shop.api.close()
    finally:
        code = stack.stop()
        assert code == 0, f"exit status {code}:\n" + "\n".join(stack.stderr_tail[-30:])
        assert stack.orphans == [], "processes outlived the stack's stop"


def warm_up(shop: Shop) -> None:
    """Cold starts cost the same wall time under any clock scale, so scaled they eat much of the 60 s
    heartbeat window. One challenge payment, left unanswered, starts the environments first: the router
    (also under the scaled 29 s API Gateway limit), Request3DS, Wait3DSCallback, and the callback function
    (one heartbeat, relayed by the simulator before it answers)."""
    eventually(lambda: shop.api.get("pay_warmup").status_code == 404 or None, 20, "the router answers")
    _, payment = shop.pay_with_challenge("warm-up")
    requests.post(payment["next_action"]["url"] + "/heartbeat", timeout=30).raise_for_status()


def open_challenge(page: Page, url: str) -> None:
    page.goto(url)
    assert OTP in page.inner_text("main")  # the page tells the sandbox OTP
    assert page.is_visible("#otp") and page.is_visible("#submit")


def back_at_the_shop(page: Page, shop: Shop, order: str, payment_id: str) -> None:
    page.wait_for_url(f"{shop.receiver.url}/shop/return?**")
    assert parse_qs(urlsplit(page.url).query) == {"order": [order], "payment_id": [payment_id]}
    assert page.inner_text("#shop") == "Back at the shop"


def status_story(events: list[dict[str, Any]]) -> list[str]:
    """created, then each status the payment moved to (the audit trail's status changes, in order)."""
    story = ["created"] if events and events[0]["type"] == "payment.created" else []
    for event in events[1:]:
        if event["type"] == "payment.status_changed":
            story.append(event["to_status"])
    return story


def test_approved_challenge_in_the_browser_succeeds_captured_and_audited(page: Page, shop: Shop) -> None:
    payment_id, payment = shop.pay_with_challenge("1001")
    url = payment["next_action"]["url"]
    open_challenge(page, url)

    # The page stays open for longer than HeartbeatSeconds: only its heartbeats keep the challenge alive.
    time.sleep(HEARTBEAT_TIMEOUT_S + 1)
    assert shop.payment(payment_id)["status"] == "requires_action"
    beats = shop.deliveries(payment_id, "heartbeat")
    assert len(beats) >= 4, beats
    assert {b["status"] for b in beats} == {200}, beats  # each one reached SendTaskHeartbeat

    page.fill("#otp", OTP)
    page.click("#submit")
    back_at_the_shop(page, shop, "1001", payment_id)

    done = shop.wait_status(payment_id, {"succeeded", "failed", "canceled"}, timeout_s=20)
    assert (done["status"], done["amount_received"], done["next_action"]) == ("succeeded", 5000, None), done
    [completed] = shop.deliveries(payment_id, "completed")
    assert completed["status"] == 200

    # The acquirer authorized with the 3-D Secure result (a challenge card is declined without a valid,
    # authenticated one for the same token and payment) and captured it.
    [authorization] = authorizations_for(shop.stack.acquirer_url, payment_id)
    assert (authorization["status"], authorization["amount_captured"]) == ("captured", 5000)
    assert [e["status"] for e in authorization["events"]] == ["authorized", "captured"]
    assert done["authorization_id"] == authorization["id"]
    auth = shop.authentication(url)
    assert (auth["status"], auth["trans_status"], auth["eci"]) == ("authenticated", "Y", "05")
    assert auth["reference"] == payment_id

    # The audit trail follows the table's stream: poll until it has caught up.
    def caught_up() -> list[dict[str, Any]] | None:
        found = shop.events(payment_id)
        return found if found and found[-1].get("to_status") == "succeeded" else None

    events = eventually(caught_up, 15, "the audit trail reaches succeeded")
    assert status_story(events) == ["created", "requires_action", "processing", "succeeded"], events

    # The workflow charged with the authentication result; its history never holds the card number.
    started = {e["execution_arn"] for e in events if e["type"] == "payment.workflow_started"}
    [execution_arn] = [arn for arn in started if arn.endswith(f":{payment_id}")]  # STANDARD: named by id
    history = shop.history(execution_arn)
    [charge] = [
        json.loads(e["taskScheduledEventDetails"]["parameters"])["Input"]
        for e in history
        if e["type"] == "TaskScheduled"
        and e["taskScheduledEventDetails"]["resource"].startswith("startExecution")
    ]
    assert charge["three_d_secure"]["authentication_id"] == auth["id"]
    assert (charge["three_d_secure"]["trans_status"], charge["three_d_secure"]["eci"]) == ("Y", "05")
    assert THREE_DS_CHALLENGE not in json.dumps(history, default=str)


def test_abandoned_challenge_is_canceled_when_the_heartbeats_stop(page: Page, shop: Shop) -> None:
    payment_id, payment = shop.pay_with_challenge("1002")
    url = payment["next_action"]["url"]
    open_challenge(page, url)
    eventually(lambda: len(shop.deliveries(payment_id, "heartbeat")) >= 2 or None, 10, "heartbeats")
    page.close()  # the cardholder walks away
    closed = time.monotonic()

    assert shop.payment(payment_id)["status"] == "requires_action"  # not before the heartbeat timeout
    done = shop.wait_status(payment_id, {"canceled", "failed", "succeeded"}, HEARTBEAT_TIMEOUT_S + 10)
    took = time.monotonic() - closed
    assert (done["status"], done["cancellation_reason"], done["next_action"]) == (
        "canceled",
        "3ds_abandoned",
        None,
    )
    # Canceled by the heartbeat timeout (last heartbeat + HeartbeatSeconds), long before TimeoutSeconds.
    assert (
        HEARTBEAT_TIMEOUT_S - HEARTBEAT_EVERY_S - 0.5 < took < HEARTBEAT_TIMEOUT_S + 5 < CHALLENGE_TIMEOUT_S
    )
    assert authorizations_for(shop.stack.acquirer_url, payment_id) == []
    assert shop.authentication(url)["status"] == "challenge_required"  # nobody answered the challenge


def test_wrong_otp_fails_the_payment_and_returns_to_the_shop(page: Page, shop: Shop) -> None:
    payment_id, payment = shop.pay_with_challenge("1003")
    url = payment["next_action"]["url"]
    open_challenge(page, url)
    page.fill("#otp", "000000")
    page.click("#submit")
    back_at_the_shop(page, shop, "1003", payment_id)

    done = shop.wait_status(payment_id, {"failed", "succeeded", "canceled"}, timeout_s=20)
    assert (done["status"], done["decline_code"], done["failure_code"]) == (
        "failed",
        "authentication_failed",
        "authentication_failed",
    )
    [completed] = shop.deliveries(payment_id, "completed")
    assert (completed["status"], completed["event"]["trans_status"]) == (200, "N")
    assert authorizations_for(shop.stack.acquirer_url, payment_id) == []  # never sent to authorization
    assert shop.authentication(url)["status"] == "failed"
