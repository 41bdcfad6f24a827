"""The template's alarms: every function, every state machine and every dead-letter queue has its 1-minute
alarms to the AlertTopic, so a resource added later without alarms fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.template_loader import read_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
MACHINE_TYPES = {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return dict(read_template(ROOT / "template.yaml")["Resources"])


def _ref(value: Any) -> str | None:
    """The logical id a dimension value names: ``!Ref X`` or ``!GetAtt X.Attr``."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def _metrics(alarm: dict[str, Any]) -> list[tuple[str, str, str | None, int]]:
    """(namespace, metric name, logical id of its dimension, period) of each metric the alarm reads."""
    props = alarm["Properties"]
    found = []
    if "MetricName" in props:
        [dimension] = props["Dimensions"]
        found.append((props["Namespace"], props["MetricName"], _ref(dimension["Value"]), props["Period"]))
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            [dimension] = metric["Dimensions"]
            found.append(
                (
                    metric["Namespace"],
                    metric["MetricName"],
                    _ref(dimension["Value"]),
                    query["MetricStat"]["Period"],
                )
            )
    return found


def _covered(resources: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """(metric name, logical id) pairs some alarm watches."""
    return {
        (metric, target)
        for alarm in resources.values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
        for _ns, metric, target, _period in _metrics(alarm)
        if target is not None
    }


def _dead_letter_queues(resources: dict[str, dict[str, Any]]) -> set[str]:
    """Queues something dead-letters into: a redrive target, an event source's on-failure destination, or a
    queue named as one (the rollback DLQ the workflow sends to)."""
    found = {name for name, r in resources.items() if r["Type"] == "AWS::SQS::Queue" and name.endswith("DLQ")}
    for resource in resources.values():
        props = resource.get("Properties") or {}
        target = (props.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if _ref(target):
            found.add(str(_ref(target)))
        for event in (props.get("Events") or {}).values():
            destination = ((event.get("Properties") or {}).get("DestinationConfig") or {}).get(
                "OnFailure"
            ) or {}
            if _ref(destination.get("Destination")):
                found.add(str(_ref(destination.get("Destination"))))
    return found


def test_every_function_has_error_and_throttle_alarms(resources: dict[str, dict[str, Any]]) -> None:
    covered = _covered(resources)
    functions = [name for name, r in resources.items() if r["Type"] in FUNCTION_TYPES]
    assert len(functions) >= 9
    missing = [(m, f) for f in functions for m in ("Errors", "Throttles") if (m, f) not in covered]
    assert missing == []


def test_every_state_machine_has_failed_and_timed_out_alarms(resources: dict[str, dict[str, Any]]) -> None:
    covered = _covered(resources)
    machines = [name for name, r in resources.items() if r["Type"] in MACHINE_TYPES]
    assert {"PaymentExpressStateMachine", "ReconciliationStateMachine"} <= set(machines)
    missing = [
        (m, sm)
        for sm in machines
        for m in ("ExecutionsFailed", "ExecutionsTimedOut")
        if (m, sm) not in covered
    ]
    assert missing == []


def test_every_dead_letter_queue_alarms_on_depth(resources: dict[str, dict[str, Any]]) -> None:
    queues = _dead_letter_queues(resources)
    assert "RollbackDLQ" in queues
    covered = _covered(resources)
    assert [q for q in queues if ("ApproximateNumberOfMessagesVisible", q) not in covered] == []


def test_alarms_use_one_minute_periods_and_go_to_the_alert_topic(
    resources: dict[str, dict[str, Any]],
) -> None:
    alarms = {name: r for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) >= 30
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert {period for *_, period in _metrics(alarm)} == {60}, name
        assert props["EvaluationPeriods"] == 1, name
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], name
        assert props["ComparisonOperator"] == "GreaterThanThreshold", name
        if "MetricName" in props:  # a plain count: the first one alarms
            assert props["Threshold"] == 0, name
        # An alarm on a resource that only exists under a condition carries the same condition.
        target = resources.get(str(_metrics(alarm)[0][2]), {})
        assert alarm.get("Condition") == target.get("Condition"), name


def test_the_alert_topic_accepts_alarms(resources: dict[str, dict[str, Any]]) -> None:
    # CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key.
    assert resources["AlertTopic"]["Type"] == "AWS::SNS::Topic"
    assert "KmsMasterKeyId" not in resources["AlertTopic"]["Properties"]
