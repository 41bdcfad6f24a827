"""Static checks of the EXPRESS workflow definition and of template.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from payeasy import errors

from local.asl_lint import lint_definition
from local.template_loader import load_stack

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachines" / "payment_express.asl.json"
TRANSIENT = {
    "AcquirerTimeout",
    "AcquirerUnavailable",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
SEED_STATES = {
    "ValidateRequest",
    "AuthorizePayment",
    "CheckAuthResult",
    "CapturePayment",
    "SendNotifications",
    "SaveTransaction",
    "PaymentSuccess",
    "HandleAuthFailure",
    "HandleCaptureFailure",
    "HandleError",
    "PaymentFailed",
}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return dict(json.loads(ASL_PATH.read_text()))


def _all_states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states = dict(machine["States"])
    for state in machine["States"].values():
        for branch in state.get("Branches", []):
            states.update(_all_states(branch))
    return states


def _targets(state: dict[str, Any]) -> list[str]:
    found = [state["Next"]] if "Next" in state else []
    found += [c["Next"] for c in state.get("Catch", [])]
    found += [c["Next"] for c in state.get("Choices", [])]
    found += [state["Default"]] if "Default" in state else []
    return found


def test_states_named_as_the_seed(asl: dict[str, Any]) -> None:
    assert asl["StartAt"] == "ValidateRequest"
    assert set(asl["States"]) >= SEED_STATES
    assert asl["States"]["SendNotifications"]["Type"] == "Parallel"
    assert asl["States"]["PaymentFailed"]["Type"] == "Fail"
    assert asl["States"]["PaymentSuccess"]["Type"] == "Succeed"


def test_every_transition_exists_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    def walk(machine: dict[str, Any]) -> None:
        names = set(machine["States"])
        seen, todo = set(), [machine["StartAt"]]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            targets = _targets(machine["States"][name])
            assert set(targets) <= names, f"{name} -> {set(targets) - names}"
            todo += targets
        assert seen == names, f"unreachable: {names - seen}"
        for state in machine["States"].values():
            for branch in state.get("Branches", []):
                walk(branch)

    walk(asl)


def test_every_task_retries_and_catches(asl: dict[str, Any]) -> None:
    for name, state in _all_states(asl).items():
        if state["Type"] != "Task":
            continue
        assert state.get("Catch"), f"{name} has no Catch"
        assert any("States.ALL" in c["ErrorEquals"] for c in state["Catch"]), name
        for retrier in state["Retry"]:
            if retrier["ErrorEquals"] == ["WebhookDeliveryFailed"]:
                continue  # the payment waits for the webhook: two fast retries (test_notification_workflow)
            if name in ("HandleCaptureFailure", "LookupAuthorization", "CheckCaptureStatus"):
                continue  # the error table's counts: voids 5 retries, 3 status checks (test_failure_handling)
            assert {
                k: retrier[k]
                for k in (
                    "IntervalSeconds",
                    "BackoffRate",
                    "MaxAttempts",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                )
            } == {
                "IntervalSeconds": 1,
                "BackoffRate": 2,
                "MaxAttempts": 3,
                "MaxDelaySeconds": 10,
                "JitterStrategy": "FULL",
            }, name
        if "Function" in state["Resource"]:
            assert set(state["Retry"][0]["ErrorEquals"]) == TRANSIENT, name


def test_retry_error_names_are_the_domain_exception_names() -> None:
    for name in ("AcquirerTimeout", "AcquirerUnavailable"):
        assert getattr(errors, name).__name__ == name


def test_state_updates_use_direct_dynamodb_integrations(asl: dict[str, Any]) -> None:
    for name in ("ValidateRequest", "SaveTransaction", "HandleAuthFailure", "HandleError"):
        assert asl["States"][name]["Resource"] == "arn:aws:states:::dynamodb:updateItem", name
        assert "execution_id" in asl["States"][name]["Parameters"]["ConditionExpression"]


def test_success_output_is_the_outcome_only(asl: dict[str, Any]) -> None:
    assert asl["States"]["SaveTransaction"]["OutputPath"] == "$.outcome"
    assert asl["States"]["PaymentFailed"]["CausePath"] == "States.JsonToString($.outcome)"
    assert "card" not in json.dumps(asl["States"]["HandleError"]["ResultSelector"])


def test_substitutions_cover_every_placeholder_and_the_engine_parses_it() -> None:
    text = ASL_PATH.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    template = (ROOT / "template.yaml").read_text()
    for placeholder in placeholders:
        assert re.search(rf"^\s+{placeholder}: ", template, re.MULTILINE), placeholder
    for placeholder in placeholders:
        value = (
            "payments"
            if placeholder == "PaymentsTable"
            else (f"arn:aws:lambda:ap-northeast-1:123456789012:function:{placeholder}")
        )
        text = text.replace("${" + placeholder + "}", value)
    assert lint_definition(text) == []


def test_template_loads_for_the_local_runtime() -> None:
    stack = load_stack(ROOT / "template.yaml")
    assert [u.line() for u in stack.unsupported] == []
    [machine] = [m for m in stack.state_machines.values() if m.logical_id == "PaymentExpressStateMachine"]
    assert machine.type == "EXPRESS" and machine.tracing and "${" not in machine.definition
    assert machine.logging is not None and machine.logging["IncludeExecutionData"] is False
    functions = {f.logical_id: f for f in stack.functions.values()}
    assert set(functions) >= {"RouterFunction", "AuthorizeFunction", "CaptureFunction", "VoidFunction"}
    for function in functions.values():
        assert function.architectures == ["arm64"] and function.runtime == "python3.13" and function.tracing
        assert function.layer_dirs == [ROOT / "layers" / "payeasy"]
    router_env = functions["RouterFunction"].environment
    keys = {k.value for api in stack.apis.values() for k in api.api_keys}
    merchants = dict(pair.split("=") for pair in router_env["MERCHANT_API_KEYS"].split(","))
    assert keys == set(merchants) and set(merchants.values()) == {"merchant_a", "merchant_b"}
    idempotency = next(t for t in stack.tables.values() if "idempotency" in t.table_name)
    assert idempotency.properties["TimeToLiveSpecification"] == {
        "AttributeName": "expiration",
        "Enabled": True,
    }
