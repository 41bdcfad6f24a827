"""Segment documents of one realistic trace, as the runtime and the X-Ray SDK write them:
API stage → Lambda → router function (+ handler subsegment with annotations) → StartSyncExecution →
state machine (task Authorize) → Lambda → worker function → an HTTP call to an acquirer + a DynamoDB call."""

from __future__ import annotations

from typing import Any

from local.xray import (
    api_stage_segment,
    lambda_function_segment,
    lambda_invoke_subsegment,
    lambda_service_segment,
    new_segment_id,
    new_trace_id,
    state_machine_segment,
    task_subsegment,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROUTER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:router"
WORKER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:worker"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:flow"


def lambda_pair(
    trace_id: str, parent_id: str, name: str, arn: str, start: float, end: float, **kw: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    service = lambda_service_segment(
        trace_id=trace_id,
        parent_id=parent_id,
        function_name=name,
        function_arn=arn,
        request_id="r-" + new_segment_id(),
        start=start,
        end=end,
    )
    function = lambda_function_segment(
        trace_id=trace_id,
        parent_id=service["id"],
        function_name=name,
        function_arn=arn,
        account_id=ACCOUNT,
        start=start + 0.001,
        end=end - 0.001,
        **kw,
    )
    return service, function


def payment_trace(
    *,
    payment_id: str = "pay_1",
    base: float = 1_800_000_000.0,
    status: int = 200,
    acquirer_s: float = 0.05,
    acquirer_status: int = 200,
    amount: int = 5000,
) -> tuple[str, list[dict[str, Any]]]:
    """(trace id, documents). Times in seconds from ``base``; the whole request takes ~0.5 s."""
    trace_id = new_trace_id(base)
    t = base
    invoke = lambda_invoke_subsegment(
        function_name="router", function_arn=ROUTER_ARN, region=REGION, start=t + 0.01, end=t + 0.49
    )
    api = api_stage_segment(
        trace_id=trace_id,
        api_name="orders",
        rest_api_id="abc123",
        stage="dev",
        region=REGION,
        account_id=ACCOUNT,
        request_id="req-1",
        method="POST",
        url="https://abc123.execute-api/dev/payments",
        status=status,
        start=t,
        end=t + 0.5,
        client_ip="10.0.0.1",
        user_agent="curl/8",
        subsegments=[invoke],
    )
    r_service, r_function = lambda_pair(trace_id, invoke["id"], "router", ROUTER_ARN, t + 0.02, t + 0.48)
    sfn_call: dict[str, Any] = {
        "id": new_segment_id(),
        "name": "SFN",
        "namespace": "aws",
        "start_time": t + 0.05,
        "end_time": t + 0.45,
        "aws": {"operation": "StartSyncExecution"},
        "http": {"response": {"status": 200}},
    }
    handler: dict[str, Any] = {
        "id": new_segment_id(),
        "name": "## handler",
        "type": "subsegment",
        "trace_id": trace_id,
        "parent_id": r_function["id"],
        "start_time": t + 0.03,
        "end_time": t + 0.47,
        "annotations": {"payment_id": payment_id, "amount": amount, "express": True},
        "subsegments": [sfn_call],
    }
    task_invoke = lambda_invoke_subsegment(
        function_name="worker", function_arn=WORKER_ARN, region=REGION, start=t + 0.1, end=t + 0.4
    )
    task = task_subsegment(
        state_name="Authorize", start=t + 0.09, end=t + 0.41, resource=WORKER_ARN, subsegments=[task_invoke]
    )
    machine = state_machine_segment(
        trace_id=trace_id,
        name="flow",
        state_machine_arn=MACHINE_ARN,
        execution_arn=MACHINE_ARN.replace("stateMachine", "express") + ":x",
        start=t + 0.06,
        end=t + 0.44,
        parent_id=sfn_call["id"],
        subsegments=[task],
    )
    w_service, w_function = lambda_pair(trace_id, task_invoke["id"], "worker", WORKER_ARN, t + 0.11, t + 0.39)
    acquirer: dict[str, Any] = {
        "id": new_segment_id(),
        "name": "acquirer.example",
        "namespace": "remote",
        "start_time": t + 0.15,
        "end_time": t + 0.15 + acquirer_s,
        "http": {
            "request": {"url": "http://acquirer.example/v1/authorizations", "method": "POST"},
            "response": {"status": acquirer_status},
        },
    }
    if acquirer_status >= 500:
        acquirer["fault"] = True
    elif acquirer_status >= 400:
        acquirer["error"] = True
    dynamo: dict[str, Any] = {
        "id": new_segment_id(),
        "name": "DynamoDB",
        "namespace": "aws",
        "start_time": t + 0.3,
        "end_time": t + 0.31,
        "aws": {"operation": "PutItem", "table_name": "payments"},
    }
    worker_sub: dict[str, Any] = {
        "id": new_segment_id(),
        "name": "## handler",
        "type": "subsegment",
        "trace_id": trace_id,
        "parent_id": w_function["id"],
        "start_time": t + 0.12,
        "end_time": t + 0.38,
        "annotations": {"payment_id": payment_id, "state": "Authorize"},
        "subsegments": [acquirer, dynamo],
    }
    docs = [api, r_service, r_function, handler, machine, w_service, w_function, worker_sub]
    return trace_id, docs
