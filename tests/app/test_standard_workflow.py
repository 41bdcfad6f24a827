"""The STANDARD workflow (3-D Secure, large amounts) through the whole local stack: the payment API, the real
STANDARD and EXPRESS ASL, the real handlers in worker processes, a virtual clock, and the acquirer simulator.

The test plays the ACS (the 3-D Secure server's browser side): it decides the simulator's authentication
(approved or failed, as the challenge page's form would) and posts the signed callback to
``POST /payments/{id}/3ds/callback`` itself. The clock jumps by itself only over waits and retry backoffs;
timeouts and heartbeats fire only when a test calls ``clock.advance``: exactly where the test says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from payeasy.threeds import SIGNATURE_HEADER, sign
from payeasy.threeds_adapters import DynamoChallengeStore

from local.clock import VirtualClock

from .pan_scan import find_card_data
from .stack import APPROVED, THREE_DS_CHALLENGE, AppStack, PaymentsApi, payment_body, running_app, wait_for

FRICTIONLESS = "4000000000001067"
SECRET = "whsec_test_3ds_local_5b1e9c0d7a"  # the template's default ThreeDSCallbackSecretValue
RETURN_URL = "https://shop.example/return"
HEARTBEAT_SECONDS = 60
TIMEOUT_SECONDS = 600
FINAL = ("succeeded", "failed", "canceled", "requires_capture")


@pytest.fixture(scope="module")
def app() -> Iterator[AppStack]:
    with running_app() as stack:
        yield stack


@pytest.fixture(scope="module")
def api_answers() -> list[str]:
    """Every API response body a test saw (for the task-token scan)."""
    return []


@pytest.fixture
def api(app: AppStack, api_answers: list[str]) -> Iterator[PaymentsApi]:
    client = app.api
    client.session.hooks["response"].append(lambda r, *_, **__: api_answers.append(r.text + str(r.headers)))
    yield client
    client.close()


@pytest.fixture
def clock(app: AppStack) -> VirtualClock:
    clock = app.runtime.clock
    assert isinstance(clock, VirtualClock)
    return clock


# --- helpers ------------------------------------------------------------------------------------------------


def create(api: PaymentsApi, number: str = THREE_DS_CHALLENGE, **fields: Any) -> str:
    body = payment_body(number, **({"return_url": RETURN_URL} | fields))
    answer = api.create(body)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Retry-After"] == "2"
    view = answer.json()
    assert (view["status"], view["workflow"], view["next_action"]) == ("processing", "standard", None)
    return str(view["id"])


def wait_status(api: PaymentsApi, payment_id: str, *statuses: str, timeout_s: float = 30.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        view: dict[str, Any] = api.get(payment_id).json()
        return view if view["status"] in statuses else None

    return wait_for(probe, timeout_s=timeout_s, what=f"{payment_id} to be {statuses}")


def authentication_id(view: dict[str, Any]) -> str:
    return str(view["next_action"]["url"].rsplit("/", 1)[1])


def acs_decides(app: AppStack, auth_id: str, *, approve: bool) -> None:
    """What the challenge page's form does to the simulator's authentication (OTP right or wrong), without
    its own callback delivery: the test sends the callback."""
    server = app.acquirer.acquirer.threeds
    with server._lock:
        auth = server._authentications[auth_id]
        auth.authenticate() if approve else auth.fail()


def callback(
    app: AppStack,
    payment_id: str,
    auth_id: str,
    kind: str = "challenge.completed",
    *,
    trans_status: str | None = "Y",
    signature: str | None = "sign",
    signed_at: float | None = None,
) -> requests.Response:
    event: dict[str, Any] = {"type": kind, "authentication_id": auth_id, "payment_id": payment_id}
    if kind == "challenge.completed":
        event |= {"trans_status": trans_status, "eci": "05" if trans_status == "Y" else None}
        event["authentication_value_ref"] = "cavv_test" if trans_status == "Y" else None
    event["created"] = int(time.time())
    raw = json.dumps(event, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}  # no X-Api-Key: the ACS has none
    if signature == "sign":
        signature = sign(raw, SECRET, int(signed_at if signed_at is not None else time.time()))
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return requests.post(
        f"{app.runtime.api_url}/payments/{payment_id}/3ds/callback", data=raw, headers=headers, timeout=30
    )


def standard_arn(app: AppStack) -> str:
    return next(
        sm.arn
        for sm in app.runtime.model.state_machines.values()
        if sm.logical_id == "PaymentStandardStateMachine"
    )


def execution(app: AppStack, payment_id: str) -> dict[str, Any]:
    found = [
        e
        for e in app.client("stepfunctions").list_executions(stateMachineArn=standard_arn(app))["executions"]
        if e["name"] == payment_id
    ]
    assert len(found) == 1, found
    return dict(found[0])


def finished(app: AppStack, payment_id: str) -> dict[str, Any]:
    """The STANDARD execution once it has ended, with its history."""
    sfn = app.client("stepfunctions")

    def probe() -> dict[str, Any] | None:
        described = dict(sfn.describe_execution(executionArn=execution(app, payment_id)["executionArn"]))
        return described if described["status"] != "RUNNING" else None

    described = wait_for(probe, what=f"the execution of {payment_id} to end")
    described["history"] = sfn.get_execution_history(executionArn=described["executionArn"], maxResults=1000)[
        "events"
    ]
    return described


def merchant_webhook(app: AppStack, payment_id: str) -> dict[str, Any]:
    """The (signature-checked) webhook event the merchant's receiver got for this payment."""
    assert app.webhooks is not None

    def probe() -> dict[str, Any] | None:
        for delivery in app.webhooks.receiver.deliveries:  # type: ignore[union-attr]
            event = delivery["event"]
            if isinstance(event, dict) and event["data"]["object"]["id"] == payment_id:
                assert delivery["signature_valid"], delivery
                return event
        return None

    return wait_for(probe, what=f"the merchant webhook of {payment_id}")


def states(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def challenge_row(app: AppStack, payment_id: str) -> Any:
    table = app.table_name("ThreeDSChallengesTable")
    return DynamoChallengeStore(table, app.client("dynamodb")).get(payment_id)


def heartbeat_armed(clock: VirtualClock, at: float) -> bool:
    """A heartbeat deadline (a non-auto timer) is set for ``at``."""
    return any(abs(deadline - at) < 0.5 and not auto for deadline, auto in clock.pending())


def waiting_for_challenge(
    api: PaymentsApi, clock: VirtualClock, number: str = THREE_DS_CHALLENGE
) -> tuple[str, str]:
    """A payment in requires_action with Wait3DSCallback's heartbeat deadline armed: (payment id, 3DS id)."""
    armed_before = _heartbeat_timers(clock)
    payment_id = create(api, number)
    view = wait_status(api, payment_id, "requires_action")
    # Not just any timer: an earlier test's execution or a schedule may have one pending. This payment's
    # heartbeat timer is armed (HeartbeatSeconds from now) only after requires_action is written.
    wait_for(lambda: _heartbeat_timers(clock) > armed_before, what="Wait3DSCallback's heartbeat timer")
    return payment_id, authentication_id(view)


def _heartbeat_timers(clock: VirtualClock) -> int:
    """Pending non-auto timers that end HeartbeatSeconds after now (time stands still in these tests)."""
    due = clock.now() + HEARTBEAT_SECONDS
    return sum(1 for deadline, auto in clock.pending() if not auto and abs(deadline - due) < 0.001)


# --- the paths ----------------------------------------------------------------------------------------------


def test_challenge_approved_succeeds_and_the_acquirer_saw_the_3ds_result(
    app: AppStack, api: PaymentsApi
) -> None:
    payment_id = create(api)
    view = wait_status(api, payment_id, "requires_action")
    # While the cardholder is busy, GET shows where to send the browser.
    auth_id = authentication_id(view)
    assert view["next_action"] == {
        "type": "redirect_to_url",
        "url": f"{app.acquirer.url}/acs/challenge/{auth_id}",
        "return_url": RETURN_URL,
    }
    acs_decides(app, auth_id, approve=True)
    answer = callback(app, payment_id, auth_id)
    assert (answer.status_code, answer.json()) == (200, {"received": True, "type": "challenge.completed"})

    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["amount_received"], done["next_action"]) == ("succeeded", 5000, None)
    # A challenge card is declined (authentication_required) unless authorize carries the 3DS result.
    [auth] = app.ledger_for(payment_id)
    assert (auth["status"], auth["amount_captured"], auth["id"]) == (
        "captured",
        5000,
        done["authorization_id"],
    )
    described = finished(app, payment_id)
    assert described["status"] == "SUCCEEDED"
    assert states(described["history"]) == [
        "ValidateRequest",
        "Check3DSRequired",
        "Request3DS",
        "Check3DSChallenge",
        "Wait3DSCallback",
        "Validate3DSResult",
        "ResumeCharge",
        "ChargePayment",
        "PaymentSuccess",
    ]
    assert json.loads(described["output"])["status"] == "succeeded"
    assert challenge_row(app, payment_id).state == "completed"


def test_challenge_failed_fails_the_payment_with_authentication_failed(
    app: AppStack, api: PaymentsApi
) -> None:
    payment_id = create(api)
    auth_id = authentication_id(wait_status(api, payment_id, "requires_action"))
    acs_decides(app, auth_id, approve=False)
    assert callback(app, payment_id, auth_id, trans_status="N").status_code == 200
    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["decline_code"], done["failure_code"]) == (
        "failed",
        "authentication_failed",
        "authentication_failed",
    )
    assert done["next_action"] is None
    described = finished(app, payment_id)
    assert (described["status"], described["error"]) == ("FAILED", "PaymentFailed")
    entered = states(described["history"])
    assert entered[entered.index("Wait3DSCallback") :][:4] == [
        "Wait3DSCallback",
        "HandleAuthFailure",
        "BuildAuthFailedEvent",
        "QueueNotifications",
    ]
    assert entered[-2:] == ["AfterNotifications", "PaymentFailed"]
    assert app.ledger_for(payment_id) == []  # never charged
    reject = merchant_webhook(app, payment_id)  # the reject notice, through the notification queue
    assert reject["type"] == "payment.failed"
    assert reject["data"]["object"]["decline_code"] == "authentication_failed"


def test_abandoned_challenge_is_canceled_after_the_heartbeat_timeout(
    app: AppStack, api: PaymentsApi, clock: VirtualClock
) -> None:
    payment_id, _ = waiting_for_challenge(api, clock)
    clock.advance(HEARTBEAT_SECONDS + 1)  # nobody opened the page: no heartbeat within HeartbeatSeconds
    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["cancellation_reason"], done["next_action"]) == (
        "canceled",
        "3ds_abandoned",
        None,
    )
    described = finished(app, payment_id)
    assert described["status"] == "SUCCEEDED"
    entered = states(described["history"])
    assert entered[entered.index("Wait3DSCallback") :][:4] == [
        "Wait3DSCallback",
        "Cancel3DSAbandoned",
        "BuildCanceledEvent",
        "QueueNotifications",
    ]
    assert entered[-2:] == ["AfterNotifications", "PaymentCanceled"]
    event = merchant_webhook(app, payment_id)  # the merchant hears of it, signed, through the notifier
    assert event["type"] == "payment.canceled"
    assert event["data"]["object"]["cancellation_reason"] == "3ds_abandoned"
    timed_out = [e for e in described["history"] if e["type"] == "TaskTimedOut"]
    assert timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"
    assert app.ledger_for(payment_id) == []


def test_heartbeats_keep_a_slow_challenge_alive_past_heartbeat_seconds(
    app: AppStack, api: PaymentsApi, clock: VirtualClock
) -> None:
    payment_id, auth_id = waiting_for_challenge(api, clock)
    for _ in range(3):  # 150 s in all, with a heartbeat every 50 s: well past HeartbeatSeconds (60)
        clock.advance(50)
        answer = callback(app, payment_id, auth_id, "challenge.heartbeat")
        assert answer.status_code == 200, answer.text
        wait_for(
            lambda: heartbeat_armed(clock, clock.now() + HEARTBEAT_SECONDS), what="the re-armed heartbeat"
        )
    assert api.get(payment_id).json()["status"] == "requires_action"
    assert execution(app, payment_id)["status"] == "RUNNING"
    acs_decides(app, auth_id, approve=True)
    assert callback(app, payment_id, auth_id).status_code == 200
    assert wait_status(api, payment_id, *FINAL)["status"] == "succeeded"


def test_a_challenge_open_too_long_times_out_despite_heartbeats(
    app: AppStack, api: PaymentsApi, clock: VirtualClock
) -> None:
    payment_id, auth_id = waiting_for_challenge(api, clock)
    started = clock.now()
    while clock.now() - started < TIMEOUT_SECONDS - 50:
        clock.advance(50)
        assert callback(app, payment_id, auth_id, "challenge.heartbeat").status_code == 200
        wait_for(
            lambda: heartbeat_armed(clock, clock.now() + HEARTBEAT_SECONDS), what="the re-armed heartbeat"
        )
    clock.advance(55)  # past TimeoutSeconds (600), still within the last heartbeat's 60 s
    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["cancellation_reason"]) == ("canceled", "3ds_abandoned")
    timed_out = [e for e in finished(app, payment_id)["history"] if e["type"] == "TaskTimedOut"]
    assert timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.Timeout"


def test_frictionless_authenticates_without_a_callback(app: AppStack, api: PaymentsApi) -> None:
    payment_id = create(api, FRICTIONLESS)
    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["amount_received"]) == ("succeeded", 5000)
    entered = states(finished(app, payment_id)["history"])
    assert "Request3DS" in entered and "Wait3DSCallback" not in entered and "ChargePayment" in entered
    [auth] = app.ledger_for(payment_id)
    assert auth["status"] == "captured"
    assert challenge_row(app, payment_id) is None


def test_large_amount_without_3ds_takes_standard_without_request3ds(app: AppStack, api: PaymentsApi) -> None:
    payment_id = create(api, APPROVED, amount=150_000, return_url=None)  # over JPY's EXPRESS limit
    done = wait_status(api, payment_id, *FINAL)
    assert (done["status"], done["amount_received"], done["workflow"]) == ("succeeded", 150_000, "standard")
    assert states(finished(app, payment_id)["history"]) == [
        "ValidateRequest",
        "Check3DSRequired",
        "ChargePayment",
        "PaymentSuccess",
    ]


def test_replay_answers_202_with_retry_after_and_starts_nothing_more(app: AppStack, api: PaymentsApi) -> None:
    body = payment_body(APPROVED, amount=120_000)
    first = api.create(body, idempotency_key="standard-replay-1")
    again = api.create(body, idempotency_key="standard-replay-1")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Retry-After"] == "2" and again.json()["id"] == first.json()["id"]
    payment_id = str(first.json()["id"])
    assert wait_status(api, payment_id, *FINAL)["status"] == "succeeded"
    assert execution(app, payment_id)["status"] == "SUCCEEDED"  # exactly one, named after the payment
    assert len(app.ledger_for(payment_id)) == 1


def test_return_url_is_required_for_a_3ds_card(api: PaymentsApi) -> None:
    answer = api.create(payment_body(THREE_DS_CHALLENGE))
    assert answer.status_code == 400, answer.text
    assert (answer.json()["error"]["param"], answer.json()["error"]["code"]) == (
        "return_url",
        "parameter_missing",
    )


# --- the callback's answers ---------------------------------------------------------------------------------


def test_duplicate_callback_is_409_and_changes_nothing(app: AppStack, api: PaymentsApi) -> None:
    payment_id = create(api)
    auth_id = authentication_id(wait_status(api, payment_id, "requires_action"))
    acs_decides(app, auth_id, approve=True)
    assert callback(app, payment_id, auth_id).status_code == 200
    duplicate = callback(app, payment_id, auth_id)
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "challenge_completed")
    contrary = callback(app, payment_id, auth_id, trans_status="N")  # a second, different answer
    assert contrary.status_code == 409
    assert wait_status(api, payment_id, *FINAL)["status"] == "succeeded"
    assert len(app.ledger_for(payment_id)) == 1
    assert finished(app, payment_id)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("signature", "signed_ago"),
    [
        (None, 0),  # missing
        ("t=1700000000,v1=" + "ab" * 32, 0),  # forged
        ("sign", 301),  # stale: more than 300 s old
        ("sign", -301),  # from the future
    ],
    ids=["missing", "forged", "stale", "future"],
)
def test_bad_signature_is_401_and_the_payment_keeps_waiting(
    app: AppStack, api: PaymentsApi, signature: str | None, signed_ago: int
) -> None:
    payment_id = create(api)
    auth_id = authentication_id(wait_status(api, payment_id, "requires_action"))
    acs_decides(app, auth_id, approve=True)
    answer = callback(app, payment_id, auth_id, signature=signature, signed_at=time.time() - signed_ago)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_signature")
    assert api.get(payment_id).json()["status"] == "requires_action"
    assert challenge_row(app, payment_id).state == "pending"
    # The genuine callback still works afterwards.
    assert callback(app, payment_id, auth_id).status_code == 200
    assert wait_status(api, payment_id, *FINAL)["status"] == "succeeded"


def test_late_callback_after_the_timeout_is_409(app: AppStack, api: PaymentsApi, clock: VirtualClock) -> None:
    payment_id, auth_id = waiting_for_challenge(api, clock)
    clock.advance(HEARTBEAT_SECONDS + 1)
    assert wait_status(api, payment_id, *FINAL)["status"] == "canceled"
    acs_decides(app, auth_id, approve=True)
    late = callback(app, payment_id, auth_id)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "challenge_expired")
    heartbeat = callback(app, payment_id, auth_id, "challenge.heartbeat")
    assert heartbeat.status_code == 409
    view = api.get(payment_id).json()
    assert (view["status"], view["cancellation_reason"]) == ("canceled", "3ds_abandoned")
    assert app.ledger_for(payment_id) == []


def test_callback_for_an_unknown_payment_is_404(app: AppStack) -> None:
    answer = callback(app, "pay_NoSuchPaymentAnywhere00", "3ds_nope")
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "resource_missing")


# --- what never leaves PayEasy's side -----------------------------------------------------------------------


def _log_lines(app: AppStack) -> dict[str, list[str]]:
    logs = app.client("logs")
    lines: dict[str, list[str]] = {}
    for group in logs.describe_log_groups()["logGroups"]:
        name = group["logGroupName"]
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=name):
            lines.setdefault(name, []).extend(event["message"] for event in page["events"])
    return lines


def _scan(app: AppStack, logical_id: str) -> list[dict[str, Any]]:
    pages = app.client("dynamodb").get_paginator("scan").paginate(TableName=app.table_name(logical_id))
    return [item for page in pages for item in page["Items"]]


def test_task_token_and_card_data_stay_server_side(
    app: AppStack, api: PaymentsApi, api_answers: list[str]
) -> None:
    # Self-contained: one challenge through to success, whatever ran before.
    payment_id = create(api)
    auth_id = authentication_id(wait_status(api, payment_id, "requires_action"))
    token = challenge_row(app, payment_id).task_token
    assert len(token) > 20
    acs_decides(app, auth_id, approve=True)
    api_answers.append(callback(app, payment_id, auth_id).text)
    assert wait_status(api, payment_id, *FINAL)["status"] == "succeeded"

    lines = _log_lines(app)
    await_group = f"/aws/lambda/{app.function_name('Await3DSFunction')}"
    callback_group = f"/aws/lambda/{app.function_name('ThreeDSCallbackFunction')}"
    assert any("Wait3DSCallback armed" in line for line in lines[await_group])  # the scan has material
    assert lines[callback_group]
    everything = {
        "API responses": api_answers,
        "log lines": lines,
        "Payments table": _scan(app, "PaymentsTable"),
        "payment events": _scan(app, "PaymentEventsTable"),
        "Idempotency table": _scan(app, "IdempotencyTable"),
    }
    assert len(api_answers) >= 3
    for where, value in everything.items():
        text = json.dumps(value, default=str)
        assert token not in text, where
        assert find_card_data(text) == [], where
    # No card data in the STANDARD histories either (the token is there, as in AWS: Wait3DSCallback's input).
    sfn = app.client("stepfunctions")
    histories = [
        sfn.get_execution_history(executionArn=e["executionArn"], maxResults=1000)["events"]
        for e in sfn.list_executions(stateMachineArn=standard_arn(app))["executions"]
    ]
    assert len(histories) >= 1
    assert find_card_data(json.dumps(histories, default=str)) == []
