"""EMF log lines → CloudWatch metrics: parsing Powertools' real output and hand-written documents, and the
logs sink putting them to a CloudWatch endpoint where get-metric-statistics / list-metrics find them."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
from typing import Any

import boto3
import pytest

from local.clock import VirtualClock
from local.cloudwatch_logs import CloudWatchLogsSink
from local.emf import EmfError, EmfForwarder, metric_data, parse_emf

REGION = "us-east-1"


def powertools_line(monkeypatch: pytest.MonkeyPatch) -> str:
    """What Powertools Metrics prints at the end of an invocation."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricResolution, MetricUnit

    metrics = Metrics(namespace="Shop")
    metrics.add_dimension(name="workflow", value="express")
    metrics.add_metric(name="Paid", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Paid", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Paid", unit=MetricUnit.Count, value=3)
    metrics.add_metric(
        name="AcquirerLatency", unit=MetricUnit.Milliseconds, value=12.5, resolution=MetricResolution.High
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics.flush_metrics()
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1
    return lines[0]


def emf(metrics: list[dict[str, Any]], dims: list[list[str]], **members: Any) -> str:
    doc = {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [{"Namespace": "NS", "Dimensions": dims, "Metrics": metrics}],
        },
        **members,
    }
    return json.dumps(doc)


def test_powertools_output_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    line = powertools_line(monkeypatch)
    points = parse_emf(line)
    assert points is not None
    by_name = {p.name: p for p in points}
    assert set(by_name) == {"Paid", "AcquirerLatency"}
    paid, latency = by_name["Paid"], by_name["AcquirerLatency"]
    assert paid.namespace == "Shop" and paid.unit == "Count" and paid.storage_resolution == 60
    assert dict(paid.dimensions) == {"workflow": "express", "service": "orders"}
    assert paid.values == (1.0, 1.0, 3.0)
    assert latency.unit == "Milliseconds" and latency.storage_resolution == 1 and latency.values == (12.5,)
    assert paid.timestamp_ms == json.loads(line)["_aws"]["Timestamp"]


def test_metric_data_aggregates_repeated_values_per_datum(monkeypatch: pytest.MonkeyPatch) -> None:
    data = metric_data(parse_emf(powertools_line(monkeypatch)) or [])
    paid = next(d for d in data["Shop"] if d["MetricName"] == "Paid")
    assert paid["Values"] == [1.0, 3.0] and paid["Counts"] == [2.0, 1.0]
    assert paid["Unit"] == "Count" and paid["StorageResolution"] == 60
    assert isinstance(paid["Timestamp"], datetime.datetime) and paid["Timestamp"].tzinfo is not None


def test_every_dimension_set_gives_a_datum_and_single_values_work() -> None:
    line = emf([{"Name": "Hits"}], [["a"], ["a", "b"], []], a="x", b="y", Hits=4)
    points = parse_emf(line) or []
    assert [p.dimensions for p in points] == [(("a", "x"),), (("a", "x"), ("b", "y")), ()]
    assert all(p.values == (4.0,) and p.unit is None and p.storage_resolution == 60 for p in points)


def test_not_emf_lines_are_ignored() -> None:
    assert parse_emf("START RequestId: abc Version: $LATEST") is None
    assert parse_emf('{"level": "INFO", "message": "hello"}') is None
    assert parse_emf('{"_aws": oops') is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (emf([{"Name": "M"}], [["a"]], M=1), "dimension 'a'"),
        (emf([{"Name": "M"}], [["a"]], a=5, M=1), "dimension 'a'"),
        (emf([{"Name": "M"}], [[]]), "value must be"),
        (emf([{"Name": "M"}], [[]], M="1"), "value must be"),
        (emf([{"Name": "M"}], [[]], M=[1] * 101), "value must be"),
        (emf([{"Name": "M", "Unit": "Furlongs"}], [[]], M=1), "unknown Unit"),
        (emf([{"Name": "M", "StorageResolution": 5}], [[]], M=1), "StorageResolution"),
        (emf([{"Unit": "Count"}], [[]]), "needs a Name"),
        (json.dumps({"_aws": {"CloudWatchMetrics": []}}), "Timestamp"),
        (json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": {}}}), "array"),
    ],
)
def test_invalid_emf_documents(line: str, why: str) -> None:
    with pytest.raises(EmfError, match=why):
        parse_emf(line)
    forwarder = EmfForwarder()
    assert forwarder.add_line("fn", line) is False and forwarder.invalid == 1 and forwarder.pending() == 0


def cloudwatch(endpoint: str) -> Any:
    return boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_logs_sink_puts_emf_metrics_to_the_endpoint(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    line = powertools_line(monkeypatch)
    stamp = datetime.datetime.fromtimestamp(json.loads(line)["_aws"]["Timestamp"] / 1000, tz=datetime.UTC)
    sink = CloudWatchLogsSink(endpoint, REGION, VirtualClock(), echo=False)
    try:
        sink.write("orders-fn", "plain line")
        sink.write("orders-fn", line)
        sink.flush()
    finally:
        sink.close()
    assert sink.metrics.sent == 2 and sink.metrics.invalid == 0
    cw = cloudwatch(endpoint)
    listed = cw.list_metrics(Namespace="Shop")["Metrics"]
    assert {m["MetricName"] for m in listed} == {"Paid", "AcquirerLatency"}
    dims = [{"Name": "workflow", "Value": "express"}, {"Name": "service", "Value": "orders"}]
    stats = cw.get_metric_statistics(
        Namespace="Shop",
        MetricName="Paid",
        Dimensions=dims,
        StartTime=stamp - datetime.timedelta(minutes=5),
        EndTime=stamp + datetime.timedelta(minutes=5),
        Period=600,
        Statistics=["Sum", "SampleCount", "Maximum"],
    )["Datapoints"]
    assert len(stats) == 1
    assert (stats[0]["Sum"], stats[0]["SampleCount"], stats[0]["Maximum"]) == (5.0, 3.0, 3.0)
    latency = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "latency",
                "MetricStat": {
                    "Metric": {"Namespace": "Shop", "MetricName": "AcquirerLatency", "Dimensions": dims},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=stamp - datetime.timedelta(minutes=5),
        EndTime=stamp + datetime.timedelta(minutes=5),
    )["MetricDataResults"]
    assert latency[0]["Values"] == [12.5]
    # the EMF line stays a log line too, as in CloudWatch
    logs = boto3.client(
        "logs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    messages = [e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/orders-fn")["events"]]
    assert messages == ["plain line", line]
