"""The router's STANDARD path (StartExecution, 202 + Retry-After, return_url for 3-D Secure), with the
router fixture of test_router.py (moto, the simulator, a Step Functions test double)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from .handler_support import FakeContext, load_event
from .pan_scan import find_card_data
from .test_router import all_items, call, payment_event, router  # noqa: F401 - router: the fixture

CHALLENGE = "4000000000003220"


def header(answer: dict[str, Any], name: str) -> str | None:
    """A response header, whether the resolver answered with headers or multiValueHeaders."""
    if name in (answer.get("headers") or {}):
        return str(answer["headers"][name])
    values = (answer.get("multiValueHeaders") or {}).get(name)
    return str(values[0]) if values else None


def test_standard_input_carries_the_3ds_need_and_return_url_but_never_the_card(router: ModuleType) -> None:  # noqa: F811
    answer = router.handler(load_event("create_payment_3ds"), FakeContext())
    assert answer["statusCode"] == 202
    assert header(answer, "Retry-After") == "2"
    [started] = router.fake_workflow.started
    execution_input = started["input"]
    assert execution_input["card"]["three_d_secure"] == "challenge"
    assert execution_input["return_url"] == "https://shop.example/return"
    assert execution_input["three_d_secure"] is None
    assert set(execution_input["card"]) == {"token", "brand", "last4", "three_d_secure"}
    assert find_card_data(json.dumps(execution_input)) == []
    assert CHALLENGE not in json.dumps(started)


def test_replay_answers_the_same_202_with_retry_after_and_starts_once(router: ModuleType) -> None:  # noqa: F811
    event = payment_event(CHALLENGE, key="std-1", return_url="https://shop.example/r")
    first = router.handler(event, FakeContext())
    again = router.handler(event, FakeContext())
    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert header(again, "Retry-After") == "2"  # replayed from the idempotency record, header included
    assert json.loads(again["body"])["id"] == json.loads(first["body"])["id"]
    assert len(router.fake_workflow.started) == 1


def test_execution_already_exists_counts_as_started(router: ModuleType) -> None:  # noqa: F811
    router.fake_workflow.start_error = ClientError(
        {"Error": {"Code": "ExecutionAlreadyExists", "Message": "exists"}}, "StartExecution"
    )
    status, body = call(router, payment_event(amount=150_000))
    assert (status, body["status"]) == (202, "processing")


def test_start_failure_is_a_retryable_5xx_not_stored(router: ModuleType) -> None:  # noqa: F811
    router.fake_workflow.start_error = ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "StartExecution"
    )
    status, body = call(router, payment_event(amount=150_000, key="std-down"))
    assert (status, body["error"]["code"]) == (500, "workflow_unavailable")
    router.fake_workflow.start_error = None
    status, _ = call(router, payment_event(amount=150_000, key="std-down"))  # the client's retry runs again
    assert status == 202 and len(router.fake_workflow.started) == 2


def test_a_3ds_card_without_return_url_is_400_and_records_nothing(router: ModuleType) -> None:  # noqa: F811
    status, body = call(router, payment_event(CHALLENGE, key="std-no-return"))
    assert status == 400
    assert (body["error"]["param"], body["error"]["code"]) == ("return_url", "parameter_missing")
    assert all_items("payments") == [] and router.fake_workflow.started == []
    # A card without 3-D Secure needs none, even on the STANDARD path.
    status, _ = call(router, payment_event(amount=150_000, key="std-large"))
    assert status == 202
