"""End to end on a fixture stack: API → Lambda (Powertools) → EXPRESS state machine → Lambda → HTTP service.
Only unmodified clients look at the result: boto3's X-Ray client (GetTraceSummaries by annotation,
GetServiceGraph nodes/edges/counts, GetTraceGraph), the /_local/xray/ pages, and CloudWatch metrics from
the functions' EMF lines."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from local.clock import VirtualClock
from local.runtime import LocalRuntime, RuntimeConfig
from tests.local.clients import local_client

FIXTURE = Path(__file__).parent / "fixtures" / "xray" / "template.yaml"


class _Acquirer(BaseHTTPRequestHandler):
    """Answers 201, or 503 for an amount of 999 (a fault on the remote node)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        status = 503 if body.get("amount") == 999 else 201
        data = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def acquirer() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Acquirer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def runtime(acquirer: int) -> Iterator[LocalRuntime]:
    clock = VirtualClock(auto=True)
    config = RuntimeConfig(
        template=FIXTURE,
        parameter_overrides={"AcquirerUrl": f"http://localhost:{acquirer}"},
        region="us-east-1",
        aws_port=0,
        api_port=0,
        xray_port=0,
        echo_logs=False,
    )
    with LocalRuntime(config, clock=clock) as rt:
        yield rt
    clock.close()


def client(rt: LocalRuntime, service: str) -> Any:
    return local_client(rt.endpoint_url, service)


def eventually[T](probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("not seen in time")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def orders(runtime: LocalRuntime) -> dict[str, str]:
    """Two orders: one the acquirer accepts, one it answers 503. order id -> trace id."""
    traces = {}
    for order_id, amount in (("ord-ok", 100), ("ord-fault", 999)):
        resp = requests.post(
            f"{runtime.api_url}/orders", json={"order_id": order_id, "amount": amount}, timeout=60
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["order_id"] == order_id
        traces[order_id] = resp.headers["X-Amzn-Trace-Id"].split(";")[0].removeprefix("Root=")
    return traces


def window(rt: LocalRuntime) -> dict[str, float]:
    now = rt.clock.now()
    return {"StartTime": now - 3600, "EndTime": now + 3600}


def test_trace_summaries_find_the_order_by_annotation(runtime: LocalRuntime, orders: dict[str, str]) -> None:
    xray = client(runtime, "xray")

    def complete() -> dict[str, Any] | None:
        found = xray.get_trace_summaries(**window(runtime), FilterExpression='annotation.order_id = "ord-ok"')
        summaries = found["TraceSummaries"]
        services = {(s["Name"], s.get("Type")) for s in summaries[0]["ServiceIds"]} if summaries else set()
        return summaries[0] if ("localhost", "remote") in services else None

    summary = eventually(complete)
    assert summary["Id"] == orders["ord-ok"]
    assert summary["EntryPoint"]["Type"] == "AWS::ApiGateway::Stage"
    assert summary["Http"]["HttpStatus"] == 200 and summary["Http"]["HttpMethod"] == "POST"
    assert not summary["HasFault"] and not summary["HasError"]
    # (the virtual clock stands still while a request runs, so the runtime's own segments last 0 s here)
    assert summary["Duration"] >= summary["ResponseTime"] >= 0
    types = {s.get("Type") for s in summary["ServiceIds"]}
    assert {
        "AWS::ApiGateway::Stage",
        "AWS::Lambda",
        "AWS::Lambda::Function",
        "AWS::StepFunctions::StateMachine",
        "remote",
    } <= types
    order_values = summary["Annotations"]["order_id"]
    assert [v["AnnotationValue"] for v in order_values] == [{"StringValue": "ord-ok"}]
    # put by both functions' handler subsegments
    assert {s["Name"] for s in order_values[0]["ServiceIds"]} == {
        f.function_name for f in runtime.model.functions.values()
    }
    faulty = xray.get_trace_summaries(**window(runtime), FilterExpression='service("localhost") { fault }')
    assert [s["Id"] for s in faulty["TraceSummaries"]] == [orders["ord-fault"]]
    slow = xray.get_trace_summaries(**window(runtime), FilterExpression="responsetime > 3600")
    assert slow["TraceSummaries"] == []


def test_service_graph_has_the_nodes_and_edges_with_counts(
    runtime: LocalRuntime, orders: dict[str, str]
) -> None:
    xray = client(runtime, "xray")
    front = next(f.function_name for f in runtime.model.functions.values() if f.logical_id == "FrontFunction")
    charge = next(
        f.function_name for f in runtime.model.functions.values() if f.logical_id == "ChargeFunction"
    )
    machine = next(iter(runtime.model.state_machines.values())).name

    def graph() -> list[dict[str, Any]] | None:
        services = xray.get_service_graph(**window(runtime))["Services"]
        remote = [s for s in services if s.get("Type") == "remote"]
        return services if remote and remote[0]["SummaryStatistics"]["TotalCount"] == 2 else None

    services = eventually(graph)
    by_ref = {s["ReferenceId"]: s for s in services}
    node = {(s["Name"], s.get("Type")): s for s in services}
    stage = next(s for s in services if s.get("Type") == "AWS::ApiGateway::Stage")
    edges = {
        (
            (s["Name"], s.get("Type")),
            (by_ref[e["ReferenceId"]]["Name"], by_ref[e["ReferenceId"]].get("Type")),
        ): e
        for s in services
        for e in s["Edges"]
    }
    stage_id = (stage["Name"], "AWS::ApiGateway::Stage")
    expected = {
        ((stage["Name"], "client"), stage_id),
        (stage_id, (front, "AWS::Lambda")),
        ((front, "AWS::Lambda"), (front, "AWS::Lambda::Function")),
        ((front, "AWS::Lambda::Function"), (machine, "AWS::StepFunctions::StateMachine")),
        ((machine, "AWS::StepFunctions::StateMachine"), (charge, "AWS::Lambda")),
        ((charge, "AWS::Lambda"), (charge, "AWS::Lambda::Function")),
        ((charge, "AWS::Lambda::Function"), ("localhost", "remote")),
    }
    assert expected <= set(edges), sorted(set(edges))
    for edge in expected:
        assert edges[edge]["SummaryStatistics"]["TotalCount"] == 2, edge
    acquirer = node[("localhost", "remote")]["SummaryStatistics"]
    assert acquirer["OkCount"] == 1 and acquirer["FaultStatistics"]["TotalCount"] == 1
    assert stage["Root"] is True and stage["SummaryStatistics"]["TotalCount"] == 2
    assert node[(machine, "AWS::StepFunctions::StateMachine")]["SummaryStatistics"]["OkCount"] == 2
    assert sum(h["Count"] for h in edges[expected.pop()]["ResponseTimeHistogram"]) == 2
    one = xray.get_trace_graph(TraceIds=[orders["ord-ok"]])["Services"]
    remote = next(s for s in one if s.get("Type") == "remote")
    assert remote["SummaryStatistics"]["TotalCount"] == 1 and remote["SummaryStatistics"]["OkCount"] == 1


def test_map_page_data_and_trace_json(runtime: LocalRuntime, orders: dict[str, str]) -> None:
    base = f"{runtime.endpoint_url}/_local/xray"

    def both_calls_seen() -> dict[str, Any] | None:
        found: dict[str, Any] = requests.get(f"{base}/map.json", timeout=10).json()
        return found if any(n["name"] == "localhost" and n["count"] == 2 for n in found["nodes"]) else None

    data = eventually(both_calls_seen)
    remote = next(n for n in data["nodes"] if n["name"] == "localhost")
    assert remote["faults"] == 1 and remote["p50_ms"] is not None and remote["p99_ms"] >= remote["p50_ms"]
    assert {t["trace_id"] for t in remote["slowest"]} == set(orders.values())
    page = requests.get(f"{base}/map", timeout=10)
    assert page.status_code == 200 and "<svg" in page.text and "localhost" in page.text
    trace = requests.get(f"{base}/traces/{orders['ord-ok']}", timeout=10).json()
    assert trace["Id"] == orders["ord-ok"] and len(trace["Segments"]) >= 7
    assert requests.get(f"{base}/traces/1-00000000-000000000000000000000000", timeout=10).status_code == 404


def test_emf_metrics_reach_cloudwatch(runtime: LocalRuntime, orders: dict[str, str]) -> None:
    cw = client(runtime, "cloudwatch")
    listed = eventually(lambda: cw.list_metrics(Namespace="ShopFixture")["Metrics"])
    metric = next(m for m in listed if m["MetricName"] == "OrdersPlaced")
    assert {"Name": "flow", "Value": "express"} in metric["Dimensions"]
    now = datetime.datetime.now(tz=datetime.UTC)

    def sums() -> list[float] | None:
        stats = cw.get_metric_statistics(
            Namespace="ShopFixture",
            MetricName="OrdersPlaced",
            Dimensions=metric["Dimensions"],
            StartTime=now - datetime.timedelta(hours=1),
            EndTime=now + datetime.timedelta(hours=1),
            Period=7200,
            Statistics=["Sum"],
        )["Datapoints"]
        found = [d["Sum"] for d in stats]
        # The two orders' EMF lines may reach CloudWatch in different uploads: wait for the second one.
        return found if sum(found) >= 2 else None

    assert eventually(sums) == [2.0]


def test_cli_traces_and_map_against_the_stack(
    runtime: LocalRuntime, orders: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from local import cli

    url = ["--endpoint-url", runtime.endpoint_url]
    assert (
        cli.main(["traces", "--filter", 'annotation.order_id = "ord-fault"', *url, "--region", "us-east-1"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(orders["ord-fault"])
    assert "FAULT" in lines[0] and "order_id=ord-fault" in lines[0]
    assert cli.main(["traces", "--filter", "fault AND", *url, "--region", "us-east-1"]) == 2
    assert "InvalidRequestException: Invalid filter expression" in capsys.readouterr().err
    out = tmp_path / "map.svg"
    assert cli.main(["xray-map", "--out", str(out), *url]) == 0
    assert "localhost" in out.read_text() and "StateMachine" in out.read_text()
