"""Service graph from segment documents: nodes, edges, statistics, histograms (pure functions)."""

from __future__ import annotations

from typing import Any

from local.xray_graph import (
    NodeId,
    analyze_trace,
    build_graph,
    dedupe,
    histogram,
    percentile,
    services_document,
)
from tests.local.xray_docs import ACCOUNT, payment_trace

API = NodeId("orders/dev", "AWS::ApiGateway::Stage")
ROUTER_SVC = NodeId("router", "AWS::Lambda")
ROUTER = NodeId("router", "AWS::Lambda::Function")
MACHINE = NodeId("flow", "AWS::StepFunctions::StateMachine")
WORKER_SVC = NodeId("worker", "AWS::Lambda")
WORKER = NodeId("worker", "AWS::Lambda::Function")
ACQUIRER = NodeId("acquirer.example", "remote")
DYNAMO = NodeId("DynamoDB", "AWS::DynamoDB::Table")
CLIENT = NodeId("orders/dev", "client")


def by_name(services: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(s["Name"], s.get("Type")): s for s in services}


def test_one_trace_gives_every_node_and_edge() -> None:
    trace_id, docs = payment_trace()
    view = analyze_trace(trace_id, docs)
    assert view.root is docs[0] or view.root == docs[0]
    assert set(view.node_ids()) == {API, ROUTER_SVC, ROUTER, MACHINE, WORKER_SVC, WORKER, ACQUIRER, DYNAMO}
    graph = build_graph([view])
    assert set(graph.edges) == {
        (CLIENT, API),
        (API, ROUTER_SVC),
        (ROUTER_SVC, ROUTER),
        (ROUTER, MACHINE),  # through the SFN subsegment of the independent handler subsegment
        (MACHINE, WORKER_SVC),  # through the task's Lambda subsegment
        (WORKER_SVC, WORKER),
        (WORKER, ACQUIRER),
        (WORKER, DYNAMO),
    }
    assert graph.roots == {API}


def test_edge_statistics_are_the_callers_view_node_statistics_the_callees() -> None:
    trace_id, docs = payment_trace()
    graph = build_graph([analyze_trace(trace_id, docs)])
    # API stage's Lambda subsegment ran 0.48 s; the Lambda service segment itself 0.46 s.
    assert round(graph.edges[(API, ROUTER_SVC)].durations[0], 3) == 0.48
    assert round(graph.nodes[ROUTER_SVC].durations[0], 3) == 0.46
    assert round(graph.edges[(WORKER, ACQUIRER)].durations[0], 3) == 0.05


def test_statistics_count_ok_error_throttle_fault_across_traces() -> None:
    traces = [
        payment_trace(payment_id="p1", acquirer_s=0.05),
        payment_trace(payment_id="p2", acquirer_s=0.2, acquirer_status=503, status=502),
        payment_trace(payment_id="p3", acquirer_s=0.1, acquirer_status=429),
        payment_trace(payment_id="p4", acquirer_s=0.1, acquirer_status=402),
    ]
    graph = build_graph([analyze_trace(t, d) for t, d in traces])
    services = services_document(graph, account_id=ACCOUNT)
    found = by_name(services)
    acq = found[("acquirer.example", "remote")]["SummaryStatistics"]
    assert acq["TotalCount"] == 4 and acq["OkCount"] == 1
    assert acq["FaultStatistics"] == {"OtherCount": 1, "TotalCount": 1}
    # the simulator's 429 was not flagged throttle in the document, so it counts as an "other" error
    assert acq["ErrorStatistics"] == {"ThrottleCount": 0, "OtherCount": 2, "TotalCount": 2}
    assert round(acq["TotalResponseTime"], 3) == 0.45
    api = found[("orders/dev", "AWS::ApiGateway::Stage")]
    assert api["Root"] is True and api["AccountId"] == ACCOUNT and api["State"] == "active"
    assert api["SummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1  # the 502
    assert api["SummaryStatistics"]["TotalCount"] == 4
    # worker -> acquirer edge carries the same counts, and a histogram of the client-side times
    worker = found[("worker", "AWS::Lambda::Function")]
    refs = {s["ReferenceId"]: s for s in services}
    edge = next(e for e in worker["Edges"] if refs[e["ReferenceId"]]["Name"] == "acquirer.example")
    assert edge["SummaryStatistics"]["TotalCount"] == 4
    assert edge["ResponseTimeHistogram"] == [
        {"Value": 0.05, "Count": 1},
        {"Value": 0.1, "Count": 2},
        {"Value": 0.2, "Count": 1},
    ]
    client = found[("orders/dev", "client")]
    assert "SummaryStatistics" not in client and client["Edges"][0]["SummaryStatistics"]["TotalCount"] == 4


def test_throttle_flag_counts_as_throttle() -> None:
    trace_id, docs = payment_trace()
    docs[0]["error"], docs[0]["throttle"] = True, True
    graph = build_graph([analyze_trace(trace_id, docs)])
    stats = graph.nodes[API].summary()
    assert stats["ErrorStatistics"] == {"ThrottleCount": 1, "OtherCount": 0, "TotalCount": 1}
    assert stats["OkCount"] == 0


def test_in_progress_documents_are_not_counted_and_completed_copy_wins() -> None:
    trace_id, docs = payment_trace()
    machine = docs[4]
    running = {k: v for k, v in machine.items() if k != "end_time"} | {"in_progress": True}
    assert dedupe([running, machine])[0]["end_time"] == machine["end_time"]
    assert dedupe([machine, running])[0]["end_time"] == machine["end_time"]
    view = analyze_trace(trace_id, [running if d is machine else d for d in docs])
    assert view.partial
    assert build_graph([view]).nodes[MACHINE].total == 0


def test_orphan_subsegment_and_unknown_parent() -> None:
    trace_id, docs = payment_trace()
    orphan = dict(docs[3], parent_id="ffffffffffffffff", id="1111111111111111")
    view = analyze_trace(trace_id, [docs[0], orphan])
    assert view.root == docs[0]
    # the orphan's SFN call has no known caller service; the stage's Lambda call, no segment of the
    # Lambda service in this trace, so X-Ray infers a "Lambda" node for it
    assert set(view.node_ids()) == {API, NodeId("Lambda", "AWS::Lambda")}


def test_percentile_and_histogram() -> None:
    values = [0.01 * i for i in range(1, 101)]
    assert percentile(values, 50) == 0.5
    assert percentile(values, 99) == 0.99
    assert percentile([], 50) is None
    assert histogram([0.0101, 0.0102, 0.5]) == [{"Value": 0.01, "Count": 2}, {"Value": 0.5, "Count": 1}]
