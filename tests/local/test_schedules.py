"""Schedule expressions (rate/cron/at, time zones) and the Scheduler firing targets on a VirtualClock."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.clock import VirtualClock
from local.model import ScheduleSpec, StackModel, StateMachineSpec
from local.ports import InvokeResult, ResourceNotFoundException
from local.provision import client, provision
from local.schedules import Scheduler, next_fire_times, parse_expression

REGION = "us-east-1"
ACCOUNT = "123456789012"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:nightly-flow"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sweeper"
START = datetime(2026, 3, 10, 10, 7, tzinfo=UTC).timestamp()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(values: list[float]) -> list[str]:
    return [datetime.fromtimestamp(v, tz=UTC).strftime("%Y-%m-%dT%H:%M") for v in values]


def spec(expression: str, *, timezone: str = "UTC", **kwargs: Any) -> ScheduleSpec:
    values: dict[str, Any] = {"target_arn": MACHINE_ARN, "input": None} | kwargs
    return ScheduleSpec("Sched", "sched", expression, timezone=timezone, **values)


# after 2026-03-10T10:07Z, a Tuesday; expected times are UTC
CRON_TABLE = [
    (
        "cron(0/5 * * * ? *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-10T10:10", "2026-03-10T10:15", "2026-03-10T10:20"],
    ),
    ("cron(0 2 * * ? *)", "UTC", "2026-03-10T10:07", ["2026-03-11T02:00", "2026-03-12T02:00"]),
    (
        "cron(15 10 ? * MON-FRI *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-10T10:15", "2026-03-11T10:15", "2026-03-12T10:15", "2026-03-13T10:15", "2026-03-16T10:15"],
    ),
    (
        "cron(0 10-14/2 * * ? *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-10T12:00", "2026-03-10T14:00", "2026-03-11T10:00"],
    ),
    (
        "cron(0 0 ? * FRI-MON *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-13T00:00", "2026-03-14T00:00", "2026-03-15T00:00", "2026-03-16T00:00", "2026-03-20T00:00"],
    ),
    (
        "cron(0 12 L * ? *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-31T12:00", "2026-04-30T12:00", "2026-05-31T12:00"],
    ),
    (
        "cron(0 9 LW * ? *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-31T09:00", "2026-04-30T09:00", "2026-05-29T09:00"],
    ),
    (
        "cron(0 9 15W * ? *)",
        "UTC",
        "2026-03-10T10:07",
        ["2026-03-16T09:00", "2026-04-15T09:00", "2026-05-15T09:00"],
    ),
    ("cron(0 9 1W * ? *)", "UTC", "2026-07-15T00:00", ["2026-08-03T09:00", "2026-09-01T09:00"]),
    ("cron(0 18 ? * 6#3 *)", "UTC", "2026-03-10T10:07", ["2026-03-20T18:00", "2026-04-17T18:00"]),
    ("cron(0 18 ? * FRIL *)", "UTC", "2026-03-10T10:07", ["2026-03-27T18:00", "2026-04-24T18:00"]),
    ("cron(30 8 ? * L *)", "UTC", "2026-03-10T10:07", ["2026-03-14T08:30", "2026-03-21T08:30"]),
    ("cron(0 0 29 2 ? *)", "UTC", "2026-03-10T10:07", ["2028-02-29T00:00"]),
    ("cron(0 0 1 JAN,JUL ? *)", "UTC", "2026-03-10T10:07", ["2026-07-01T00:00", "2027-01-01T00:00"]),
    ("cron(0 0 1 1 ? 2027-2028)", "UTC", "2026-03-10T10:07", ["2027-01-01T00:00", "2028-01-01T00:00"]),
    # New York: EST (UTC-5) until 2026-03-08, EDT (UTC-4) until 2026-11-01
    ("cron(0 9 * * ? *)", "America/New_York", "2026-03-07T00:00", ["2026-03-07T14:00", "2026-03-08T13:00"]),
    ("cron(30 2 * * ? *)", "America/New_York", "2026-03-07T12:00", ["2026-03-09T06:30", "2026-03-10T06:30"]),
    ("cron(30 1 * * ? *)", "America/New_York", "2026-10-31T12:00", ["2026-11-01T05:30", "2026-11-02T06:30"]),
]


@pytest.mark.parametrize(("expression", "timezone", "after", "expected"), CRON_TABLE)
def test_cron_next_fire_times(expression: str, timezone: str, after: str, expected: list[str]) -> None:
    assert iso(next_fire_times(spec(expression, timezone=timezone), ts(after), len(expected))) == expected


def test_cron_years_end() -> None:
    times = next_fire_times(spec("cron(0 0 1 1 ? 2027-2028)"), START, 5)
    assert iso(times) == ["2027-01-01T00:00", "2028-01-01T00:00"]


def test_rate_and_at_fire_times() -> None:
    assert next_fire_times(spec("rate(5 minutes)"), START, 3) == [START + 300, START + 600, START + 900]
    assert next_fire_times(spec("rate(1 hour)"), START, 2) == [START + 3600, START + 7200]
    assert next_fire_times(spec("rate(2 days)"), START, 1) == [START + 2 * 86400]
    paris = spec("at(2026-03-10T12:00:00)", timezone="Europe/Paris")
    assert iso(next_fire_times(paris, START, 3)) == ["2026-03-10T11:00"]
    assert next_fire_times(paris, ts("2026-03-10T11:00"), 3) == []


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 0 * * * *)",  # neither day field is ?
        "cron(0 0 ? * ? *)",  # both are
        "cron(60 0 * * ? *)",
        "cron(0 0 * * ?)",
        "cron(0 0 ? * 6#6 *)",
        "cron(0/0 0 * * ? *)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "at(tomorrow)",
        "every 5 minutes",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(expression)):
        parse_expression(expression)


# -- Scheduler against moto ---------------------------------------------------------------------------


class FakeInvoker:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, bytes, str]] = []
        self.error = error
        self.lock = threading.Lock()

    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        with self.lock:
            self.calls.append((function, payload, invocation_type))
        if self.error:
            raise self.error
        return InvokeResult(payload=b"", status_code=202)


def _model(*schedules: ScheduleSpec) -> StackModel:
    machine = StateMachineSpec(
        "NightlyFlow",
        "nightly-flow",
        MACHINE_ARN,
        "STANDARD",
        json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        f"arn:aws:iam::{ACCOUNT}:role/r",
        tracing=False,
    )
    return StackModel(
        stack_name="pay",
        region=REGION,
        account_id=ACCOUNT,
        template_path=Path("t.yaml"),
        parameters={},
        state_machines={"nightly-flow": machine},
        schedules={s.name: s for s in schedules},
    )


def executions(endpoint: str) -> list[dict[str, Any]]:
    sfn = client("stepfunctions", endpoint, REGION)
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return list(sfn.list_executions(stateMachineArn=machine)["executions"])


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_rate_schedule_fires_once_per_period_on_virtual_time(endpoint: str) -> None:
    model = _model(ScheduleSpec("Every5", "every5", "rate(5 minutes)", MACHINE_ARN, '{"job": "sweep"}'))
    provision(model, endpoint)
    clock = VirtualClock(start=START)
    scheduler = Scheduler(model, clock=clock, endpoint_url=endpoint, invoker=FakeInvoker()).start()
    try:
        time.sleep(0.1)
        assert executions(endpoint) == []  # nothing before time moves
        clock.advance(5 * 60)
        wait_until(lambda: len(executions(endpoint)) == 1)
        clock.advance(5 * 60)
        wait_until(lambda: len(executions(endpoint)) == 2)
        clock.advance(4 * 60)  # 14 minutes: no third period yet
        time.sleep(0.2)
        assert len(executions(endpoint)) == 2
        assert [f.scheduled_time - START for f in scheduler.fired] == [300, 600]
        clock.advance(60)  # 15 minutes: the third period
        wait_until(lambda: len(executions(endpoint)) == 3)
        clock.advance(7 * 86400)  # a jump over 2,016 periods fires once, not 2,016 times
        wait_until(lambda: len(executions(endpoint)) == 4)
        time.sleep(0.2)
        assert len(executions(endpoint)) == 4
    finally:
        scheduler.stop()
    sfn = client("stepfunctions", endpoint, REGION)
    described = sfn.describe_execution(executionArn=scheduler.fired[0].execution_arn)
    assert json.loads(described["input"]) == {"job": "sweep"}
    assert all(f.error is None for f in scheduler.fired)


def test_schedule_never_jumps_an_auto_clock(endpoint: str) -> None:
    model = _model(ScheduleSpec("Every5", "every5", "rate(5 minutes)", MACHINE_ARN, None))
    provision(model, endpoint)
    clock = VirtualClock(start=START, auto=True)
    scheduler = Scheduler(model, clock=clock, endpoint_url=endpoint, invoker=FakeInvoker()).start()
    try:
        time.sleep(0.3)
        assert clock.now() == START
        assert clock.pending() == [(START + 300, False)]
    finally:
        scheduler.stop()
        clock.close()


def test_fire_due_and_disabled_schedules(endpoint: str) -> None:
    disabled = ScheduleSpec("Off", "off", "rate(1 minute)", FUNCTION_ARN, None, enabled=False)
    daily = ScheduleSpec("Daily", "daily", "cron(0 2 * * ? *)", FUNCTION_ARN, '{"x": 1}')
    model = _model(disabled, daily)
    clock = VirtualClock(start=START)
    invoker = FakeInvoker()
    scheduler = Scheduler(model, clock=clock, endpoint_url=endpoint, invoker=invoker)
    assert scheduler.fire_due() == []
    assert scheduler.next_fire_time("daily") == ts("2026-03-11T02:00")
    assert scheduler.next_fire_time("off") is None
    clock.advance(3 * 86400)
    fired = scheduler.fire_due()
    assert iso([f.scheduled_time for f in fired]) == ["2026-03-13T02:00"]  # missed days coalesced
    assert scheduler.fire_due() == []  # each fire time once
    assert scheduler.next_fire_time("daily") == ts("2026-03-14T02:00")
    assert invoker.calls == [(FUNCTION_ARN, b'{"x": 1}', "Event")]  # async invoke; never the disabled one


def test_events_rule_without_input_sends_scheduled_event(endpoint: str) -> None:
    rule = ScheduleSpec("Hourly", "hourly", "rate(1 hour)", MACHINE_ARN, None, kind="events")
    lambda_rule = ScheduleSpec("Ping", "ping", "rate(1 hour)", FUNCTION_ARN, None, kind="events")
    model = _model(rule, lambda_rule)
    provision(model, endpoint)
    clock = VirtualClock(start=START)
    invoker = FakeInvoker()
    scheduler = Scheduler(model, clock=clock, endpoint_url=endpoint, invoker=invoker)
    scheduler.fire_due()
    clock.advance(3600)
    fired = scheduler.fire_due()
    assert [f.schedule for f in fired] == ["hourly", "ping"]
    sfn = client("stepfunctions", endpoint, REGION)
    event = json.loads(sfn.describe_execution(executionArn=fired[0].execution_arn)["input"])
    assert event["detail-type"] == "Scheduled Event"
    assert (event["source"], event["account"], event["region"]) == ("aws.events", ACCOUNT, REGION)
    assert event["time"] == datetime.fromtimestamp(START + 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/hourly"]
    assert event["detail"] == {}
    [(function, payload, invocation_type)] = invoker.calls
    assert (function, invocation_type) == (FUNCTION_ARN, "Event")
    assert json.loads(payload)["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/ping"]


def test_scheduler_default_input_and_target_errors(endpoint: str) -> None:
    model = _model(
        ScheduleSpec("Flow", "flow", "rate(1 minute)", MACHINE_ARN, None),
        ScheduleSpec("Gone", "gone", "rate(1 minute)", FUNCTION_ARN, None),
    )
    provision(model, endpoint)
    clock = VirtualClock(start=START)
    invoker = FakeInvoker(error=ResourceNotFoundException("Function not found: sweeper"))
    scheduler = Scheduler(model, clock=clock, endpoint_url=endpoint, invoker=invoker)
    scheduler.fire_due()
    clock.advance(60)
    flow, gone = scheduler.fire_due()
    sfn = client("stepfunctions", endpoint, REGION)
    assert sfn.describe_execution(executionArn=flow.execution_arn)["input"] == "{}"
    assert gone.error == "ResourceNotFoundException: Function not found: sweeper"
    clock.advance(60)
    assert len(scheduler.fire_due()) == 2  # a failed firing does not stop the schedule


def test_bad_expression_fails_at_construction() -> None:
    model = _model(ScheduleSpec("Bad", "bad", "cron(0 0 * * * *)", MACHINE_ARN, None))
    with pytest.raises(ValueError, match="day-of-month"):
        Scheduler(
            model, clock=VirtualClock(start=START), endpoint_url="http://127.0.0.1:1", invoker=FakeInvoker()
        )
