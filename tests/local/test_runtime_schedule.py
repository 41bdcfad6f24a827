"""A schedule of the fixture stack fires on the runtime's clock, in its own stack (manual clock)."""

from __future__ import annotations

import time

from local.clock import VirtualClock
from local.runtime import LocalRuntime, RuntimeConfig
from tests.local.test_runtime_e2e import FIXTURE, _arn, _client, _wait_for_executions


def test_a_second_stack_in_the_same_process_is_refused() -> None:
    import pytest

    from local.errors import LocalRuntimeError

    clock = VirtualClock(auto=False)
    config = RuntimeConfig(template=FIXTURE, aws_port=0, api_port=0, xray_port=0, echo_logs=False)
    with LocalRuntime(config, clock=clock), pytest.raises(LocalRuntimeError, match="already running"):
        LocalRuntime(config, clock=clock).start()


def test_schedule_fires_once_per_period_on_a_manual_clock() -> None:
    clock = VirtualClock(auto=False)
    rt = LocalRuntime(
        RuntimeConfig(template=FIXTURE, aws_port=0, api_port=0, xray_port=0, echo_logs=False), clock=clock
    )
    rt.start()
    try:
        sfn = _client(rt, "stepfunctions")
        arn = _arn(rt, "TickMachine")
        time.sleep(0.2)
        assert sfn.list_executions(stateMachineArn=arn)["executions"] == []
        clock.advance(301)
        assert len(_wait_for_executions(sfn, arn, count=1)) == 1
        clock.advance(300)
        execs = _wait_for_executions(sfn, arn, count=2)
        assert len(execs) == 2
        assert {e["status"] for e in execs} == {"SUCCEEDED"}
    finally:
        rt.stop()
