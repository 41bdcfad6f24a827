"""Operators and auditors, through the whole local stack: X-Ray traces found by payment (unmodified boto3
X-Ray client), the service graph, and the audit trail of GET /payments/{id}/events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from .stack import (
    APPROVED,
    MERCHANT_B_KEY,
    THREE_DS_CHALLENGE,
    AppStack,
    PaymentsApi,
    payment_body,
    running_app,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
DECLINED = "4000000000009995"  # insufficient_funds
RETURN_URL = "https://shop.example/return"


@pytest.fixture(scope="module")
def app() -> Iterator[AppStack]:
    with running_app() as stack:
        # The simulator's ACS posts its signed callbacks to this stack's API (as under `make run`).
        stack.acquirer.acquirer.callback_base_url = stack.runtime.api_url
        yield stack


@pytest.fixture
def api(app: AppStack) -> Iterator[PaymentsApi]:
    client = app.api
    yield client
    client.close()


def status_of(api: PaymentsApi, payment_id: str, *statuses: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        view: dict[str, Any] = api.get(payment_id).json()
        return view if view["status"] in statuses else None

    return wait_for(probe, what=f"{payment_id} to be one of {statuses}")


def events_of(api: PaymentsApi, payment_id: str, until: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    def probe() -> list[dict[str, Any]] | None:
        answer = api.session.get(
            f"{api.base_url}/payments/{payment_id}/events", headers=api.headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data if until(data) else None

    return wait_for(probe, what=f"the audit trail of {payment_id}")


# --- the audit trail ---------------------------------------------------------------------------------------


def test_the_audit_trail_tells_who_changed_what_in_order(app: AppStack, api: PaymentsApi) -> None:
    created = api.create(payment_body(APPROVED, capture_method="manual"))
    assert created.status_code == 200, created.text
    payment_id = created.json()["id"]
    assert api.act(payment_id, "capture").status_code == 200
    assert api.act(payment_id, "refunds", {"amount": 500}).status_code == 200

    events = events_of(api, payment_id, lambda es: any(e["changes"].get("amount_refunded") for e in es))
    story = [(e["type"], e["from_status"], e["to_status"], e["actor"].split(":")[0]) for e in events]
    expected = [
        ("payment.created", None, "processing", "api"),
        ("payment.workflow_started", "processing", "processing", "workflow"),
        ("payment.status_changed", "processing", "requires_capture", "workflow"),
        ("payment.status_changed", "requires_capture", "succeeded", "api"),
        ("payment.updated", "succeeded", "succeeded", "api"),
    ]
    assert [s for s in story if s in expected] == expected, story  # in this order (flags may interleave)
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), key=lambda i: int(i[4:]))

    by_type = {e["type"]: e for e in events}
    started = by_type["payment.workflow_started"]
    assert started["execution_arn"].startswith("arn:aws:states:") and payment_id in started["execution_arn"]
    assert started["actor"] == f"workflow:{started['execution_arn']}"
    assert started["execution_history_url"].endswith(started["execution_arn"])
    assert events[0]["actor"] == "api:merchant_a" and events[0]["trace_id"].startswith("1-")
    refund = next(e for e in events if e["changes"].get("amount_refunded"))
    assert refund["changes"]["amount_refunded"]["to"] == 500
    assert "tok_" not in json.dumps(events)  # the card token never leaves the payment record


def test_the_audit_trail_of_a_decline_names_the_reason(app: AppStack, api: PaymentsApi) -> None:
    answer = api.create(payment_body(DECLINED))
    assert answer.status_code == 402
    payment_id = answer.json()["error"]["payment_id"]
    events = events_of(api, payment_id, lambda es: any(e["to_status"] == "failed" for e in es))
    failed = next(e for e in events if e["to_status"] == "failed")
    assert (failed["from_status"], failed["reason"]) == ("processing", "card_declined")
    assert failed["changes"]["decline_code"] == {"from": None, "to": "insufficient_funds"}


def test_the_audit_trail_is_read_only_and_the_merchants_own(app: AppStack, api: PaymentsApi) -> None:
    payment_id = api.create(payment_body(APPROVED)).json()["id"]
    url = f"{api.base_url}/payments/{payment_id}/events"
    other = PaymentsApi(api.base_url, api_key=MERCHANT_B_KEY)
    assert other.session.get(url, headers=other.headers(), timeout=30).status_code == 404
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = requests.request(method, url, headers=api.headers("k"), data="{}", timeout=30)
        assert answer.status_code == 403 and "Missing Authentication Token" in answer.text, method


def test_every_workflow_write_to_the_payments_table_names_its_writer() -> None:
    """The audit trail's `actor` is `updated_by`: a workflow write without it would be misattributed."""
    missing = []

    def walk(name: str, states: dict[str, Any]) -> None:
        for state_name, state in states.items():
            params = state.get("Parameters") or {}
            if (
                str(state.get("Resource", "")).startswith("arn:aws:states:::dynamodb:")
                and params.get("TableName") == "${PaymentsTable}"
            ):
                text = json.dumps(params)
                if "updated_by" not in text or "workflow:{}" not in text:
                    missing.append(f"{name}:{state_name}")
            for branch in state.get("Branches", []):
                walk(name, branch["States"])
            for key in ("Iterator", "ItemProcessor"):
                if key in state:
                    walk(name, state[key]["States"])

    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        walk(path.name, json.loads(path.read_text())["States"])
    assert missing == []


# --- X-Ray -------------------------------------------------------------------------------------------------


def xray_summaries(app: AppStack, expression: str) -> list[dict[str, Any]]:
    xray = app.client("xray")
    now = datetime.now(UTC)
    answer = xray.get_trace_summaries(
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(hours=1), FilterExpression=expression
    )
    return list(answer["TraceSummaries"])


def trace_documents(app: AppStack, trace_id: str) -> list[dict[str, Any]]:
    traces = app.client("xray").batch_get_traces(TraceIds=[trace_id])["Traces"]
    return [json.loads(segment["Document"]) for trace in traces for segment in trace["Segments"]]


def walk_entities(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield doc
    for sub in doc.get("subsegments", []):
        yield from walk_entities(sub)


def annotations_by_state(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in documents:
        for entity in walk_entities(doc):
            notes = entity.get("annotations") or {}
            if "state" in notes:
                found.setdefault(str(notes["state"]), {}).update(notes)
    return found


def one_trace(
    app: AppStack, payment_id: str, *states: str, traces: int = 1, machines: int = 1
) -> list[dict[str, Any]]:
    """The trace of the payment's API call (found by ``annotation.payment_id``) once every named step has
    reported to it. ``traces``: how many traces carry the payment id (a 3-D Secure callback is its own
    request, so its own trace)."""

    def probe() -> list[dict[str, Any]] | None:
        summaries = xray_summaries(app, f'annotation.payment_id = "{payment_id}"')
        if len({s["Id"] for s in summaries}) != traces:
            return None
        for trace_id in {s["Id"] for s in summaries}:
            documents = trace_documents(app, trace_id)
            ran = [d for d in documents if d.get("origin") == "AWS::StepFunctions::StateMachine"]
            # The API stage's segment is written once its answer has gone out: it may come a batch later.
            api = any(d.get("origin") == "AWS::ApiGateway::Stage" for d in documents)
            if set(states) <= set(annotations_by_state(documents)) and len(ran) >= machines and api:
                return documents  # (the runtime's own segments may be uploaded a moment later)
        return None

    return wait_for(probe, what=f"{traces} trace(s) of {payment_id}, one with {states}")


def origins(documents: list[dict[str, Any]]) -> set[str]:
    return {str(doc.get("origin")) for doc in documents}


def test_a_sync_payment_is_one_annotated_trace_from_the_api_to_the_acquirer(
    app: AppStack, api: PaymentsApi
) -> None:
    answer = api.create(payment_body(APPROVED))
    assert answer.status_code == 200
    payment_id = answer.json()["id"]
    documents = one_trace(app, payment_id, "CreatePayment", "AuthorizePayment", "CapturePayment")
    assert {"AWS::ApiGateway::Stage", "AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"} <= origins(
        documents
    )
    notes = annotations_by_state(documents)
    ours = {
        key: value for key, value in notes["AuthorizePayment"].items() if key not in ("ColdStart", "Service")
    }
    assert ours == {  # Powertools adds ColdStart and Service
        "state": "AuthorizePayment",
        "payment_id": payment_id,
        "merchant_id": "merchant_a",
        "workflow": "express",
        "amount_band": "1k_10k",
        "outcome": "requires_capture",
    }
    assert notes["CapturePayment"]["outcome"] == "succeeded"
    assert notes["CreatePayment"]["outcome"] == "succeeded"
    remote = [
        e
        for doc in documents
        for e in walk_entities(doc)
        if e.get("namespace") == "remote" and "127.0.0.1" in str(e.get("name", ""))
    ]
    assert remote, "the acquirer calls are subsegments of the trace"
    text = json.dumps(documents)
    assert "4242424242424242" not in text and "tok_" not in json.dumps(notes)


def test_a_decline_is_found_by_its_decline_code(app: AppStack, api: PaymentsApi) -> None:
    payment_id = api.create(payment_body(DECLINED)).json()["error"]["payment_id"]
    one_trace(app, payment_id, "CreatePayment", "AuthorizePayment")
    found = wait_for(
        lambda: [
            s
            for s in xray_summaries(
                app,
                'annotation.decline_code = "insufficient_funds" AND annotation.state = "AuthorizePayment"',
            )
            if payment_id in json.dumps(s["Annotations"])
        ],
        what="the decline by decline_code",
    )
    assert len(found) == 1


def test_a_3ds_challenge_payment_is_one_trace_through_the_nested_workflow(
    app: AppStack, api: PaymentsApi
) -> None:
    answer = api.create(payment_body(THREE_DS_CHALLENGE, return_url=RETURN_URL))
    assert answer.status_code == 202
    payment_id = answer.json()["id"]
    view = status_of(api, payment_id, "requires_action")
    # The cardholder passes the challenge on the simulator's page (its form post), which calls us back.
    page = requests.post(
        view["next_action"]["url"], data={"otp": "123456"}, allow_redirects=False, timeout=30
    )
    assert page.status_code == 303
    assert status_of(api, payment_id, "succeeded", "failed")["status"] == "succeeded"
    steps = ("CreatePayment", "Request3DS", "Wait3DSCallback", "AuthorizePayment", "CapturePayment")
    documents = one_trace(
        app, payment_id, *steps, traces=2, machines=2
    )  # + the ACS's callback: its own request
    notes = annotations_by_state(documents)
    assert notes["CreatePayment"]["workflow"] == "standard"
    assert notes["AuthorizePayment"]["workflow"] == "standard"  # the nested EXPRESS run knows its parent
    machines = {
        str(doc.get("name")) for doc in documents if doc.get("origin") == "AWS::StepFunctions::StateMachine"
    }
    assert len(machines) == 2, machines  # the STANDARD machine and the nested EXPRESS one, in the same trace


def test_the_service_graph_has_the_payment_path(app: AppStack, api: PaymentsApi) -> None:
    assert api.create(payment_body(APPROVED)).status_code == 200
    now = datetime.now(UTC)

    def probe() -> dict[str, Any] | None:
        graph = app.client("xray").get_service_graph(
            StartTime=now - timedelta(hours=1), EndTime=now + timedelta(hours=1)
        )
        services = {s["Name"]: s for s in graph["Services"]}
        router = next((s for name, s in services.items() if name.endswith("RouterFunction")), None)
        express = next((s for name, s in services.items() if "payment-express" in name), None)
        return {"services": services, "router": router, "express": express} if router and express else None

    found = wait_for(probe, what="the router and the EXPRESS machine in the service graph")
    router, express = found["router"], found["express"]
    ids = {s["ReferenceId"]: name for name, s in found["services"].items()}
    assert router["SummaryStatistics"]["TotalCount"] >= 1
    assert any(ids.get(edge["ReferenceId"]) == express["Name"] for edge in router["Edges"]), router["Edges"]
    assert any("127.0.0.1" in name for name in found["services"]), "the acquirer is a node"


def metric_sum(app: AppStack, name: str, **dimensions: str) -> float:
    now = datetime.now(UTC)
    answer = app.client("cloudwatch").get_metric_statistics(
        Namespace="PayEasy",
        MetricName=name,
        Dimensions=[{"Name": key, "Value": value} for key, value in dimensions.items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )
    return float(sum(point["Sum"] for point in answer["Datapoints"]))


def test_outcome_and_acquirer_metrics_reach_cloudwatch(app: AppStack, api: PaymentsApi) -> None:
    """Powertools' EMF lines become CloudWatch metrics (as in AWS): outcomes by workflow, acquirer latency."""
    before = metric_sum(app, "PaymentsDeclined", workflow="express", service="payeasy")
    payment_id = api.create(payment_body(DECLINED)).json()["error"]["payment_id"]
    events_of(api, payment_id, lambda es: any(e["to_status"] == "failed" for e in es))
    wait_for(
        lambda: metric_sum(app, "PaymentsDeclined", workflow="express", service="payeasy") >= before + 1,
        what="PaymentsDeclined{workflow=express}",
    )
    assert metric_sum(app, "PaymentsSucceeded", workflow="express", service="payeasy") >= 1  # earlier tests
    wait_for(lambda: metric_sum(app, "AcquirerLatency", service="payeasy") > 0, what="AcquirerLatency")


def test_the_dashboard_is_deployed_with_every_panel_operators_need(app: AppStack) -> None:
    name = next(iter(app.runtime.model.dashboards))
    body = json.loads(app.client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"])
    titles = " | ".join(w["properties"]["title"] for w in body["widgets"])
    for panel in (
        "outcomes",
        "Success rate",
        "End to end",
        "Per step",
        "Acquirer",
        "Executions",
        "Queue",
        "Alarms",
    ):
        assert panel in titles, panel
    metrics = json.dumps(body)
    for metric in (
        "PaymentsSucceeded",
        "PaymentsDeclined",
        "PaymentsFailed",
        "AcquirerLatency",
        "ExecutionThrottled",
    ):
        assert metric in metrics, metric
    assert "${" not in metrics  # every substitution resolved
    alarms = next(w for w in body["widgets"] if w["type"] == "alarm")["properties"]["alarms"]
    described = app.client("cloudwatch").describe_alarms(AlarmNames=[a.split(":")[-1] for a in alarms])
    assert len(described["MetricAlarms"]) == len(alarms)  # each names an alarm of the stack
