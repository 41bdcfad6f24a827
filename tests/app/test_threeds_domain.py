"""3-D Secure domain rules (payeasy.threeds) with in-memory fakes: the callback signature, the callback event,
what each callback does to the waiting workflow, and the Request3DS / Wait3DSCallback task logic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from payeasy import tasks, threeds
from payeasy.errors import AuthenticationError, ConflictError, NotFoundError, TaskTokenExpired
from payeasy.models import PaymentView
from payeasy.money import Money
from payeasy.payment import Payment, utc_now_iso
from payeasy.ports import Authorization, Challenge, ThreeDSAuthentication, ThreeDSResult
from payeasy.status import PaymentStatus
from pydantic import ValidationError

from simulators.acquirer.signing import sign as simulator_sign

SECRET = "whsec_test_3ds_unit_0123456789"
NOW = 1_800_000_000
BODY = b'{"type":"challenge.completed","authentication_id":"3ds_1","payment_id":"pay_1","trans_status":"Y"}'


# --- signature ----------------------------------------------------------------------------------------------


def _header(body: bytes = BODY, *, secret: str = SECRET, t: int = NOW) -> str:
    return threeds.sign(body, secret, t)


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (None, BODY, NOW, "missing"),
        ("", BODY, NOW, "missing"),
        ("   ", BODY, NOW, "missing"),
        ("garbage", BODY, NOW, "malformed"),
        (f"t=abc,v1={'0' * 64}", BODY, NOW, "malformed"),
        (f"t={NOW}", BODY, NOW, "malformed"),
        (_header(secret="whsec_someone_else_entirely"), BODY, NOW, "no matching signature"),
        (_header(), BODY.replace(b'"Y"', b'"N"'), NOW, "no matching signature"),  # tampered body
        (_header(), BODY + b" ", NOW, "no matching signature"),  # the raw bytes are signed, not the JSON
        (_header(t=NOW - 301), BODY, NOW, "outside the tolerance"),  # stale: a replay
        (_header(t=NOW + 301), BODY, NOW, "outside the tolerance"),  # from the future
        (_header(t=NOW).replace("v1=", "v0="), BODY, NOW, "malformed"),  # unknown scheme only
    ],
)
def test_bad_signatures_are_rejected_with_401(header: str | None, body: bytes, now: int, reason: str) -> None:
    with pytest.raises(threeds.SignatureError) as caught:
        threeds.verify_signature(header, body, SECRET, now=now)
    assert isinstance(caught.value, AuthenticationError) and caught.value.http_status == 401
    assert reason in caught.value.message
    assert caught.value.code == "invalid_signature"


@pytest.mark.parametrize(
    "header",
    [
        _header(),
        _header(t=NOW - 300),  # exactly at the tolerance
        _header(t=NOW + 299),
        f"t={NOW},v1={'0' * 64},v1={_header().split('v1=')[1]}",  # rotation: one of several matches
        f" t={NOW} , v1={_header().split('v1=')[1]} ",
    ],
)
def test_good_signatures_pass(header: str) -> None:
    threeds.verify_signature(header, BODY, SECRET, now=NOW)  # raises on failure


def test_the_simulators_signature_verifies_and_matches_ours() -> None:
    # The ACS simulator signs on its own (it never imports payeasy): both must implement docs/3ds.md alike.
    assert simulator_sign(SECRET, BODY, NOW) == threeds.sign(BODY, SECRET, NOW)
    threeds.verify_signature(simulator_sign(SECRET, BODY, NOW), BODY, SECRET, now=NOW + 10)


# --- callback event -----------------------------------------------------------------------------------------


def _event(**fields: Any) -> threeds.CallbackEvent:
    data = {
        "type": "challenge.completed",
        "authentication_id": "3ds_1",
        "payment_id": "pay_1",
        "trans_status": "Y",
        "eci": "05",
        "authentication_value_ref": "cavv_1",
        "created": NOW,
        **fields,
    }
    return threeds.CallbackEvent.model_validate({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"type": "challenge.exploded"}, "type"),
        ({"trans_status": None}, "trans_status"),  # a completion must say how it ended
        ({"trans_status": "yes"}, "trans_status"),
        ({"authentication_id": ""}, "authentication_id"),
        ({"created": "soon"}, "created"),
    ],
)
def test_callback_event_names_the_bad_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _event(**fields)
    assert caught.value.errors()[0]["loc"][0] == param


def test_heartbeat_needs_no_result_and_unknown_fields_are_ignored() -> None:
    event = _event(type="challenge.heartbeat", trans_status=None, eci=None, future_field=1)
    assert (event.type, event.trans_status) == ("challenge.heartbeat", None)


# --- decisions ----------------------------------------------------------------------------------------------


def _challenge(**changes: Any) -> Challenge:
    base = Challenge(
        payment_id="pay_1",
        authentication_id="3ds_1",
        task_token="TOKEN-SECRET-1",
        state="pending",
        wait_until=NOW + 600,
        created=NOW,
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("challenge", "event", "status", "code"),
    [
        (None, _event(), 404, "resource_missing"),
        (_challenge(authentication_id="3ds_other"), _event(), 409, "authentication_mismatch"),
        (_challenge(state="completed"), _event(), 409, "challenge_completed"),
        (_challenge(state="expired"), _event(), 409, "challenge_expired"),
        (_challenge(wait_until=NOW), _event(), 409, "challenge_expired"),
        (_challenge(state="completed"), _event(type="challenge.heartbeat"), 409, "challenge_completed"),
    ],
)
def test_refused_callbacks(
    challenge: Challenge | None, event: threeds.CallbackEvent, status: int, code: str
) -> None:
    with pytest.raises((NotFoundError, ConflictError)) as caught:
        threeds.decide(event, challenge, now=NOW)
    assert (caught.value.http_status, caught.value.code) == (status, code)


def test_decisions_for_a_pending_challenge() -> None:
    assert threeds.decide(_event(type="challenge.heartbeat"), _challenge(), now=NOW).action == "heartbeat"
    approved = threeds.decide(_event(), _challenge(), now=NOW)
    assert approved.action == "succeed"
    assert approved.output == {
        "status": "authenticated",
        "authentication_id": "3ds_1",
        "trans_status": "Y",
        "eci": "05",
        "authentication_value_ref": "cavv_1",
    }
    for trans_status in ("N", "R", "U"):
        failed = threeds.decide(_event(trans_status=trans_status, eci=None), _challenge(), now=NOW)
        assert failed.action == "fail" and f"trans_status {trans_status}" in (failed.cause or "")


# --- fakes --------------------------------------------------------------------------------------------------


@dataclass
class FakeStore:
    """ChallengeStore in memory, with the conditional writes of DynamoChallengeStore."""

    rows: dict[str, Challenge] = field(default_factory=dict)

    def put_pending(self, challenge: Challenge) -> None:
        current = self.rows.get(challenge.payment_id)
        if current is not None and current.state != "pending":
            raise ConflictError("finished", code="challenge_completed")
        self.rows[challenge.payment_id] = challenge

    def get(self, payment_id: str) -> Challenge | None:
        return self.rows.get(payment_id)

    def complete(self, payment_id: str, authentication_id: str, *, now: int) -> None:
        row = self.rows.get(payment_id)
        if row is None or row.state != "pending" or row.authentication_id != authentication_id:
            raise ConflictError("already answered", code="challenge_completed")
        if row.wait_until <= now:
            raise ConflictError("expired", code="challenge_completed")
        self.rows[payment_id] = replace(row, state="completed")

    def release(self, payment_id: str, authentication_id: str) -> None:
        row = self.rows[payment_id]
        assert row.state == "completed" and row.authentication_id == authentication_id
        self.rows[payment_id] = replace(row, state="pending")

    def expire(self, payment_id: str) -> None:
        if payment_id in self.rows:
            self.rows[payment_id] = replace(self.rows[payment_id], state="expired")


@dataclass
class FakeTasks:
    """TaskCallbacks that records what Step Functions would have been told."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    raises: Exception | None = None

    def _record(self, kind: str, token: str, payload: Any) -> None:
        if self.raises is not None:
            raise self.raises
        self.calls.append((kind, token, payload))

    def heartbeat(self, task_token: str) -> None:
        self._record("heartbeat", task_token, None)

    def succeed(self, task_token: str, output: dict[str, Any]) -> None:
        self._record("succeed", task_token, output)

    def fail(self, task_token: str, *, error: str, cause: str) -> None:
        self._record("fail", task_token, (error, cause))


# --- handle_callback ----------------------------------------------------------------------------------------


def test_approved_challenge_resumes_the_task_once_and_a_duplicate_changes_nothing() -> None:
    store, sfn = FakeStore({"pay_1": _challenge()}), FakeTasks()
    assert threeds.handle_callback(_event(), store=store, tasks=sfn, now=NOW)["received"] is True
    assert store.rows["pay_1"].state == "completed"
    assert [(kind, token) for kind, token, _ in sfn.calls] == [("succeed", "TOKEN-SECRET-1")]
    assert sfn.calls[0][2]["trans_status"] == "Y"
    with pytest.raises(ConflictError) as caught:
        threeds.handle_callback(_event(), store=store, tasks=sfn, now=NOW)
    assert caught.value.code == "challenge_completed" and len(sfn.calls) == 1


def test_failed_challenge_fails_the_task_with_the_asl_error_name() -> None:
    store, sfn = FakeStore({"pay_1": _challenge()}), FakeTasks()
    threeds.handle_callback(_event(trans_status="N", eci=None), store=store, tasks=sfn, now=NOW)
    [(kind, _, (error, cause))] = sfn.calls
    assert (kind, error) == ("fail", threeds.AUTHENTICATION_FAILED_ERROR)
    assert error == "ThreeDS.AuthenticationFailed"  # Wait3DSCallback's Catch matches this exact name
    assert "N" in cause and store.rows["pay_1"].state == "completed"


def test_heartbeat_keeps_the_row_pending() -> None:
    store, sfn = FakeStore({"pay_1": _challenge()}), FakeTasks()
    threeds.handle_callback(
        _event(type="challenge.heartbeat", trans_status=None), store=store, tasks=sfn, now=NOW
    )
    assert [kind for kind, _, _ in sfn.calls] == ["heartbeat"]
    assert store.rows["pay_1"].state == "pending"


@pytest.mark.parametrize("kind", ["challenge.completed", "challenge.heartbeat"])
def test_callback_after_the_workflow_stopped_waiting_is_409_and_expires_the_row(kind: str) -> None:
    store = FakeStore({"pay_1": _challenge()})
    sfn = FakeTasks(raises=TaskTokenExpired("gone"))
    with pytest.raises(ConflictError) as caught:
        threeds.handle_callback(_event(type=kind), store=store, tasks=sfn, now=NOW)
    assert caught.value.code == "challenge_expired"
    assert store.rows["pay_1"].state == "expired"


def test_undelivered_completion_is_released_so_the_acs_can_retry() -> None:
    store = FakeStore({"pay_1": _challenge()})
    with pytest.raises(RuntimeError):
        threeds.handle_callback(
            _event(), store=store, tasks=FakeTasks(raises=RuntimeError("throttled")), now=NOW
        )
    assert store.rows["pay_1"].state == "pending"
    sfn = FakeTasks()
    threeds.handle_callback(_event(), store=store, tasks=sfn, now=NOW)  # the retry goes through
    assert [kind for kind, _, _ in sfn.calls] == ["succeed"]


# --- tasks --------------------------------------------------------------------------------------------------


@dataclass
class FakeAcquirer:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def create_3ds_authentication(
        self, *, token: str, money: Money, reference: str, return_url: str | None, idempotency_key: str
    ) -> ThreeDSAuthentication:
        self.calls.append({"token": token, "money": money, "key": idempotency_key, "return_url": return_url})
        return ThreeDSAuthentication(
            id="3ds_x",
            status="challenge_required",
            reference=reference,
            challenge_url="http://acs/x",
            trans_status="C",
        )

    def authorize(
        self,
        *,
        token: str,
        money: Money,
        reference: str,
        idempotency_key: str,
        three_d_secure: ThreeDSResult | None = None,
    ) -> Authorization:
        self.calls.append({"token": token, "three_d_secure": three_d_secure})
        return Authorization(
            id="auth_1", status="authorized", amount=money.amount, currency="JPY", reference=reference
        )


STATE = {
    "payment_id": "pay_1",
    "merchant_id": "merchant_a",
    "amount": 250_000,
    "currency": "JPY",
    "capture_method": "automatic",
    "card": {"token": "tok_abcdefgh12", "brand": "visa", "last4": "3220", "three_d_secure": "challenge"},
    "return_url": "https://shop.example/return",
}


def test_request_authentication_uses_the_payment_derived_key_and_shapes_the_state() -> None:
    acquirer = FakeAcquirer()
    result = threeds.request_authentication(STATE, acquirer)  # type: ignore[arg-type]
    assert result == {
        "status": "challenge_required",
        "authentication_id": "3ds_x",
        "challenge_url": "http://acs/x",
        "trans_status": "C",
        "eci": None,
        "authentication_value_ref": None,
    }
    [call] = acquirer.calls
    assert (call["key"], call["return_url"], call["money"]) == (
        "pay_1:3ds",
        "https://shop.example/return",
        Money(250_000, "JPY"),
    )


def test_authorize_passes_the_3ds_result_only_when_there_is_one() -> None:
    acquirer = FakeAcquirer()
    tasks.authorize({**STATE, "three_d_secure": {"authentication_id": "3ds_x", "eci": "05"}}, acquirer)  # type: ignore[arg-type]
    tasks.authorize({**STATE, "three_d_secure": None}, acquirer)  # type: ignore[arg-type]
    tasks.authorize(STATE, acquirer)  # type: ignore[arg-type]
    assert [c["three_d_secure"] for c in acquirer.calls] == [ThreeDSResult("3ds_x", "05"), None, None]


@dataclass
class FakeRepository:
    items: dict[str, Payment] = field(default_factory=dict)

    def create(self, payment: Payment) -> None:
        self.items[payment.payment_id] = payment

    def get(self, payment_id: str) -> Payment | None:
        return self.items.get(payment_id)

    def save(self, payment: Payment, *, expected_status: str, expected_updated_at: str | None = None) -> None:
        if self.items[payment.payment_id].status.value != expected_status:
            raise ConflictError("changed", code="payment_unexpected_state")
        self.items[payment.payment_id] = payment


def _payment(status: PaymentStatus = PaymentStatus.PROCESSING) -> Payment:
    return Payment(
        payment_id="pay_1",
        merchant_id="merchant_a",
        status=status,
        amount=250_000,
        currency="JPY",
        capture_method="automatic",
        card={"token": "tok_abcdefgh12", "brand": "visa", "last4": "3220", "three_d_secure": "challenge"},
        workflow="standard",
        created=NOW,
        updated_at=utc_now_iso(),
        standard_execution_id="arn:aws:states:us-east-1:123456789012:execution:m:pay_1",
    )


def _wait_task(token: str = "TOKEN-SECRET-1") -> threeds.WaitTask:
    return threeds.WaitTask.model_validate(
        {
            "payment_id": "pay_1",
            "task_token": token,
            "authentication_id": "3ds_x",
            "challenge_url": "http://acs/challenge/3ds_x",
            "return_url": "https://shop.example/return",
            "timeout_seconds": 600,
        }
    )


def test_await_challenge_keeps_the_token_server_side_and_shows_the_redirect() -> None:
    store, repository = FakeStore(), FakeRepository({"pay_1": _payment()})
    result = threeds.await_challenge(_wait_task(), store=store, repository=repository, now=NOW)
    assert result == {"payment_id": "pay_1", "status": "requires_action"}
    row = store.rows["pay_1"]
    assert (row.task_token, row.state, row.wait_until, row.authentication_id) == (
        "TOKEN-SECRET-1",
        "pending",
        NOW + 600,
        "3ds_x",
    )
    assert "TOKEN-SECRET-1" not in repr(row) and "TOKEN-SECRET-1" not in repr(_wait_task())
    payment = repository.items["pay_1"]
    view = payment.view()
    assert view["status"] == "requires_action"
    assert view["next_action"] == {
        "type": "redirect_to_url",
        "url": "http://acs/challenge/3ds_x",
        "return_url": "https://shop.example/return",
    }
    assert "TOKEN-SECRET-1" not in json.dumps(payment.to_item()) + json.dumps(result)
    # The workflow's claim survives the read-modify-write save.
    assert payment.to_item()["standard_execution_id"].endswith(":pay_1")
    PaymentView.model_validate(view)


def test_retried_wait_task_replaces_the_token_and_keeps_requires_action() -> None:
    store, repository = FakeStore(), FakeRepository({"pay_1": _payment()})
    threeds.await_challenge(_wait_task("TOKEN-1"), store=store, repository=repository, now=NOW)
    threeds.await_challenge(_wait_task("TOKEN-2"), store=store, repository=repository, now=NOW + 5)
    assert store.rows["pay_1"].task_token == "TOKEN-2"
    assert repository.items["pay_1"].status is PaymentStatus.REQUIRES_ACTION


@pytest.mark.parametrize("status", [PaymentStatus.CANCELED, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED])
def test_wait_task_refuses_a_finished_payment(status: PaymentStatus) -> None:
    repository = FakeRepository({"pay_1": _payment(status)})
    with pytest.raises(ConflictError):
        threeds.await_challenge(_wait_task(), store=FakeStore(), repository=repository, now=NOW)
    assert repository.items["pay_1"].status is status


def test_next_action_is_shown_only_while_requires_action_and_cancellation_reason_always() -> None:
    action = {"type": "redirect_to_url", "url": "http://acs/x", "return_url": None}
    waiting = _payment(PaymentStatus.REQUIRES_ACTION).with_changes(next_action=action)
    assert waiting.view()["next_action"] == action
    canceled = replace(waiting, status=PaymentStatus.CANCELED, cancellation_reason="3ds_abandoned")
    assert canceled.view()["next_action"] is None
    assert canceled.view()["cancellation_reason"] == "3ds_abandoned"
    assert PaymentView.model_validate(canceled.view()).cancellation_reason == "3ds_abandoned"
    # Stored and read back (the table item keeps both; from_item restores them).
    assert Payment.from_item(waiting.to_item()).next_action == action
