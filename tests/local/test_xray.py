"""X-Ray plumbing: headers, segment documents, the UDP daemon, the store's forwarding to moto's X-Ray API, and
real handler processes (aws-xray-sdk, Powertools Tracer) reporting to the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.ports import SegmentSink
from local.xray import (
    SegmentStore,
    TraceHeader,
    XRayDaemon,
    api_stage_segment,
    ensure_trace,
    lambda_function_segment,
    lambda_invoke_subsegment,
    lambda_service_segment,
    new_segment_id,
    new_trace_id,
    parse_datagram,
    parse_trace_header,
    segment_problem,
    state_machine_segment,
    status_flags,
    task_subsegment,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
HEADER = b'{"format": "json", "version": 1}\n'


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def send_udp(port: int, payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, ("127.0.0.1", port))


def segment(trace_id: str, **extra: Any) -> dict[str, Any]:
    doc = {"id": new_segment_id(), "name": "svc", "trace_id": trace_id, "start_time": time.time() - 1}
    doc["end_time"] = time.time()
    doc.update(extra)
    return doc


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name in {"xray-forwarder", "xray-daemon"}]
    assert leaked == [], f"threads left running: {leaked}"


@pytest.fixture
def xray(endpoint: str) -> Any:
    return boto3.client(
        "xray",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


# -- ids and headers ---------------------------------------------------------------------------------------
def test_trace_id_encodes_clock_time_and_ids_are_unique() -> None:
    tid = new_trace_id(1_700_000_000.7)
    assert tid.startswith(f"1-{1_700_000_000:08x}-")
    assert len(tid.split("-")[2]) == 24
    assert len({new_trace_id(0) for _ in range(200)}) == 200
    sid = new_segment_id()
    assert len(sid) == 16
    int(sid, 16)


def test_parse_header_tolerates_case_and_spaces_and_round_trips() -> None:
    raw = (
        " root = 1-5759e988-bd862e3fe1be46a994272793 ; PARENT=53995c3f42cd8ad8;sampled=1;"
        " Lineage=a87bd80c:1|68fd508a:5;Self=1-abc"
    )
    h = parse_trace_header(raw)
    assert h.root == "1-5759e988-bd862e3fe1be46a994272793"
    assert h.parent == "53995c3f42cd8ad8"
    assert h.sampled is True
    assert h.lineage == "a87bd80c:1|68fd508a:5"
    assert h.extra == (("Self", "1-abc"),)
    assert h.to_header() == (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;"
        "Lineage=a87bd80c:1|68fd508a:5;Self=1-abc"
    )
    assert parse_trace_header(h.to_header()) == h


def test_parse_header_sampling_states_and_garbage() -> None:
    assert parse_trace_header("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0").sampled is False
    assert parse_trace_header("Root=x;Sampled=?").sampled is None
    assert parse_trace_header("nonsense;;=;") == TraceHeader()
    assert TraceHeader(root="r", sampled=False).with_parent("p").to_header() == "Root=r;Parent=p;Sampled=0"


def test_ensure_trace_keeps_valid_root_and_replaces_bad_one() -> None:
    kept = ensure_trace("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", 0)
    assert (kept.root, kept.parent, kept.sampled) == (
        "1-5759e988-bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
        False,
    )
    fresh = ensure_trace("Root=garbage;Parent=53995c3f42cd8ad8", 1_700_000_000)
    assert fresh.root is not None and fresh.root.startswith(f"1-{1_700_000_000:08x}-")
    assert fresh.parent is None and fresh.sampled is True
    assert ensure_trace(None, 5).sampled is True


# -- segment documents -------------------------------------------------------------------------------------
def test_status_flags() -> None:
    assert status_flags(200) == {}
    assert status_flags(403) == {"error": True}
    assert status_flags(429) == {"error": True, "throttle": True}
    assert status_flags(502) == {"fault": True}


def test_api_to_lambda_chain_documents() -> None:
    trace = new_trace_id(time.time())
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:pay"
    call = lambda_invoke_subsegment(function_name="pay", function_arn=arn, region=REGION, start=1.0, end=2.0)
    api = api_stage_segment(
        trace_id=trace,
        api_name="payeasy",
        rest_api_id="abc123",
        stage="prod",
        region=REGION,
        account_id=ACCOUNT,
        request_id="req-1",
        method="POST",
        url="http://127.0.0.1:3000/prod/payments",
        status=502,
        start=0.5,
        end=2.5,
        subsegments=[call],
    )
    service = lambda_service_segment(
        trace_id=trace,
        parent_id=call["id"],
        function_name="pay",
        function_arn=arn,
        request_id="r",
        start=1.1,
        end=1.9,
    )
    func = lambda_function_segment(
        trace_id=trace,
        parent_id=service["id"],
        function_name="pay",
        function_arn=arn,
        account_id=ACCOUNT,
        start=1.2,
        end=1.8,
        init=(1.2, 1.4),
        invocation=(1.4, 1.8),
        error=("ValueError", "boom"),
    )
    assert api["origin"] == "AWS::ApiGateway::Stage" and api["name"] == "payeasy/prod"
    assert api["fault"] is True and "error" not in api
    assert api["resource_arn"] == f"arn:aws:apigateway:{REGION}::/restapis/abc123/stages/prod"
    assert api["aws"]["api_gateway"]["rest_api_id"] == "abc123"
    assert api["http"]["response"]["status"] == 502
    assert call["namespace"] == "aws" and call["aws"]["operation"] == "Invoke"
    assert (service["origin"], service["parent_id"]) == ("AWS::Lambda", call["id"])
    assert not {"error", "fault", "throttle"} & service.keys()
    assert (func["origin"], func["parent_id"]) == ("AWS::Lambda::Function", service["id"])
    assert [s["name"] for s in func["subsegments"]] == ["Initialization", "Invocation"]
    assert func["fault"] is True
    assert func["cause"]["exceptions"][0]["type"] == "ValueError"
    for doc in (api, service, func):
        assert segment_problem(doc) is None
        json.dumps(doc)


def test_throttled_invoke_and_state_machine_documents() -> None:
    trace = new_trace_id(time.time())
    throttled = lambda_service_segment(
        trace_id=trace,
        parent_id=None,
        function_name="f",
        function_arn="arn:f",
        request_id="r",
        start=1,
        end=2,
        status=429,
    )
    assert throttled["throttle"] is True and throttled["error"] is True
    task = task_subsegment(
        state_name="Charge",
        start=1,
        end=2,
        resource="arn:aws:states:::lambda:invoke",
        error=("Lambda.TooManyRequestsException", "Rate exceeded"),
    )
    sm = state_machine_segment(
        trace_id=trace,
        name="Checkout",
        state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Checkout",
        execution_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Checkout:e1",
        start=0.5,
        end=None,
        failed=True,
        subsegments=[task],
    )
    assert sm["origin"] == "AWS::StepFunctions::StateMachine"
    assert sm["in_progress"] is True and "end_time" not in sm
    assert sm["error"] is True and sm["subsegments"][0]["throttle"] is True
    assert segment_problem(sm) is None


def test_segment_problem_rejects_what_xray_rejects() -> None:
    trace = new_trace_id(time.time())
    assert segment_problem([]) == "not a JSON object"
    assert segment_problem({"id": "x"}) == "missing name"
    good = segment(trace)
    assert segment_problem({**good, "id": "xyz"}) == "id is not 16 hex digits"
    assert segment_problem({**good, "trace_id": "1-2-3"}) == "bad trace_id"
    no_end = {k: v for k, v in good.items() if k != "end_time"}
    assert segment_problem(no_end) == "missing end_time or in_progress"
    assert segment_problem({**no_end, "in_progress": True}) is None
    assert segment_problem({**good, "type": "subsegment"}) == "subsegment without parent_id"


# -- store ---------------------------------------------------------------------------------------------------
def test_store_indexes_replaces_and_bounds() -> None:
    store: SegmentSink = SegmentStore(max_segments=3)
    assert isinstance(store, SegmentStore)
    t1, t2 = new_trace_id(0), new_trace_id(0)
    first = segment(t1, in_progress=True)
    del first["end_time"]
    store.emit(first)
    store.emit({**first, "in_progress": False, "end_time": time.time()})  # completed version replaces it
    assert len(store) == 1 and "end_time" in store.get_trace(t1)[0]
    store.emit(segment(t1))
    store.emit(segment(t2))
    store.emit(segment(t2))  # 4 documents > 3: the oldest (t1's first) is evicted
    assert len(store) == 3
    assert len(store.get_trace(t1)) == 1 and len(store.get_trace(t2)) == 2
    store.emit(segment(t2))
    assert store.trace_ids() == [t2]
    with pytest.raises(ValueError, match="missing trace_id"):
        store.emit({"id": new_segment_id(), "name": "x", "start_time": 1})


def test_store_snapshots_documents() -> None:
    store = SegmentStore()
    trace = new_trace_id(0)
    doc = segment(trace, annotations={"k": 1})
    store.emit(doc)
    doc["annotations"]["k"] = 2
    assert store.get_trace(trace)[0]["annotations"] == {"k": 1}


def test_store_keeps_and_forwards_the_text_stock_json_makes() -> None:
    """The store keeps each document as its compact JSON text and parses it on first read: the text
    forwarded and the documents read back are exactly what json.dumps(..., default=str) / json.loads make,
    and a document replaced after it was read is read in its new version."""
    store = SegmentStore("http://127.0.0.1:1", flush_interval=3600)
    store._start_locked = lambda: None  # type: ignore[method-assign]  # keep the text pending, unsent
    trace = new_trace_id(0)
    odd = segment(trace, annotations={"k": "café ☕", "n": 1.5, "b": True}, metadata={"when": Path("/x")})
    plain = segment(trace, name="plain")
    for doc in (odd, plain):
        store.emit(doc)
    stock = {d["id"]: json.dumps(d, separators=(",", ":"), default=str) for d in (odd, plain)}
    assert {key[1]: text for key, text in store._pending.items()} == stock
    expected = sorted((json.loads(t) for t in stock.values()), key=lambda d: d["start_time"])
    assert store.get_trace(trace) == expected
    assert store.get_trace(trace) == expected  # the second read is served parsed
    assert sorted(store.traces()[trace], key=lambda d: d["start_time"]) == expected
    store.emit({**plain, "name": "renamed"})
    assert {d["name"] for d in store.get_trace(trace)} == {"svc", "renamed"}
    assert store._pending[(trace, plain["id"])] == json.dumps(
        {**plain, "name": "renamed"}, separators=(",", ":")
    )


def test_store_forwards_to_moto_batch_get_traces(endpoint: str, xray: Any) -> None:
    now = time.time()
    trace = new_trace_id(now)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:pay"
    call = lambda_invoke_subsegment(
        function_name="pay", function_arn=arn, region=REGION, start=now - 2, end=now - 0.5
    )
    api = api_stage_segment(
        trace_id=trace,
        api_name="payeasy",
        rest_api_id="abc123",
        stage="prod",
        region=REGION,
        account_id=ACCOUNT,
        request_id="req-1",
        method="POST",
        url="http://127.0.0.1:3000/prod/payments",
        status=200,
        start=now - 3,
        end=now,
        subsegments=[call],
    )
    service = lambda_service_segment(
        trace_id=trace,
        parent_id=call["id"],
        function_name="pay",
        function_arn=arn,
        request_id="r",
        start=now - 2,
        end=now - 1,
    )
    independent_sub = {**segment(trace), "type": "subsegment", "parent_id": service["id"], "namespace": "aws"}
    # More than one batch, so flush() must loop.
    extra = [segment(trace, name=f"s{i}") for i in range(SegmentStore.BATCH_SIZE + 5)]
    with SegmentStore(endpoint, region=REGION, flush_interval=60) as store:
        for doc in (api, service, independent_sub, *extra):
            store.emit(doc)
        store.flush()  # a barrier even while the background thread may be sending too
        assert (store.forwarded, store.rejected, store.failed) == (len(extra) + 3, 0, 0)

    got = xray.batch_get_traces(TraceIds=[trace, new_trace_id(now)])
    assert len(got["UnprocessedTraceIds"]) == 1
    [t] = got["Traces"]
    docs = {s["Id"]: json.loads(s["Document"]) for s in t["Segments"]}
    assert docs[api["id"]]["subsegments"][0]["id"] == call["id"]
    assert docs[service["id"]]["parent_id"] == call["id"]
    assert docs[independent_sub["id"]]["type"] == "subsegment"
    assert len(docs) == len(extra) + 3

    summaries = xray.get_trace_summaries(StartTime=now - 60, EndTime=now + 60)["TraceSummaries"]
    mine = [s for s in summaries if s["Id"] == trace]
    assert len(mine) == 1 and mine[0]["HasError"] is False and mine[0]["HasFault"] is False


def test_store_background_thread_forwards_and_survives_dead_endpoint(endpoint: str, xray: Any) -> None:
    trace = new_trace_id(time.time())
    with SegmentStore(endpoint, region=REGION, flush_interval=0.05) as store:
        store.emit(segment(trace))
        wait_for(lambda: store.forwarded == 1)
    assert xray.batch_get_traces(TraceIds=[trace])["Traces"][0]["Id"] == trace

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    broken = SegmentStore(dead)
    broken.emit(segment(trace))
    assert broken._thread is not None  # started by the first emit
    broken.close()
    assert broken._thread is None
    assert broken.failed == 1 and broken.forwarded == 0
    assert len(broken.get_trace(trace)) == 1  # still kept locally


def test_moto_reports_flags_by_presence_and_in_progress_duplicates(endpoint: str, xray: Any) -> None:
    """Pins moto quirks the builders work around: ``"error": false`` counts as an error, and an in-progress
    document followed by its completed version is stored twice."""
    now = time.time()
    trace = new_trace_id(now)
    start = segment(trace, in_progress=True)
    del start["end_time"]
    raw = [json.dumps(segment(trace, error=False)), json.dumps(start), json.dumps({**start, "end_time": now})]
    assert xray.put_trace_segments(TraceSegmentDocuments=raw)["UnprocessedTraceSegments"] == []
    [t] = xray.batch_get_traces(TraceIds=[trace])["Traces"]
    assert len(t["Segments"]) == 3
    summary = [
        s
        for s in xray.get_trace_summaries(StartTime=now - 60, EndTime=now + 60)["TraceSummaries"]
        if s["Id"] == trace
    ]
    assert summary[0]["HasError"] is True
    assert xray.get_service_graph(StartTime=now - 60, EndTime=now + 60)["Services"] == []


# -- daemon --------------------------------------------------------------------------------------------------
@pytest.fixture
def daemon() -> Iterator[tuple[XRayDaemon, SegmentStore]]:
    store = SegmentStore()
    d = XRayDaemon(store, port=0).start()
    yield d, store
    d.stop()


def test_daemon_accepts_segments_and_independent_subsegments(daemon: tuple[XRayDaemon, SegmentStore]) -> None:
    d, store = daemon
    trace = new_trace_id(time.time())
    seg = segment(trace)
    sub = {**segment(trace), "type": "subsegment", "parent_id": seg["id"]}
    send_udp(d.port, HEADER + json.dumps(seg).encode())
    send_udp(d.port, b'{"format":"json","version":1}\n' + json.dumps(sub).encode())
    wait_for(lambda: len(store.get_trace(trace)) == 2)
    assert {s["id"] for s in store.get_trace(trace)} == {seg["id"], sub["id"]}
    assert d.stats.accepted == 2 and d.stats.malformed == 0


def test_daemon_counts_malformed_and_keeps_running(
    daemon: tuple[XRayDaemon, SegmentStore], caplog: pytest.LogCaptureFixture
) -> None:
    d, store = daemon
    trace = new_trace_id(time.time())
    bad = [
        b"no header at all",
        b"\xff\xfe\n{}",
        b'{"format":"xml","version":1}\n{}',
        HEADER + b"{not json",
        HEADER + json.dumps({**segment(trace), "type": "subsegment"}).encode(),  # no parent_id
    ]
    with caplog.at_level("WARNING", logger="local.xray"):
        for payload in bad:
            send_udp(d.port, payload)
        good = segment(trace)
        send_udp(d.port, HEADER + json.dumps(good).encode())
        wait_for(lambda: d.stats.received == len(bad) + 1)
    assert d.stats.malformed == len(bad)
    assert [s["id"] for s in store.get_trace(trace)] == [good["id"]]
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1


def test_parse_datagram_reads_every_header_spelling_alike() -> None:
    """The SDKs' header lines are recognised without parsing them; any other spelling of the same header is
    still parsed, and the document is the same either way."""
    doc = segment(new_trace_id(0))
    body = json.dumps(doc).encode()
    headers = [
        b'{"format":"json","version":1}',
        b'{"format": "json", "version": 1}',
        b'{"version":1,"format":"json"}',
    ]
    assert [parse_datagram(h + b"\n" + body) for h in headers] == [doc] * 3
    with pytest.raises(ValueError, match="protocol header"):
        parse_datagram(b'{"format": "json", "version": 2}\n' + body)


def test_parse_datagram_errors() -> None:
    with pytest.raises(ValueError, match="protocol header"):
        parse_datagram(b'{"format":"json","version":2}\n{}')
    with pytest.raises(ValueError, match="no protocol header line"):
        parse_datagram(b"{}")


def test_daemon_port_in_use_raises() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            XRayDaemon(SegmentStore(), port=s.getsockname()[1]).start()


# -- real handler processes ----------------------------------------------------------------------------------
def run_worker(code: str, daemon_address: str, header: str, endpoint: str, tmp: Path, **env: str) -> None:
    """Run ``code`` the way the Lambda pool runs a handler: a separate process with a Lambda-like
    environment, then send a marker segment so the test knows every earlier datagram has been sent."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"AWS_SAM_LOCAL", "POWERTOOLS_TRACE_DISABLED", "AWS_CHALICE_CLI_MODE", "AWS_XRAY_SDK_ENABLED"}
    }
    base.update(
        LAMBDA_TASK_ROOT=str(tmp),
        AWS_LAMBDA_FUNCTION_NAME="pay",
        AWS_XRAY_DAEMON_ADDRESS=daemon_address,
        _X_AMZN_TRACE_ID=header,
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        POWERTOOLS_SERVICE_NAME="payments",
    )
    base.update(env)
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=base, check=True, cwd=tmp, timeout=60)


def marker(daemon: XRayDaemon, trace: str) -> dict[str, Any]:
    doc = segment(trace, name="marker")
    send_udp(daemon.port, HEADER + json.dumps(doc).encode())
    return doc


def test_xray_sdk_in_worker_process_reports_to_daemon(
    daemon: tuple[XRayDaemon, SegmentStore], endpoint: str, tmp_path: Path
) -> None:
    d, store = daemon
    trace, parent = new_trace_id(time.time()), new_segment_id()
    code = """
        import boto3
        from aws_xray_sdk.core import patch, xray_recorder
        patch(["boto3"])
        with xray_recorder.in_subsegment("charge-card") as sub:
            sub.put_annotation("payment_id", "p-1")
        boto3.client("sqs").list_queues()
    """
    run_worker(code, d.address, f"Root={trace};Parent={parent};Sampled=1", endpoint, tmp_path)
    done = marker(d, trace)
    wait_for(lambda: any(s["id"] == done["id"] for s in store.get_trace(trace)))
    subs = {s["name"]: s for s in store.get_trace(trace) if s["id"] != done["id"]}
    assert set(subs) == {"charge-card", "sqs"}
    for s in subs.values():
        assert (s["type"], s["trace_id"], s["parent_id"]) == ("subsegment", trace, parent)
    assert subs["charge-card"]["annotations"] == {"payment_id": "p-1"}
    assert subs["sqs"]["aws"]["operation"] == "ListQueues" and subs["sqs"]["namespace"] == "aws"
    assert d.stats.malformed == 0


def test_powertools_tracer_in_worker_process(
    daemon: tuple[XRayDaemon, SegmentStore], endpoint: str, tmp_path: Path
) -> None:
    d, store = daemon
    trace, parent = new_trace_id(time.time()), new_segment_id()
    code = """
        from aws_lambda_powertools import Tracer
        tracer = Tracer()

        @tracer.capture_method
        def charge(amount):
            tracer.put_annotation("PaymentId", "p-42")
            return amount

        @tracer.capture_lambda_handler
        def handler(event, context):
            return charge(event["amount"])

        class Context:
            function_name = "pay"
            aws_request_id = "req-1"
        assert handler({"amount": 5}, Context()) == 5
    """
    run_worker(code, d.address, f"Root={trace};Parent={parent};Sampled=1", endpoint, tmp_path)
    done = marker(d, trace)
    wait_for(lambda: any(s["id"] == done["id"] for s in store.get_trace(trace)))
    subs = {s["name"]: s for s in store.get_trace(trace) if s["id"] != done["id"]}
    assert set(subs) == {"## handler", "## __main__.charge"}
    handler_sub, charge_sub = subs["## handler"], subs["## __main__.charge"]
    assert handler_sub["parent_id"] == parent and handler_sub["trace_id"] == trace
    assert handler_sub["annotations"]["ColdStart"] is True
    assert handler_sub["annotations"]["Service"] == "payments"
    # capture_method nests under the handler subsegment, sent separately with its parent id.
    assert charge_sub["parent_id"] == handler_sub["id"]
    assert charge_sub["annotations"]["PaymentId"] == "p-42"


@pytest.mark.parametrize(
    ("env", "header_sampled"),
    [({"AWS_SAM_LOCAL": "true"}, "1"), ({"POWERTOOLS_TRACE_DISABLED": "true"}, "1"), ({}, "0")],
)
def test_tracer_sends_nothing_when_disabled_or_unsampled(
    daemon: tuple[XRayDaemon, SegmentStore],
    endpoint: str,
    tmp_path: Path,
    env: dict[str, str],
    header_sampled: str,
) -> None:
    """Why the pool must not set AWS_SAM_LOCAL / POWERTOOLS_TRACE_DISABLED, and must pass Sampled=1."""
    d, store = daemon
    trace, parent = new_trace_id(time.time()), new_segment_id()
    code = """
        from aws_lambda_powertools import Tracer
        tracer = Tracer()

        @tracer.capture_lambda_handler
        def handler(event, context):
            tracer.put_annotation("k", "v")
            return 1
        handler({}, None)
    """
    run_worker(
        code, d.address, f"Root={trace};Parent={parent};Sampled={header_sampled}", endpoint, tmp_path, **env
    )
    done = marker(d, trace)
    wait_for(lambda: any(s["id"] == done["id"] for s in store.get_trace(trace)))
    assert [s["id"] for s in store.get_trace(trace)] == [done["id"]]
