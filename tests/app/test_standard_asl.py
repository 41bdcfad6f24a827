"""Static checks of the STANDARD workflow (statemachines/payment_standard.asl.json) and of its part of
template.yaml: the states docs/3ds.md names, Retry/Catch on every task, the claims that keep two executions
apart, the callback wait's limits, and least-privilege permissions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from payeasy import threeds

from local.asl_lint import lint_definition
from local.model import StackModel
from local.template_loader import load_stack

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachines" / "payment_standard.asl.json"
STATES = {
    "ValidateRequest": "Task",
    "Check3DSRequired": "Choice",
    "Request3DS": "Task",
    "Check3DSChallenge": "Choice",
    "Wait3DSCallback": "Task",
    "Validate3DSResult": "Choice",
    "ResumeCharge": "Task",
    "ChargePayment": "Task",
    "PaymentSuccess": "Succeed",
    "HandleAuthFailure": "Task",
    "BuildAuthFailedEvent": "Pass",
    "Cancel3DSAbandoned": "Task",
    "BuildCanceledEvent": "Pass",
    "QueueNotifications": "Map",
    "AfterNotifications": "Choice",
    "PaymentCanceled": "Succeed",
    "HandleError": "Task",
    "PaymentFailed": "Fail",
}
LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
UPDATES = ("ValidateRequest", "ResumeCharge", "HandleAuthFailure", "Cancel3DSAbandoned", "HandleError")


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return dict(json.loads(ASL_PATH.read_text()))


@pytest.fixture(scope="module")
def stack() -> StackModel:
    return load_stack(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    """template.yaml's resources as written (CloudFormation tags kept as plain values)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]

    Loader.add_multi_constructor("!", tag)
    document = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # a SafeLoader subclass
    return dict(document["Resources"])


def _targets(state: dict[str, Any]) -> list[str]:
    found = [state["Next"]] if "Next" in state else []
    found += [c["Next"] for c in state.get("Catch", [])]
    found += [c["Next"] for c in state.get("Choices", [])]
    return found + ([state["Default"]] if "Default" in state else [])


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for policy in resource["Properties"].get("Policies", []) for s in policy.get("Statement", [])]


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


# --- the definition -----------------------------------------------------------------------------------------


def test_states_are_the_documented_ones(asl: dict[str, Any]) -> None:
    assert asl["StartAt"] == "ValidateRequest"
    assert {name: state["Type"] for name, state in asl["States"].items()} == STATES


def test_every_transition_exists_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    names, seen, todo = set(asl["States"]), set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            targets = _targets(asl["States"][name])
            assert set(targets) <= names, f"{name} -> {set(targets) - names}"
            todo += targets
    assert seen == names


def test_the_documented_paths(asl: dict[str, Any]) -> None:
    s = asl["States"]
    assert s["Check3DSRequired"]["Default"] == "ChargePayment"  # large amount without 3-D Secure
    assert _targets(s["Check3DSRequired"]) == ["Request3DS", "ChargePayment"]
    challenge = {c["StringEquals"]: c["Next"] for c in s["Check3DSChallenge"]["Choices"]}
    assert challenge == {"authenticated": "ChargePayment", "challenge_required": "Wait3DSCallback"}
    assert s["Check3DSChallenge"]["Default"] == "HandleAuthFailure"
    assert _targets(s["Validate3DSResult"]) == ["ResumeCharge", "HandleAuthFailure"]
    assert s["ResumeCharge"]["Next"] == "ChargePayment" and s["ChargePayment"]["Next"] == "PaymentSuccess"
    assert s["HandleAuthFailure"]["Next"] == "BuildAuthFailedEvent"  # the reject notice, then PaymentFailed
    assert s["Cancel3DSAbandoned"]["Next"] == "BuildCanceledEvent"  # the merchant hears, then PaymentCanceled
    assert s["BuildAuthFailedEvent"]["Next"] == s["BuildCanceledEvent"]["Next"] == "QueueNotifications"
    assert {c["Next"] for c in s["QueueNotifications"]["Catch"]} == {"AfterNotifications"}  # never fails it
    assert _targets(s["AfterNotifications"]) == ["PaymentCanceled", "PaymentFailed"]
    assert s["HandleError"]["Next"] == "PaymentFailed"


def test_every_task_retries_what_is_transient_and_catches_everything(asl: dict[str, Any]) -> None:
    for name, state in asl["States"].items():
        if state["Type"] != "Task":
            continue
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        assert retried and not retried & {"States.ALL", "States.TaskFailed", "States.Timeout"}, name
        for retrier in state["Retry"]:
            assert (retrier["MaxAttempts"], retrier["BackoffRate"], retrier["JitterStrategy"]) == (
                3,
                2,
                "FULL",
            )
    assert {e for r in asl["States"]["Request3DS"]["Retry"] for e in r["ErrorEquals"]} == {
        "AcquirerTimeout",
        "AcquirerUnavailable",
        *LAMBDA_TRANSIENT,
    }
    assert {
        e for r in asl["States"]["Wait3DSCallback"]["Retry"] for e in r["ErrorEquals"]
    } == LAMBDA_TRANSIENT
    # HandleError is the last resort: if even it cannot write, the execution still ends in PaymentFailed.
    assert asl["States"]["HandleError"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "PaymentFailed"}
    ]


def test_wait_for_the_callback(asl: dict[str, Any]) -> None:
    wait = asl["States"]["Wait3DSCallback"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert (wait["HeartbeatSeconds"], wait["TimeoutSeconds"]) == (60, 600)
    payload = wait["Parameters"]["Payload"]
    assert payload["task_token.$"] == "$$.Task.Token"
    assert payload["timeout_seconds"] == wait["TimeoutSeconds"]  # the challenge row's wait_until
    assert {key.removesuffix(".$") for key in payload} == set(
        threeds.WaitTask.model_fields
    )  # what await_3ds reads
    catches = [(c["ErrorEquals"], c["Next"]) for c in wait["Catch"]]
    assert catches == [
        (["States.Timeout", "States.HeartbeatTimeout"], "Cancel3DSAbandoned"),
        ([threeds.AUTHENTICATION_FAILED_ERROR], "HandleAuthFailure"),
        (["States.ALL"], "HandleError"),
    ]
    assert wait["ResultPath"] == "$.three_d_secure"


def test_charge_runs_the_express_machine_nested(asl: dict[str, Any]) -> None:
    charge = asl["States"]["ChargePayment"]
    assert charge["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert charge["Parameters"]["StateMachineArn"] == "${PaymentExpressStateMachineArn}"
    child = charge["Parameters"]["Input"]
    assert child["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$"] == "$$.Execution.Id"
    assert child["three_d_secure.$"] == "$.three_d_secure"  # AuthorizePayment passes it to the acquirer
    assert set(child["card"]) == {"token.$", "brand.$", "last4.$"}  # never more of the card
    assert {c["Next"] for c in charge["Catch"]} == {"HandleError"}


def test_status_writes_are_direct_conditional_and_claim_their_own_attribute(asl: dict[str, Any]) -> None:
    for name in UPDATES:
        state = asl["States"][name]
        assert state["Resource"] == "arn:aws:states:::dynamodb:updateItem", name
        condition = state["Parameters"]["ConditionExpression"]
        # The EXPRESS child claims `execution_id`; STANDARD must never touch or test it.
        assert (
            re.search(r"(?<!standard_)execution_id", condition + state["Parameters"]["UpdateExpression"])
            is None
        )
        if name == "ValidateRequest":
            assert "attribute_not_exists(standard_execution_id)" in condition
            assert "#status = :processing" in condition
        else:
            assert "standard_execution_id = :me" in condition, name
        assert state["Parameters"]["ExpressionAttributeValues"].get(":me") == {"S.$": "$$.Execution.Id"}
    s = asl["States"]
    # Only a payment still open is marked failed: one the child recorded (declined...) is left alone.
    assert (
        "#status IN (:processing, :requires_action)" in s["HandleError"]["Parameters"]["ConditionExpression"]
    )
    assert "#status = :requires_action" in s["Cancel3DSAbandoned"]["Parameters"]["ConditionExpression"]
    abandoned = s["Cancel3DSAbandoned"]["Parameters"]["ExpressionAttributeValues"]
    assert (abandoned[":canceled"], abandoned[":reason"]) == ({"S": "canceled"}, {"S": "3ds_abandoned"})
    auth = s["HandleAuthFailure"]["Parameters"]["ExpressionAttributeValues"]
    assert auth[":code"] == {"S": "authentication_failed"}
    for name in ("ResumeCharge", "HandleAuthFailure", "Cancel3DSAbandoned", "HandleError"):
        assert "REMOVE next_action" in s[name]["Parameters"]["UpdateExpression"], name


def test_substitutions_cover_every_placeholder_and_the_engine_parses_it(resources: dict[str, Any]) -> None:
    text = ASL_PATH.read_text()
    placeholders = set(re.findall(r"\$\{(\w+)\}", text))
    substitutions = resources["PaymentStandardStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert placeholders == set(substitutions)
    for placeholder in placeholders:
        value = (
            "payments"
            if placeholder == "PaymentsTable"
            else f"arn:aws:lambda:us-east-1:123456789012:function:{placeholder}"
        )
        text = text.replace("${" + placeholder + "}", value)
    assert lint_definition(text) == []


# --- the template -------------------------------------------------------------------------------------------


def test_the_state_machine_resource(stack: StackModel, resources: dict[str, Any]) -> None:
    [machine] = [m for m in stack.state_machines.values() if m.logical_id == "PaymentStandardStateMachine"]
    assert machine.type == "STANDARD" and machine.tracing and "${" not in machine.definition
    assert machine.logging is not None and machine.logging["IncludeExecutionData"] is False
    properties = resources["PaymentStandardStateMachine"]["Properties"]
    [destination] = properties["Logging"]["Destinations"]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"GetAtt": "PaymentStandardLogGroup.Arn"}
    statements = _statements(resources["PaymentStandardStateMachine"])
    by_action = {action: s["Resource"] for s in statements for action in _actions(s)}
    assert by_action["states:StartExecution"] == {"Ref": "PaymentExpressStateMachine"}
    assert by_action["dynamodb:UpdateItem"] == {"GetAtt": "PaymentsTable.Arn"}
    for action in ("states:DescribeExecution", "states:StopExecution"):
        assert all("payment-express" in str(arn) for arn in by_action[action])
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule" in str(by_action[action])
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in properties["Policies"]
        if "LambdaInvokePolicy" in p
    }
    assert invoked == {"Request3DSFunction", "Await3DSFunction"}
    outputs = (ROOT / "template.yaml").read_text().split("\nOutputs:")[1]
    assert "PaymentStandardStateMachineArn:" in outputs and "!Ref PaymentStandardStateMachine" in outputs


def test_callback_route_has_no_api_key_and_least_privilege(
    stack: StackModel, resources: dict[str, Any]
) -> None:
    function = resources["ThreeDSCallbackFunction"]["Properties"]
    route = function["Events"]["ThreeDSCallback"]["Properties"]
    assert (route["Path"], route["Method"], route["Auth"]) == (
        "/payments/{payment_id}/3ds/callback",
        "post",
        {"ApiKeyRequired": False},
    )
    statements = _statements(resources["ThreeDSCallbackFunction"])
    send = next(s for s in statements if "states:SendTaskSuccess" in _actions(s))
    assert _actions(send) == {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
    assert send["Resource"] == {"Ref": "PaymentStandardStateMachine"}
    table = next(s for s in statements if "dynamodb:UpdateItem" in _actions(s))
    assert _actions(table) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert table["Resource"] == {"GetAtt": "ThreeDSChallengesTable.Arn"}
    assert function["Environment"]["Variables"]["THREEDS_SECRET_ARN"] == {"Ref": "ThreeDSCallbackSecret"}
    # The other payment routes still need a merchant key.
    routes = {(r.path, r.method): r for api in stack.apis.values() for r in api.routes}
    assert routes[("/payments/{payment_id}/3ds/callback", "POST")].api_key_required is False
    assert routes[("/payments", "POST")].api_key_required is True


def test_challenges_table_secret_and_router(resources: dict[str, Any]) -> None:
    table = resources["ThreeDSChallengesTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["KeySchema"] == [{"AttributeName": "payment_id", "KeyType": "HASH"}]
    secret = resources["ThreeDSCallbackSecret"]["Properties"]["SecretString"]
    assert secret == {"Sub": '{"secret": "${ThreeDSCallbackSecretValue}"}'}
    router = resources["RouterFunction"]["Properties"]
    assert router["Environment"]["Variables"]["STANDARD_STATE_MACHINE_ARN"] == {
        "Ref": "PaymentStandardStateMachine"
    }
    start = [s for s in _statements(resources["RouterFunction"]) if "states:StartExecution" in _actions(s)]
    assert [s["Resource"] for s in start] == [{"Ref": "PaymentStandardStateMachine"}]
    awaiting = _statements(resources["Await3DSFunction"])
    assert {str(s["Resource"]): _actions(s) for s in awaiting} == {
        str({"GetAtt": "ThreeDSChallengesTable.Arn"}): {"dynamodb:PutItem"},
        str({"GetAtt": "PaymentsTable.Arn"}): {"dynamodb:GetItem", "dynamodb:PutItem"},
    }


def test_local_default_secret_is_the_simulators(resources: dict[str, Any]) -> None:
    from simulators.acquirer.threeds import DEFAULT_SECRET

    text = (ROOT / "template.yaml").read_text()
    parameter = text.split("  ThreeDSCallbackSecretValue:")[1].split("\n  ")[0:6]
    assert f"Default: {DEFAULT_SECRET}" in "\n".join(parameter)
    assert DEFAULT_SECRET in (ROOT / "docs" / "3ds.md").read_text()
