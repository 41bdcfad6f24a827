"""Step Functions behaviour through unmodified boto3 clients (and the AWS CLI) against a local AwsEndpoint,
with moto_adapter installed and an in-process fake LambdaInvoker."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import moto_adapter
from local.aws_endpoint import AwsEndpoint
from local.clock import Clock, RealClock, VirtualClock
from local.ports import InvokeResult, TooManyRequestsException

ASL = Path(__file__).parent / "fixtures" / "asl"
ROLE = "arn:aws:iam::123456789012:role/local"
REGION = "us-east-1"
ENV = {
    "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": REGION,
}

Handler = Callable[[dict[str, Any]], Any]


class HandlerError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class FakeInvoker:
    """Plain Python callables by function name; a HandlerError becomes an Unhandled function error."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self._lock = threading.Lock()

    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        name = function.rsplit(":", 1)[-1] if ":function:" in function else function
        event = json.loads(payload or b"{}")
        with self._lock:
            self.calls.append((name, event, trace_header))
        try:
            result = self.handlers[name](event)
        except HandlerError as exc:
            body = {"errorType": exc.error_type, "errorMessage": str(exc), "stackTrace": []}
            return InvokeResult(json.dumps(body).encode(), function_error="Unhandled")
        return InvokeResult(json.dumps(result).encode())


@pytest.fixture(scope="module")
def endpoint() -> Iterator[AwsEndpoint]:
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    ep = AwsEndpoint(port=0).start()
    try:
        yield ep
    finally:
        ep.stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def invoker() -> FakeInvoker:
    return FakeInvoker()


@pytest.fixture
def auto_clock() -> Iterator[VirtualClock]:
    clock = VirtualClock(auto=True)
    yield clock
    clock.close()


class ListSink:
    def __init__(self) -> None:
        self.segments: list[dict[str, Any]] = []

    def emit(self, segment: dict[str, Any]) -> None:
        self.segments.append(segment)


def install(endpoint: AwsEndpoint, invoker: FakeInvoker, clock: Clock, sink: ListSink | None = None) -> Any:
    moto_adapter.install(
        clock=clock, lambda_invoker=invoker, endpoint_url=endpoint.url, segment_sink=sink, region=REGION
    )
    return boto3.client("stepfunctions", endpoint_url=endpoint.url, region_name=REGION)


def create(sfn: Any, fixture: str, *, sm_type: str = "STANDARD", **subs: str) -> str:
    definition = (ASL / fixture).read_text()
    for key, value in subs.items():
        definition = definition.replace("${" + key + "}", value)
    name = f"{fixture.split('.')[0]}-{uuid.uuid4().hex[:8]}"
    return str(
        sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE, type=sm_type)[
            "stateMachineArn"
        ]
    )


def wait_done(sfn: Any, execution_arn: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.01)
    raise AssertionError(f"{execution_arn} still RUNNING after {timeout}s")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=execution_arn)["events"])


# --- StartSyncExecution ---------------------------------------------------------------------------------
def test_start_sync_execution_success_failure_and_standard(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    invoker.handlers["child-work"] = lambda e: {"doubled": e["n"] * 2}
    arn = create(sfn, "nested_child.asl.json", sm_type="EXPRESS")

    ok = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 21}', name="sync-ok")
    assert ok["status"] == "SUCCEEDED"
    assert json.loads(ok["output"]) == {"doubled": 42}
    assert ok["executionArn"].startswith(f"arn:aws:states:{REGION}:123456789012:express:")
    assert ok["executionArn"].split(":")[7] == "sync-ok"
    assert ok["stateMachineArn"] == arn
    assert ok["stopDate"] >= ok["startDate"]
    assert ok["billingDetails"]["billedDurationInMilliseconds"] >= 100
    assert ok["billingDetails"]["billedMemoryUsedInMB"] > 0

    def fail(_: dict[str, Any]) -> Any:
        raise HandlerError("CardDeclined", "insufficient funds")

    invoker.handlers["child-work"] = fail
    bad = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 1}')
    assert bad["status"] == "FAILED"
    assert bad["error"] == "CardDeclined"
    assert json.loads(bad["cause"])["errorMessage"] == "insufficient funds"
    assert "output" not in bad
    assert len(bad["name"]) == 36  # a UUID when no name is given

    standard = create(sfn, "pass_chain.asl.json")
    with pytest.raises(sfn.exceptions.StateMachineTypeNotSupported):
        sfn.start_sync_execution(stateMachineArn=standard, input="{}")


def test_sync_host_prefix_is_accepted(endpoint, invoker, auto_clock):
    """A client that does not disable host prefix injection sends Host: sync-<host>; it is served too."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    sfn = install(endpoint, invoker, auto_clock)
    arn = create(sfn, "pass_chain.asl.json", sm_type="EXPRESS")
    body = json.dumps({"stateMachineArn": arn, "input": "{}"})
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AWSStepFunctions.StartSyncExecution",
        "Host": f"sync-{endpoint.host}:{endpoint.port}",
    }
    request = AWSRequest(method="POST", url=endpoint.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials("local", "local"), "states", REGION).add_auth(request)
    response = requests.post(endpoint.url + "/", data=body, headers=dict(request.headers), timeout=10)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["output"]) == {"one": 1, "two": 2}


def test_aws_cli_start_sync_execution(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    arn = create(sfn, "pass_chain.asl.json", sm_type="EXPRESS")
    aws = Path(sys.executable).parent / "aws"
    env = {**os.environ, **ENV, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    proc = subprocess.run(
        [
            str(aws),
            "stepfunctions",
            "start-sync-execution",
            "--endpoint-url",
            endpoint.url,
            "--state-machine-arn",
            arn,
            "--input",
            '{"from": "cli"}',
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"from": "cli", "one": 1, "two": 2}


# --- Callbacks ------------------------------------------------------------------------------------------
def _start_callback(sfn: Any, invoker: FakeInvoker) -> tuple[str, str]:
    tokens: list[str] = []

    def notify(event: dict[str, Any]) -> Any:
        tokens.append(event["token"])
        return {}

    invoker.handlers["notify"] = notify
    arn = create(sfn, "callback.asl.json")
    execution = sfn.start_execution(stateMachineArn=arn, input='{"order": "o-1"}')["executionArn"]
    wait_for(lambda: bool(tokens))
    return execution, tokens[0]


def test_callback_success_and_failure(endpoint, invoker):
    clock = VirtualClock()
    sfn = install(endpoint, invoker, clock)
    execution, token = _start_callback(sfn, invoker)
    sfn.send_task_success(taskToken=token, output='{"approved": true}')
    assert json.loads(wait_done(sfn, execution)["output"]) == {"approved": True}

    execution, token = _start_callback(sfn, invoker)
    sfn.send_task_failure(taskToken=token, error="Rejected", cause="manual review said no")
    desc = wait_done(sfn, execution)
    assert (desc["status"], desc["error"], desc["cause"]) == ("FAILED", "Rejected", "manual review said no")
    failed = [e for e in history(sfn, execution) if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "Rejected"
    assert failed[0]["taskFailedEventDetails"]["cause"] == "manual review said no"
    with pytest.raises(sfn.exceptions.InvalidToken):
        sfn.send_task_success(taskToken="no-such-token", output="{}")


def test_heartbeat_keeps_task_alive_then_times_out_deterministically(endpoint, invoker):
    clock = VirtualClock()
    sfn = install(endpoint, invoker, clock)
    t0 = clock.now()
    execution, token = _start_callback(sfn, invoker)
    wait_for(lambda: (t0 + 60, False) in clock.pending())  # the heartbeat wait is armed

    clock.advance(50)
    sfn.send_task_heartbeat(taskToken=token)
    wait_for(lambda: (t0 + 110, False) in clock.pending())  # re-armed 60 s after the heartbeat
    clock.advance(50)  # t0+100: past the first deadline, but the heartbeat moved it
    time.sleep(0.1)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"

    clock.advance(20)  # t0+120 > t0+110
    desc = wait_done(sfn, execution)
    assert desc["status"] == "FAILED"
    assert desc["error"] == "States.HeartbeatTimeout"
    timed_out = [e for e in history(sfn, execution) if e["type"] == "TaskTimedOut"]
    assert timed_out[0]["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"
    assert timed_out[0]["timestamp"].timestamp() == pytest.approx(t0 + 120, abs=0.01)


# --- Retry / Catch / history ----------------------------------------------------------------------------
def test_retry_backoff_on_virtual_clock_with_max_delay_and_catch(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)

    def charge(_: dict[str, Any]) -> Any:
        raise HandlerError("AcquirerTimeout", "acquirer did not answer")

    invoker.handlers["charge"] = charge
    arn = create(sfn, "retry_backoff.asl.json")
    started = time.monotonic()
    execution = sfn.start_execution(stateMachineArn=arn, input='{"amount": 5}')["executionArn"]
    desc = wait_done(sfn, execution)
    assert time.monotonic() - started < 3  # 230 s of backoff, virtually

    assert desc["status"] == "SUCCEEDED"
    output = json.loads(desc["output"])
    assert output["amount"] == 5  # Catch ResultPath keeps the input
    assert output["error"]["Error"] == "AcquirerTimeout"
    assert json.loads(output["error"]["Cause"])["errorMessage"] == "acquirer did not answer"
    assert [c[0] for c in invoker.calls] == ["charge"] * 4

    events = history(sfn, execution)
    scheduled = [e["timestamp"].timestamp() for e in events if e["type"] == "TaskScheduled"]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(scheduled)]
    assert gaps == [30, 100, 100]  # 30, min(300, 100), min(3000, 100)

    # History shape: ids 1..n, each previousEventId points back, failures carry AWS-shaped details.
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "ExecutionStarted" and events[0]["previousEventId"] == 0
    assert all(0 <= e["previousEventId"] < e["id"] for e in events)
    failures = [e for e in events if e["type"] == "TaskFailed"]
    assert len(failures) == 4
    details = failures[0]["taskFailedEventDetails"]
    assert details["error"] == "AcquirerTimeout"
    assert details["resourceType"] == "lambda" and details["resource"] == "invoke"
    assert events[-1]["type"] == "ExecutionSucceeded"


def test_lambda_throttling_and_timeout_errors(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)

    def busy(_: dict[str, Any]) -> Any:
        raise TooManyRequestsException("Rate Exceeded.")

    def slow(_: dict[str, Any]) -> Any:
        raise HandlerError("Sandbox.Timedout", "RequestId: 1 Error: Task timed out after 3.00 seconds")

    invoker.handlers.update(busy=busy, slow=slow)
    execution = sfn.start_execution(stateMachineArn=create(sfn, "throttle.asl.json"), input="{}")[
        "executionArn"
    ]
    desc = wait_done(sfn, execution)
    assert desc["status"] == "SUCCEEDED"
    output = json.loads(desc["output"])
    assert output["plain"]["Error"] == "Lambda.TooManyRequestsException"
    assert output["integration"]["Error"] == "Lambda.TooManyRequestsException"
    assert "Rate Exceeded." in output["integration"]["Cause"]
    assert "Status Code: 429" in output["plain"]["Cause"]
    assert output["timeout"]["Error"] == "Sandbox.Timedout"
    failed = [e for e in history(sfn, execution) if e["type"] == "LambdaFunctionFailed"]
    assert failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "Lambda.TooManyRequestsException"


# --- Parallel / Map / JSONata / nested -----------------------------------------------------------------
def test_parallel_and_map_with_max_concurrency(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    active = 0
    peak = 0
    lock = threading.Lock()

    def double(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.03)
        with lock:
            active -= 1
        return n * 2

    invoker.handlers["double"] = double
    execution = sfn.start_execution(
        stateMachineArn=create(sfn, "parallel_map.asl.json"), input='{"items": [1, 2, 3, 4, 5]}'
    )["executionArn"]
    desc = wait_done(sfn, execution)
    assert json.loads(desc["output"]) == [[2, 4, 6, 8, 10], "done"]
    assert peak == 2


def test_jsonata_states(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    invoker.handlers["score"] = lambda e: {"score": e["total"] // 10, "who": e["who"]}
    arn = create(sfn, "jsonata.asl.json", sm_type="EXPRESS")
    name = arn.rsplit(":", 1)[-1]

    big = {"customer": 'Ann "the payer" O\'Neil', "lines": [{"amount": 70}, {"amount": 80}]}
    result = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps(big))
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"score": 15, "count": 2, "name": name}
    assert invoker.calls[-1][1] == {"total": 150, "who": 'Ann "the payer" O\'Neil'}

    small = sfn.start_sync_execution(
        stateMachineArn=arn, input=json.dumps({"customer": "b", "lines": [{"amount": 3}]})
    )
    assert json.loads(small["output"]) == {"small": True, "total": 3}

    mixed = create(sfn, "jsonata_per_state.asl.json", sm_type="EXPRESS")
    out = sfn.start_sync_execution(stateMachineArn=mixed, input='{"amount": 21}', name="mixed-1")
    assert json.loads(out["output"]) == {"amount": 42, "tag": "JSONPATH", "execution": "mixed-1"}


def test_invalid_definition_does_not_poison_later_parses(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    downgrade = {
        "QueryLanguage": "JSONata",
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "QueryLanguage": "JSONPath", "End": True}},
    }
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.create_state_machine(
            name=f"bad-{uuid.uuid4().hex[:6]}", definition=json.dumps(downgrade), roleArn=ROLE
        )
    arn = create(sfn, "pass_chain.asl.json", sm_type="EXPRESS")
    assert sfn.start_sync_execution(stateMachineArn=arn, input="{}")["status"] == "SUCCEEDED"


def test_nested_sync2_express_child_from_standard_parent(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    invoker.handlers["child-work"] = lambda e: {"doubled": e["n"] * 2}
    child = create(sfn, "nested_child.asl.json", sm_type="EXPRESS")
    parent = create(sfn, "nested_parent.asl.json", ChildArn=child)

    execution = sfn.start_execution(stateMachineArn=parent, input='{"n": 4}')["executionArn"]
    desc = wait_done(sfn, execution)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"]) == {"child": {"doubled": 8}, "status": "SUCCEEDED"}

    def fail(_: dict[str, Any]) -> Any:
        raise HandlerError("ChildBroke", "child failed")

    invoker.handlers["child-work"] = fail
    execution = sfn.start_execution(stateMachineArn=parent, input='{"n": 4}')["executionArn"]
    output = json.loads(wait_done(sfn, execution)["output"])
    assert output["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(output["error"]["Cause"])
    assert (cause["Status"], cause["Error"]) == ("FAILED", "ChildBroke")


# --- Clock ----------------------------------------------------------------------------------------------
def test_seven_day_wait_costs_under_a_second(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    arn = create(sfn, "wait_week.asl.json")
    started = time.monotonic()
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    desc = wait_done(sfn, execution)
    assert time.monotonic() - started < 1.0
    assert json.loads(desc["output"]) == {"settled": True}
    assert (desc["stopDate"] - desc["startDate"]).total_seconds() == pytest.approx(604800, abs=1)


def test_stop_execution_interrupts_a_wait(endpoint, invoker):
    clock = RealClock()
    sfn = install(endpoint, invoker, clock)
    execution = sfn.start_execution(stateMachineArn=create(sfn, "wait_week.asl.json"), input="{}")[
        "executionArn"
    ]
    wait_for(lambda: any(e["type"] == "WaitStateEntered" for e in history(sfn, execution)))
    sfn.stop_execution(executionArn=execution, error="Ops", cause="cancelled")
    assert wait_done(sfn, execution)["status"] == "ABORTED"


# --- Threads --------------------------------------------------------------------------------------------
def test_thread_count_stays_bounded_over_200_executions(endpoint, invoker, auto_clock):
    sfn = install(endpoint, invoker, auto_clock)
    arn = create(sfn, "pass_chain.asl.json", sm_type="EXPRESS")
    for _ in range(20):
        sfn.start_sync_execution(stateMachineArn=arn, input="{}")
    baseline = threading.active_count()
    for _ in range(200):
        assert sfn.start_sync_execution(stateMachineArn=arn, input="{}")["status"] == "SUCCEEDED"
    time.sleep(0.1)
    assert threading.active_count() <= baseline + 10
    from moto.stepfunctions.parser import utils

    assert len(utils.TMP_THREADS) <= 20  # the engine's list is pruned, not 600+ dead threads


# --- X-Ray ----------------------------------------------------------------------------------------------
def test_trace_header_produces_state_machine_segment_and_task_subsegments(endpoint, invoker, auto_clock):
    sink = ListSink()
    sfn = install(endpoint, invoker, auto_clock, sink)
    invoker.handlers["child-work"] = lambda e: {"ok": True}
    arn = create(sfn, "nested_child.asl.json", sm_type="EXPRESS")
    root, parent = "1-5f000000-0123456789abcdef01234567", "1122334455667788"
    result = sfn.start_sync_execution(
        stateMachineArn=arn, input='{"n": 1}', traceHeader=f"Root={root};Parent={parent};Sampled=1"
    )
    assert result["status"] == "SUCCEEDED"
    [segment] = sink.segments
    assert segment["trace_id"] == root and segment["parent_id"] == parent
    assert segment["origin"] == "AWS::StepFunctions::StateMachine"
    assert segment["aws"]["stepfunctions"]["execution_arn"] == result["executionArn"]
    [task] = segment["subsegments"]
    assert task["name"] == "Work"
    assert segment["start_time"] <= task["start_time"] <= task["end_time"] <= segment["end_time"]
    header = invoker.calls[-1][2]
    assert header == f"Root={root};Parent={task['id']};Sampled=1"

    sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 1}')  # untraced: nothing emitted
    assert len(sink.segments) == 1 and invoker.calls[-1][2] is None


def test_http_trace_header_continues_the_callers_trace(endpoint, invoker, auto_clock):
    """The X-Ray SDK traces a boto3 call by adding X-Amzn-Trace-Id to the HTTP request, not traceHeader."""
    sink = ListSink()
    sfn = install(endpoint, invoker, auto_clock, sink)
    invoker.handlers["child-work"] = lambda e: {"ok": True}
    arn = create(sfn, "nested_child.asl.json", sm_type="EXPRESS")
    root, parent = "1-5f000001-0123456789abcdef01234567", "8877665544332211"

    def add_header(request, **_):
        request.headers["X-Amzn-Trace-Id"] = f"Root={root};Parent={parent};Sampled=1"

    sfn.meta.events.register("before-sign.states.*", add_header)
    sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 1}')
    sfn.start_execution(stateMachineArn=create(sfn, "nested_child.asl.json", sm_type="STANDARD"), input="{}")
    deadline = time.monotonic() + 10
    while len(sink.segments) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(s["trace_id"], s["parent_id"]) for s in sink.segments] == [(root, parent), (root, parent)]


def test_task_timeout_runs_on_clock_and_undeclared_timeouts_run_inline(endpoint, invoker):
    """A Task without TimeoutSeconds runs on the evaluating thread (no watchdog thread); one with
    TimeoutSeconds still runs under a watchdog that fires on the clock."""
    clock = VirtualClock()
    sfn = install(endpoint, invoker, clock)
    threads: list[tuple[str, threading.Thread]] = []  # Thread objects: idents get reused
    release = threading.Event()

    def quick(event: dict[str, Any]) -> Any:
        threads.append(("quick", threading.current_thread()))
        return event

    def slow(event: dict[str, Any]) -> Any:
        threads.append(("slow", threading.current_thread()))
        release.wait(5)
        return event

    invoker.handlers.update(quick=quick, slow=slow)
    inline = create(sfn, "task_timeouts.asl.json", sm_type="EXPRESS", Bounded="quick")
    out = sfn.start_sync_execution(stateMachineArn=inline, input='{"n": 1}')
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"n": 1}
    first, second, bounded = (thread for _, thread in threads)
    assert first is second  # no TimeoutSeconds: both evaluated on the same (program) thread
    assert bounded is not first  # TimeoutSeconds 30: evaluated under a watchdog thread

    threads.clear()
    t0 = clock.now()
    timed = create(sfn, "task_timeouts.asl.json", Bounded="slow")
    execution = sfn.start_execution(stateMachineArn=timed, input="{}")["executionArn"]
    try:
        wait_for(lambda: any(name == "slow" for name, _ in threads))
        wait_for(lambda: (t0 + 30, False) in clock.pending())  # the TimeoutSeconds wait is on the clock
        clock.advance(29)
        time.sleep(0.05)
        assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        clock.advance(2)
        desc = wait_done(sfn, execution)
    finally:
        release.set()
    assert (desc["status"], desc["error"]) == ("FAILED", "States.Timeout")
