"""The whole runtime on the fixture stack, driven only through unmodified clients (boto3, HTTP, AWS CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.clock import VirtualClock
from local.runtime import LocalRuntime, RuntimeConfig, client_environment
from tests.local.clients import local_client

FIXTURE = Path(__file__).parent / "fixtures" / "stack" / "template.yaml"
API_KEY = "fixture-key-0123456789abcdef"


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    clock = VirtualClock(auto=True)
    rt = LocalRuntime(
        RuntimeConfig(template=FIXTURE, aws_port=0, api_port=0, xray_port=0, echo_logs=False), clock=clock
    )
    rt.start()
    old = {k: os.environ.get(k) for k in client_environment(rt.endpoint_url, "us-east-1")}
    os.environ.update(client_environment(rt.endpoint_url, rt.model.region))
    try:
        yield rt
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        rt.stop()
        clock.close()


def _client(rt: LocalRuntime, service: str) -> Any:
    return local_client(rt.endpoint_url, service, rt.model.region)


def _arn(rt: LocalRuntime, logical_id: str) -> str:
    return next(sm.arn for sm in rt.model.state_machines.values() if sm.logical_id == logical_id)


def test_condition_drops_prod_only_queue_and_functions_are_named_by_stack(runtime: LocalRuntime) -> None:
    model = runtime.model
    assert model is not None
    assert not any(q.logical_id == "ProdOnlyQueue" for q in model.queues.values())
    assert {f.logical_id for f in model.functions.values()} >= {
        "ApiFunction",
        "StepFunction",
        "WorkerFunction",
    }


def test_lambda_invoke_through_boto3_runs_the_handler_with_its_layer(runtime: LocalRuntime) -> None:
    lam = _client(runtime, "lambda")
    name = next(f.function_name for f in runtime.model.functions.values() if f.logical_id == "StepFunction")
    event = {"op": "validate", "order": {"order_id": "inv-1", "items": [1]}}
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp
    assert body["greeting"] == "hello, inv-1"  # layer import + Globals env var
    assert body["function"] == name


def test_start_sync_execution_runs_five_lambda_tasks_and_writes_dynamodb(runtime: LocalRuntime) -> None:
    sfn = _client(runtime, "stepfunctions")
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    out = sfn.start_sync_execution(
        stateMachineArn=_arn(runtime, "ExpressMachine"),
        input=json.dumps({"order_id": order_id, "items": [2, 3], "fail_times": 2}),
    )
    assert out["status"] == "SUCCEEDED", out
    result = json.loads(out["output"])
    assert result["trail"] == ["validate", "price", "reserve", "charge", "confirm"]
    assert result["total"] == 5
    item = _client(runtime, "dynamodb").get_item(
        TableName=runtime.model.tables[next(iter(runtime.model.tables))].table_name,
        Key={"pk": {"S": order_id}},
    )
    assert item["Item"]["status"] == {"S": "confirmed"}


def test_catch_turns_a_handler_error_into_the_fail_state(runtime: LocalRuntime) -> None:
    sfn = _client(runtime, "stepfunctions")
    out = sfn.start_sync_execution(
        stateMachineArn=_arn(runtime, "ExpressMachine"), input=json.dumps({"order_id": "x", "items": []})
    )
    assert out["status"] == "FAILED"
    assert out["error"] == "OrderRejected"


def test_api_requires_key_and_returns_the_workflow_result(runtime: LocalRuntime) -> None:
    url = runtime.api_url
    denied = requests.post(f"{url}/orders", json={"order_id": "a1", "items": [1]}, timeout=10)
    assert denied.status_code == 403
    assert denied.json() == {"message": "Forbidden"}
    ok = requests.post(
        f"{url}/orders", json={"order_id": "a1", "items": [1, 1]}, headers={"x-api-key": API_KEY}, timeout=20
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["order"]["total"] == 2
    assert ok.json()["api_key"] == API_KEY
    got = requests.get(f"{url}/orders/a1", headers={"x-api-key": API_KEY}, timeout=10)
    assert got.json() == {"id": "a1", "status": "confirmed", "total": 2}
    health = requests.get(f"{url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["trace"].startswith("Root=1-")


def test_lambda_timeout_is_reported_as_lambda_does(runtime: LocalRuntime) -> None:
    name = next(f.function_name for f in runtime.model.functions.values() if f.logical_id == "SlowFunction")
    resp = _client(runtime, "lambda").invoke(FunctionName=name, Payload=b'{"sleep": 3}')
    assert resp["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in json.loads(resp["Payload"].read())["errorMessage"]


def test_sqs_partial_batch_failure_ends_in_the_dlq_and_successes_reach_sns_subscriber(
    runtime: LocalRuntime,
) -> None:
    sqs = _client(runtime, "sqs")
    work = runtime.queue_urls[
        next(q.queue_name for q in runtime.model.queues.values() if q.logical_id == "WorkQueue")
    ]
    dlq = runtime.queue_urls[
        next(q.queue_name for q in runtime.model.queues.values() if q.logical_id == "WorkDLQ")
    ]
    events_q = runtime.queue_urls[
        next(q.queue_name for q in runtime.model.queues.values() if q.logical_id == "EventsQueue")
    ]
    sqs.send_message(QueueUrl=work, MessageBody="good-1")
    sqs.send_message(QueueUrl=work, MessageBody="poison")
    deadline = time.monotonic() + 20
    dead: list = []
    while time.monotonic() < deadline and not dead:
        dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]
    published = sqs.receive_message(QueueUrl=events_q, WaitTimeSeconds=2).get("Messages", [])
    assert any(json.loads(json.loads(m["Body"])["Message"]) == {"done": "good-1"} for m in published)


def _wait_for_executions(sfn: Any, arn: str, *, count: int, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    execs: list = []
    while time.monotonic() < deadline:
        execs = sfn.list_executions(stateMachineArn=arn)["executions"]
        if len(execs) >= count and all(e["status"] != "RUNNING" for e in execs):
            break
        time.sleep(0.05)
    return execs


def test_seven_day_wait_then_nested_express_child_costs_no_real_time(runtime: LocalRuntime) -> None:
    sfn = _client(runtime, "stepfunctions")
    arn = _arn(runtime, "NightlyMachine")
    started = time.monotonic()
    sfn.start_execution(stateMachineArn=arn, name=f"n-{uuid.uuid4().hex[:6]}", input="{}")
    execs = _wait_for_executions(sfn, arn, count=1)
    assert time.monotonic() - started < 10
    assert execs[0]["status"] == "SUCCEEDED", sfn.get_execution_history(executionArn=execs[0]["executionArn"])
    output = json.loads(sfn.describe_execution(executionArn=execs[0]["executionArn"])["output"])
    assert output["trail"][-1] == "confirm"
    history = sfn.get_execution_history(executionArn=execs[0]["executionArn"])["events"]
    waited = [e["timestamp"] for e in history if e["type"] in ("WaitStateEntered", "WaitStateExited")]
    assert (waited[1] - waited[0]).total_seconds() >= 604800


def test_aws_cli_start_sync_execution_against_the_endpoint(runtime: LocalRuntime) -> None:
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, **client_environment(runtime.endpoint_url, runtime.model.region)}
    proc = subprocess.run(
        [
            str(aws),
            "stepfunctions",
            "start-sync-execution",
            "--endpoint-url",
            runtime.endpoint_url,
            "--state-machine-arn",
            _arn(runtime, "ExpressMachine"),
            "--input",
            '{"order_id": "cli", "items": [4]}',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "SUCCEEDED"


def test_a_workflow_retry_inside_an_api_call_advances_the_auto_clock(runtime: LocalRuntime) -> None:
    # The API's Lambda waits on StartSyncExecution while the workflow sits in a retry backoff: the clock
    # must still jump (the function is waiting on the runtime, not running), or both wait forever.
    started = time.monotonic()
    ok = requests.post(
        f"{runtime.api_url}/orders",
        json={"order_id": f"r-{uuid.uuid4().hex[:6]}", "items": [3], "fail_times": 2},
        headers={"x-api-key": API_KEY},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["order"]["trail"][0] == "validate"
    assert time.monotonic() - started < 4  # the function's Timeout is 5 s: no real backoff was slept


def test_one_trace_spans_the_api_stage_and_the_lambda_function(runtime: LocalRuntime) -> None:
    resp = requests.get(f"{runtime.api_url}/health", timeout=10)
    root = resp.headers["X-Amzn-Trace-Id"].split(";")[0].removeprefix("Root=")
    deadline = time.monotonic() + 5
    origins: set[str] = set()
    while time.monotonic() < deadline and not {"AWS::ApiGateway::Stage", "AWS::Lambda::Function"} <= origins:
        origins = {s.get("origin", "") for s in runtime.segments.get_trace(root)}
        time.sleep(0.05)
    assert {"AWS::ApiGateway::Stage", "AWS::Lambda", "AWS::Lambda::Function"} <= origins
    xray = _client(runtime, "xray")
    runtime.segments.flush()
    traces = xray.batch_get_traces(TraceIds=[root])["Traces"]
    assert traces and traces[0]["Id"] == root  # unmodified clients see it through the X-Ray API


def test_a_traced_execution_emits_its_machine_segment_in_the_callers_trace(runtime: LocalRuntime) -> None:
    sfn = _client(runtime, "stepfunctions")
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    out = sfn.start_sync_execution(
        stateMachineArn=_arn(runtime, "ExpressMachine"),
        input=json.dumps({"order_id": f"t-{uuid.uuid4().hex[:6]}", "items": [1]}),
        traceHeader=f"Root={root};Sampled=1",
    )
    assert out["status"] == "SUCCEEDED"
    deadline = time.monotonic() + 5
    docs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        docs = runtime.segments.get_trace(root)
        if any(d.get("origin") == "AWS::StepFunctions::StateMachine" for d in docs):
            break
        time.sleep(0.05)
    machine = [d for d in docs if d.get("origin") == "AWS::StepFunctions::StateMachine"]
    assert len(machine) == 1, [(d.get("origin"), d.get("name")) for d in docs]
    tasks = [s["name"] for s in machine[0].get("subsegments", [])]
    assert {"Validate", "Price", "Reserve", "Charge", "Confirm"} <= set(tasks)
    assert any(d.get("origin") == "AWS::Lambda::Function" for d in docs)
