"""Filter expressions and trace summaries (pure functions over segment documents), and the API answers."""

from __future__ import annotations

from typing import Any

import pytest

from local.xray_api import answer
from local.xray_graph import analyze_trace
from local.xray_query import FilterError, matches, parse_filter, summarize, trace_summaries
from tests.local.xray_docs import ACCOUNT, payment_trace

BASE = 1_800_000_000.0


@pytest.fixture(scope="module")
def traces() -> dict[str, list[dict[str, Any]]]:
    made = [
        payment_trace(payment_id="pay_ok", base=BASE, amount=5000),
        payment_trace(payment_id="pay_slow", base=BASE + 10, acquirer_s=0.2, amount=120),
        payment_trace(payment_id="pay_fault", base=BASE + 20, acquirer_status=503, status=502),
        payment_trace(payment_id="pay_decl", base=BASE + 30, status=402, acquirer_status=402),
    ]
    made[1][1][0]["end_time"] = BASE + 10 + 2.5  # a slow API response
    made[2][1][0]["throttle"] = True
    return dict(made)


def ids_matching(traces: dict[str, list[dict[str, Any]]], expression: str) -> set[str]:
    pred = parse_filter(expression)
    found = set()
    for tid, docs in traces.items():
        view = analyze_trace(tid, docs)
        if matches(view, pred):
            found.add(
                next(str(a) for d in docs for a in [(d.get("annotations") or {}).get("payment_id")] if a)
            )
    return found


ALL = {"pay_ok", "pay_slow", "pay_fault", "pay_decl"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('annotation.payment_id = "pay_ok"', {"pay_ok"}),
        ('annotation[payment_id] = "pay_slow"', {"pay_slow"}),
        ('annotation.payment_id != "pay_ok"', ALL - {"pay_ok"}),
        ("annotation.amount = 120", {"pay_slow"}),
        ("annotation.amount > 1000", ALL - {"pay_slow"}),
        ("annotation.express = true", ALL),
        ('annotation.payment_id BEGINSWITH "pay_f"', {"pay_fault"}),
        ('annotation.nope = "x"', set()),
        ('service("acquirer.example")', ALL),
        ('service("nobody")', set()),
        ('service(id(name: "worker", type: "AWS::Lambda::Function"))', ALL),
        ('service(id(name: "worker", type: "AWS::EC2::Instance"))', set()),
        ('id(name: "flow")', ALL),
        ("responsetime > 2", {"pay_slow"}),
        ("responsetime < 1", ALL - {"pay_slow"}),
        ("responsetime >= 0.5", ALL),
        ("responsetime <= 0.4", set()),
        ("duration > 2", {"pay_slow"}),
        ("fault", {"pay_fault"}),
        ("error", {"pay_decl"}),
        ("throttle", {"pay_fault"}),
        ("ok", {"pay_ok", "pay_slow"}),
        ("!fault", ALL - {"pay_fault"}),
        ("fault = false", ALL - {"pay_fault"}),
        ("http.status = 502", {"pay_fault"}),
        ("http.status >= 400", {"pay_fault", "pay_decl"}),
        ('http.method = "POST"', ALL),
        ('http.url CONTAINS "/payments"', ALL),
        ('service("acquirer.example") { fault }', {"pay_fault"}),
        ('service("acquirer.example") { responsetime > 0.15 }', {"pay_slow"}),
        ('service("acquirer.example") { http.status = 402 }', {"pay_decl"}),
        ('edge("worker", "acquirer.example") { error }', {"pay_decl"}),
        ('edge("orders/dev", "router")', ALL),
        ('edge("router", "worker")', set()),
        ("service() { fault }", {"pay_fault"}),
        ('annotation.payment_id = "pay_ok" OR fault', {"pay_ok", "pay_fault"}),
        ('service("acquirer.example") AND http.status = 502', {"pay_fault"}),
        ("NOT (fault OR error) AND responsetime > 1", {"pay_slow"}),
        ("not fault and not error", {"pay_ok", "pay_slow"}),
        ("(error || fault) && http.status != 402", {"pay_fault"}),
        ("", ALL),
    ],
)
def test_filter(traces: dict[str, list[dict[str, Any]]], expression: str, expected: set[str]) -> None:
    assert ids_matching(traces, expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "annotation.payment_id =",
        'annotation.payment_id = "x" AND',
        "responsetime > fast",
        "responsetime ~ 1",
        "(fault",
        'service("a"',
        "rootcause.fault.service { name = 'x' }",
        'http.status = "500"',
        'annotation.a > "x"',
        "fault = maybe",
        '"just a string"',
        "fault error",
        "annotation.a CONTAINS 3",
        "@",
    ],
)
def test_bad_filters_raise(expression: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(expression)


def test_summary_shape(traces: dict[str, list[dict[str, Any]]]) -> None:
    tid = next(t for t, d in traces.items() if d[3]["annotations"]["payment_id"] == "pay_fault")
    s = summarize(analyze_trace(tid, traces[tid]), account_id=ACCOUNT)
    assert s["Id"] == tid
    assert (s["HasFault"], s["HasError"], s["HasThrottle"], s["IsPartial"]) == (True, False, True, False)
    assert s["ResponseTime"] == 0.5 and s["Duration"] == 0.5
    assert s["Http"] == {
        "HttpURL": "https://abc123.execute-api/dev/payments",
        "HttpStatus": 502,
        "HttpMethod": "POST",
        "UserAgent": "curl/8",
        "ClientIp": "10.0.0.1",
    }
    assert s["EntryPoint"] == {
        "Name": "orders/dev",
        "Names": ["orders/dev"],
        "AccountId": ACCOUNT,
        "Type": "AWS::ApiGateway::Stage",
    }
    pay = s["Annotations"]["payment_id"]
    assert len(pay) == 1 and pay[0]["AnnotationValue"] == {"StringValue": "pay_fault"}
    # put by the router's and the worker's handler subsegments: both functions are named
    assert {sid["Name"] for sid in pay[0]["ServiceIds"]} == {"router", "worker"}
    assert s["Annotations"]["amount"][0]["AnnotationValue"] == {"NumberValue": 5000}
    assert s["Annotations"]["express"][0]["AnnotationValue"] == {"BooleanValue": True}
    assert {(x["Name"], x.get("Type")) for x in s["ServiceIds"]} >= {
        ("acquirer.example", "remote"),
        ("flow", "AWS::StepFunctions::StateMachine"),
        ("worker", "AWS::Lambda::Function"),
    }
    assert {"ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:flow"} in s["ResourceARNs"]
    assert s["FaultRootCauses"][0]["ClientImpacting"] is True


def test_trace_summaries_time_range_and_order(traces: dict[str, list[dict[str, Any]]]) -> None:
    views = [analyze_trace(t, d) for t, d in traces.items()]
    got = trace_summaries(views, start=BASE + 5, end=BASE + 25)
    assert [
        s["Annotations"]["payment_id"][0]["AnnotationValue"]["StringValue"] for s in got["TraceSummaries"]
    ] == [
        "pay_slow",
        "pay_fault",
    ]
    assert got["TracesProcessedCount"] == 2
    by_event = trace_summaries(views, start=BASE + 12, end=BASE + 13, time_range_type="Event")
    assert len(by_event["TraceSummaries"]) == 1  # the slow one ends at +12.5


def test_api_answers_and_errors(traces: dict[str, list[dict[str, Any]]]) -> None:
    status, body = answer(
        "TraceSummaries",
        {
            "StartTime": BASE - 1,
            "EndTime": BASE + 100,
            "FilterExpression": 'annotation.payment_id = "pay_ok"',
        },
        traces,
    )
    assert status == 200 and len(body["TraceSummaries"]) == 1
    status, body = answer(
        "TraceSummaries", {"StartTime": BASE, "EndTime": BASE + 1, "FilterExpression": "fault ="}, traces
    )
    assert status == 400 and body["__type"] == "InvalidRequestException"
    assert "Invalid filter expression" in body["message"]
    assert answer("TraceSummaries", {"EndTime": BASE}, traces)[0] == 400
    assert answer("ServiceGraph", {"StartTime": BASE + 2, "EndTime": BASE}, traces)[0] == 400
    status, body = answer("ServiceGraph", {"StartTime": BASE - 1, "EndTime": BASE + 100}, traces)
    assert status == 200 and len(body["Services"]) == 9
    one = next(iter(traces))
    status, body = answer("TraceGraph", {"TraceIds": [one]}, traces)
    worker = next(
        s for s in body["Services"] if s["Name"] == "worker" and s["Type"] == "AWS::Lambda::Function"
    )
    assert worker["SummaryStatistics"]["TotalCount"] == 1
    assert answer("TraceGraph", {}, traces)[0] == 400
