"""API Gateway (REST, Lambda proxy) emulation, driven over real HTTP with an in-process fake LambdaInvoker."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from local.apigateway import ApiGatewayServer, PortInUseError
from local.clock import VirtualClock
from local.model import ApiKeySpec, ApiSpec, RouteSpec
from local.ports import InvokeResult, ResourceNotFoundException, TooManyRequestsException

EVENTS = Path(__file__).parent / "fixtures" / "events"
REGION = "eu-west-1"
ACCOUNT = "111122223333"
KEY = ApiKeySpec("Key", key_id="k1d2e3", name="good", value="good-key-value-1234567890")
OFF_KEY = ApiKeySpec("OffKey", key_id="off999", name="off", value="disabled-key-value-123456", enabled=False)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")


def ok(body: Any = None, **extra: Any) -> bytes:
    return json.dumps({"statusCode": 200, "body": json.dumps(body), **extra}).encode()


@dataclass
class Call:
    function: str
    event: dict[str, Any]
    trace_header: str | None


@dataclass
class FakeInvoker:
    """Records every invocation; ``answer`` decides the result (or raises a Lambda service error)."""

    answer: Callable[[Call], InvokeResult] = lambda call: InvokeResult(ok({"fn": call.function}))
    calls: list[Call] = field(default_factory=list)

    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        call = Call(function, json.loads(payload), trace_header)
        self.calls.append(call)
        return self.answer(call)

    @property
    def event(self) -> dict[str, Any]:
        return self.calls[-1].event


class SegmentList:
    def __init__(self) -> None:
        self.segments: list[dict[str, Any]] = []

    def emit(self, segment: dict[str, Any]) -> None:
        self.segments.append(segment)


class CountingClock(VirtualClock):
    """A virtual clock that remembers how many requests were marked busy and the deepest nesting seen."""

    def __init__(self) -> None:
        super().__init__(start=1_700_000_000.25)
        self.active = 0
        self.entered = 0

    @contextmanager
    def busy(self) -> Iterator[None]:
        with super().busy():
            self.active += 1
            self.entered += 1
            try:
                yield
            finally:
                self.active -= 1


def _apis(tracing: bool = True) -> dict[str, ApiSpec]:
    shop = ApiSpec(
        logical_id="ShopApi",
        rest_api_id="abc123defg",
        stage_name="prod",
        routes=[
            RouteSpec("GET", "/items/{id}", "items-fn"),
            RouteSpec("POST", "/items", "create-fn", api_key_required=True),
            RouteSpec("ANY", "/files/{proxy+}", "files-any-fn"),
            RouteSpec("GET", "/files/{proxy+}", "files-get-fn"),
            RouteSpec("GET", "/files/special", "special-fn"),
            RouteSpec("POST", "/upload", "upload-fn"),
            RouteSpec("GET", "/orders/{id}/lines/{line}", "lines-fn"),
        ],
        api_keys=[KEY, OFF_KEY],
        binary_media_types=["image/png", "application/octet-stream"],
        tracing=tracing,
    )
    other = ApiSpec(
        logical_id="OtherApi",
        rest_api_id="zzz999yyyy",
        stage_name="v1",
        routes=[RouteSpec("ANY", "/{proxy+}", "catch-all-fn")],
    )
    return {"ShopApi": shop, "OtherApi": other}


@dataclass
class Env:
    server: ApiGatewayServer
    invoker: FakeInvoker
    clock: CountingClock
    sink: SegmentList

    @property
    def url(self) -> str:
        return self.server.url


def _env(apis: dict[str, ApiSpec]) -> Iterator[Env]:
    invoker, clock, sink = FakeInvoker(), CountingClock(), SegmentList()
    server = ApiGatewayServer(
        apis, invoker, port=0, clock=clock, segment_sink=sink, region=REGION, account_id=ACCOUNT
    )
    server.start()
    try:
        yield Env(server, invoker, clock, sink)
    finally:
        server.stop()
        clock.close()


@pytest.fixture
def env() -> Iterator[Env]:
    yield from _env(_apis())


@pytest.fixture
def shop() -> Iterator[Env]:
    """ShopApi alone: no catch-all, so undefined routes reach API Gateway's own answers."""
    yield from _env({"ShopApi": _apis()["ShopApi"]})


def _keys(d: dict[str, Any]) -> set[str]:
    return set(d)


# -- event shape ---------------------------------------------------------------------------------------------
def test_event_key_sets_match_the_goldens(env: Env) -> None:
    """Our event has exactly the keys real API Gateway sends (the AWS-documented golden), which is the
    `sam local generate-event apigateway aws-proxy` golden plus the fields sam's template predates."""
    resp = requests.get(f"{env.url}/items/42", headers={"User-Agent": "ut/1"}, timeout=5)
    assert resp.status_code == 200
    event = env.invoker.event
    aws = json.loads((EVENTS / "apigateway-aws-proxy.aws.json").read_text())
    sam = json.loads((EVENTS / "apigateway-aws-proxy.sam.json").read_text())
    assert _keys(event) == _keys(aws) == _keys(sam)
    assert _keys(event["requestContext"]) == _keys(aws["requestContext"])
    assert _keys(event["requestContext"]["identity"]) == _keys(aws["requestContext"]["identity"])
    newer_context = {"domainName", "domainPrefix", "extendedRequestId"}
    newer_identity = {"apiKey", "apiKeyId", "principalOrgId", "clientCert"}
    assert _keys(event["requestContext"]) == _keys(sam["requestContext"]) | newer_context
    assert (
        _keys(event["requestContext"]["identity"])
        == _keys(sam["requestContext"]["identity"]) | newer_identity
    )


def test_event_values_for_a_simple_get(env: Env) -> None:
    requests.get(f"{env.url}/items/42", headers={"User-Agent": "ut/1"}, timeout=5)
    call = env.invoker.calls[-1]
    event = call.event
    assert call.function == "items-fn"
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"id": "42"}
    # AWS sends null, not {}, when there is no query string, no body, no stage variables
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["headers"]["User-Agent"] == "ut/1"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Port"] == str(env.server.port)
    ctx = event["requestContext"]
    assert ctx["accountId"] == ACCOUNT
    assert ctx["apiId"] == "abc123defg"
    assert ctx["stage"] == "prod"
    assert ctx["path"] == "/prod/items/42"
    assert ctx["resourcePath"] == "/items/{id}"
    assert ctx["httpMethod"] == "GET"
    assert ctx["protocol"] == "HTTP/1.1"
    assert UUID.match(ctx["requestId"])
    assert re.fullmatch(r"[A-Za-z0-9+/]{15}=", ctx["extendedRequestId"])
    assert re.fullmatch(r"[a-z0-9]{6}", ctx["resourceId"])
    assert ctx["requestTimeEpoch"] == 1_700_000_000_250  # the runtime clock, in ms
    assert ctx["requestTime"] == "14/Nov/2023:22:13:20 +0000"
    assert ctx["domainName"] == f"127.0.0.1:{env.server.port}"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "ut/1"
    assert ctx["identity"]["apiKey"] is None and ctx["identity"]["apiKeyId"] is None


def test_repeated_headers_and_query_parameters_are_kept(env: Env) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=5)
    try:
        conn.putrequest("GET", "/items/7?tag=a&tag=b&single=1&empty=")
        conn.putheader("X-Multi", "first")
        conn.putheader("X-Multi", "second")
        conn.putheader("x-lower-Case", "kept")
        conn.endheaders()
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    event = env.invoker.event
    assert event["multiValueHeaders"]["X-Multi"] == ["first", "second"]
    assert event["headers"]["X-Multi"] == "second"  # the single-value map keeps the last one
    assert event["headers"]["x-lower-Case"] == "kept"  # the client's header case is preserved
    assert event["queryStringParameters"] == {"tag": "b", "single": "1", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "single": ["1"], "empty": [""]}


# -- routing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "function", "params", "resource"),
    [
        ("GET", "/files/special", "special-fn", None, "/files/special"),
        ("GET", "/files/a/b/c.txt", "files-get-fn", {"proxy": "a/b/c.txt"}, "/files/{proxy+}"),
        ("DELETE", "/files/a/b", "files-any-fn", {"proxy": "a/b"}, "/files/{proxy+}"),
        ("GET", "/orders/o1/lines/3", "lines-fn", {"id": "o1", "line": "3"}, "/orders/{id}/lines/{line}"),
        ("PUT", "/anything/else", "catch-all-fn", {"proxy": "anything/else"}, "/{proxy+}"),
        ("GET", "/items/a%20b/", "items-fn", {"id": "a b"}, "/items/{id}"),
    ],
)
def test_most_specific_route_wins(
    env: Env, method: str, path: str, function: str, params: dict[str, str] | None, resource: str
) -> None:
    resp = requests.request(method, env.url + path, timeout=5)
    assert resp.status_code == 200, resp.text
    call = env.invoker.calls[-1]
    assert call.function == function
    assert call.event["pathParameters"] == params
    assert call.event["resource"] == resource


def test_an_api_without_the_method_does_not_hide_another_apis_route(env: Env) -> None:
    """/orders is a method-less resource of ShopApi (parent of /orders/{id}/lines/{line}); on a shared port
    the other API's /{proxy+} still serves it (ShopApi alone answers 403: see the test after next)."""
    assert requests.get(f"{env.url}/orders", timeout=5).status_code == 200
    assert env.invoker.calls[-1].function == "catch-all-fn"


def test_catch_all_api_reports_its_own_stage_and_id(env: Env) -> None:
    requests.get(f"{env.url}/x", timeout=5)
    ctx = env.invoker.event["requestContext"]
    assert (ctx["apiId"], ctx["stage"], ctx["path"]) == ("zzz999yyyy", "v1", "/v1/x")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/items"),  # the resource exists (POST only): AWS does not fall back to /{proxy+}
        ("DELETE", "/items/1"),  # method not defined on an existing resource
        ("OPTIONS", "/items/1"),  # no CORS configuration: OPTIONS is just another undefined method
        ("GET", "/"),  # {proxy+} needs at least one segment; no root method
    ],
)
def test_undefined_route_answers_missing_authentication_token(shop: Env, method: str, path: str) -> None:
    resp = requests.request(method, shop.url + path, timeout=5)
    assert resp.status_code == 403
    assert resp.content == b'{"message":"Missing Authentication Token"}'
    assert resp.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert resp.headers["Content-Type"] == "application/json"
    assert UUID.match(resp.headers["x-amzn-RequestId"])
    assert shop.invoker.calls == []


def test_unknown_path_and_methodless_resource_answer_403(shop: Env) -> None:
    for path in ("/nowhere", "/orders"):
        resp = requests.get(shop.url + path, timeout=5)
        assert resp.status_code == 403
        assert resp.json() == {"message": "Missing Authentication Token"}


# -- API keys ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [None, "wrong-key-value-000000000", OFF_KEY.value])
def test_api_key_missing_wrong_or_disabled_is_forbidden(env: Env, key: str | None) -> None:
    headers = {"x-api-key": key} if key else {}
    resp = requests.post(f"{env.url}/items", json={"a": 1}, headers=headers, timeout=5)
    assert resp.status_code == 403
    assert resp.content == b'{"message":"Forbidden"}'
    assert resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
    assert env.invoker.calls == []


def test_valid_api_key_reaches_the_function_with_identity(env: Env) -> None:
    resp = requests.post(f"{env.url}/items", json={"a": 1}, headers={"X-API-Key": KEY.value}, timeout=5)
    assert resp.status_code == 200
    event = env.invoker.event
    assert event["requestContext"]["identity"]["apiKey"] == KEY.value
    assert event["requestContext"]["identity"]["apiKeyId"] == KEY.key_id
    assert json.loads(event["body"]) == {"a": 1}
    assert event["isBase64Encoded"] is False


# -- bodies --------------------------------------------------------------------------------------------------
PNG = bytes(range(256)) * 4


def _echo_binary(call: Call) -> InvokeResult:
    event = call.event
    return InvokeResult(
        json.dumps(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "image/png"},
                "body": event["body"],
                "isBase64Encoded": event["isBase64Encoded"],
            }
        ).encode()
    )


def test_binary_body_round_trip(env: Env) -> None:
    env.invoker.answer = _echo_binary
    resp = requests.post(
        f"{env.url}/upload", data=PNG, headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=5
    )
    event = env.invoker.event
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == PNG
    assert resp.status_code == 201
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.content == PNG


def test_base64_body_is_sent_as_text_when_the_client_does_not_accept_binary(env: Env) -> None:
    env.invoker.answer = _echo_binary
    resp = requests.post(
        f"{env.url}/upload",
        data=PNG,
        headers={"Content-Type": "image/png", "Accept": "text/plain"},
        timeout=5,
    )
    assert resp.content == base64.b64encode(PNG)


def test_non_utf8_body_of_a_text_type_travels_base64(env: Env) -> None:
    raw = b"caf\xe9 \xff"
    requests.post(f"{env.url}/upload", data=raw, headers={"Content-Type": "text/plain"}, timeout=5)
    event = env.invoker.event
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_utf8_text_body_is_passed_as_is(env: Env) -> None:
    requests.post(
        f"{env.url}/upload", data="héllo".encode(), headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert env.invoker.event["body"] == "héllo"
    assert env.invoker.event["isBase64Encoded"] is False


def test_chunked_request_body_is_read(env: Env) -> None:
    requests.post(f"{env.url}/upload", data=iter([b"ab", b"cd", b"ef"]), timeout=5)
    assert env.invoker.event["body"] == "abcdef"


# -- responses -----------------------------------------------------------------------------------------------
def test_proxy_response_headers_are_merged_and_gateway_headers_added(env: Env) -> None:
    env.invoker.answer = lambda call: InvokeResult(
        json.dumps(
            {
                "statusCode": "418",
                "headers": {"X-One": "1", "Set-Cookie": "ignored=1", "X-Num": 5},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": "teapot",
            }
        ).encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=5)
    try:
        conn.request("GET", "/items/1")
        resp = conn.getresponse()
        body = resp.read()
        headers = resp.getheaders()
    finally:
        conn.close()
    assert resp.status == 418
    assert body == b"teapot"
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    named = dict(headers)
    assert named["X-One"] == "1" and named["X-Num"] == "5"
    assert named["Content-Type"] == "application/json"  # API Gateway's default when the function sets none
    request_id = env.invoker.event["requestContext"]["requestId"]
    assert named["x-amzn-RequestId"] == request_id
    assert named["x-amz-apigw-id"] == env.invoker.event["requestContext"]["extendedRequestId"]
    assert named["X-Amzn-Trace-Id"].startswith("Root=1-")


def test_head_request_gets_headers_without_body(env: Env) -> None:
    env.invoker.answer = lambda call: InvokeResult(ok({"x": 1}))
    resp = requests.head(f"{env.url}/files/a", timeout=5)
    assert resp.status_code == 200
    assert resp.content == b""
    assert env.invoker.calls[-1].function == "files-any-fn"


def test_function_error_is_502(env: Env) -> None:
    env.invoker.answer = lambda call: InvokeResult(
        b'{"errorType": "KeyError", "errorMessage": "x", "stackTrace": []}', function_error="Unhandled"
    )
    resp = requests.get(f"{env.url}/items/1", timeout=5)
    assert resp.status_code == 502
    assert resp.content == b'{"message":"Internal server error"}'
    assert resp.headers["x-amzn-ErrorType"] == "InternalServerErrorException"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"null",
        b'["statusCode", 200]',
        b'{"body": "no status"}',
        b'{"statusCode": 200, "body": {"not": "a string"}}',
        b'{"statusCode": 200, "body": "x", "extra": true}',
        b'{"statusCode": "abc"}',
        b'{"statusCode": 200, "headers": {"X": {"nested": 1}}}',
        b'{"statusCode": 200, "multiValueHeaders": {"X": "not-a-list"}}',
    ],
)
def test_malformed_proxy_result_is_502(env: Env, payload: bytes) -> None:
    env.invoker.answer = lambda call: InvokeResult(payload)
    resp = requests.get(f"{env.url}/items/1", timeout=5)
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}


@pytest.mark.parametrize(
    "error", [TooManyRequestsException("Rate Exceeded."), ResourceNotFoundException("Function not found")]
)
def test_lambda_service_errors_are_500(env: Env, error: Exception) -> None:
    """A throttled (or missing) function never runs, so there is no proxy result to relay: API Gateway answers
    500 Internal server error (the 429 is not passed on)."""

    def refuse(call: Call) -> InvokeResult:
        raise error

    env.invoker.answer = refuse
    resp = requests.get(f"{env.url}/items/1", timeout=5)
    assert resp.status_code == 500
    assert resp.content == b'{"message":"Internal server error"}'


def _blocking_invoker(entered: threading.Event, release: threading.Event) -> Callable[[Call], InvokeResult]:
    def answer(call: Call) -> InvokeResult:
        entered.set()
        release.wait(10)
        return InvokeResult(ok("late"))

    return answer


def _wait_for_timer(clock: VirtualClock) -> None:
    """The integration timeout is armed on the clock just after the invocation starts: wait for it."""
    deadline = time.monotonic() + 5
    while not clock.pending():
        assert time.monotonic() < deadline, "the integration timeout was never armed"
        time.sleep(0.005)


def _get_in_thread(url: str) -> tuple[threading.Thread, list[requests.Response]]:
    out: list[requests.Response] = []
    thread = threading.Thread(target=lambda: out.append(requests.get(url, timeout=10)))
    thread.start()
    return thread, out


def test_integration_timeout_on_the_clock_is_504(env: Env) -> None:
    entered, release = threading.Event(), threading.Event()
    env.invoker.answer = _blocking_invoker(entered, release)
    thread, out = _get_in_thread(f"{env.url}/items/1")
    try:
        assert entered.wait(5)
        _wait_for_timer(env.clock)
        env.clock.advance(28.9)
        time.sleep(0.05)
        assert not out  # still waiting: 29 s have not passed on the clock
        env.clock.advance(0.2)
        thread.join(5)
    finally:
        release.set()
        thread.join(5)
    assert out[0].status_code == 504
    assert out[0].content == b'{"message":"Endpoint request timed out"}'


def test_integration_timeout_is_configurable() -> None:
    entered, release = threading.Event(), threading.Event()
    invoker, clock = FakeInvoker(_blocking_invoker(entered, release)), VirtualClock(start=0)
    server = ApiGatewayServer(
        _apis(), invoker, port=0, clock=clock, region=REGION, account_id=ACCOUNT, integration_timeout=3
    ).start()
    try:
        thread, out = _get_in_thread(f"{server.url}/items/1")
        assert entered.wait(5)
        _wait_for_timer(clock)
        clock.advance(3)
        thread.join(5)
        release.set()
        assert out[0].status_code == 504
    finally:
        release.set()
        server.stop()


def test_every_request_is_served_while_the_clock_is_busy(env: Env) -> None:
    seen: list[int] = []

    def answer(call: Call) -> InvokeResult:
        seen.append(env.clock.active)
        return InvokeResult(ok())

    def settle() -> None:  # busy is released just after the answer is written, so wait for it
        deadline = time.monotonic() + 2
        while env.clock.active and time.monotonic() < deadline:
            time.sleep(0.005)

    env.invoker.answer = answer
    requests.get(f"{env.url}/items/1", timeout=5)
    settle()
    requests.get(f"{env.url}/nowhere-at/all/but/catch-all", timeout=5)
    settle()
    assert seen == [1, 1]
    assert env.clock.entered == 2 and env.clock.active == 0


# -- tracing -------------------------------------------------------------------------------------------------
def test_incoming_trace_is_propagated_and_stage_segment_emitted(env: Env) -> None:
    root = "1-5759e988-bd862e3fe1be46a994272793"
    resp = requests.get(
        f"{env.url}/items/9?x=1",
        headers={"X-Amzn-Trace-Id": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1", "User-Agent": "ut"},
        timeout=5,
    )
    call = env.invoker.calls[-1]
    assert call.trace_header is not None
    parts = dict(p.split("=", 1) for p in call.trace_header.split(";"))
    assert parts["Root"] == root and parts["Sampled"] == "1"
    assert call.event["headers"]["X-Amzn-Trace-Id"] == call.trace_header
    assert resp.headers["X-Amzn-Trace-Id"] == f"Root={root};Sampled=1"

    [segment] = env.sink.segments
    assert segment["trace_id"] == root
    assert segment["parent_id"] == "53995c3f42cd8ad8"  # the caller's segment
    assert segment["name"] == "ShopApi/prod"
    assert segment["origin"] == "AWS::ApiGateway::Stage"
    assert segment["aws"]["api_gateway"] == {
        "account_id": ACCOUNT,
        "rest_api_id": "abc123defg",
        "stage": "prod",
        "request_id": resp.headers["x-amzn-RequestId"],
    }
    assert segment["http"]["request"]["method"] == "GET"
    assert segment["http"]["request"]["url"].endswith("/prod/items/9?x=1")
    assert segment["http"]["response"]["status"] == 200
    assert not {"error", "fault"} & set(segment)
    # The function's trace parent is the stage segment's "Lambda" invoke subsegment.
    [invoke] = segment["subsegments"]
    assert invoke["name"] == "Lambda" and invoke["aws"]["function_name"] == "items-fn"
    assert parts["Parent"] == invoke["id"]
    assert segment["start_time"] <= invoke["start_time"] <= invoke["end_time"] <= segment["end_time"]


def test_new_trace_is_created_and_fault_flagged_on_502(env: Env) -> None:
    env.invoker.answer = lambda call: InvokeResult(b"{}")
    resp = requests.get(f"{env.url}/items/9", timeout=5)
    assert resp.status_code == 502
    [segment] = env.sink.segments
    assert TRACE_ID.match(segment["trace_id"])
    assert int(segment["trace_id"][2:10], 16) == 1_700_000_000  # trace ids carry the clock's time
    assert "parent_id" not in segment
    assert segment["fault"] is True
    assert env.invoker.calls[-1].trace_header.startswith(f"Root={segment['trace_id']};")  # type: ignore[union-attr]


def test_forbidden_request_is_traced_as_error_without_invoking(env: Env) -> None:
    requests.post(f"{env.url}/items", json={}, timeout=5)
    [segment] = env.sink.segments
    assert segment["error"] is True and segment["http"]["response"]["status"] == 403
    assert "subsegments" not in segment


def test_untraced_api_emits_nothing_but_still_passes_a_trace_header(env: Env) -> None:
    requests.get(f"{env.url}/elsewhere", timeout=5)  # OtherApi has tracing off
    assert env.sink.segments == []
    header = env.invoker.calls[-1].trace_header
    assert header is not None and TRACE_ID.match(header.split(";")[0].removeprefix("Root="))
    assert "Parent=" not in header


def test_unsampled_request_is_not_recorded(env: Env) -> None:
    root = "1-5759e988-bd862e3fe1be46a994272794"
    requests.get(f"{env.url}/items/1", headers={"X-Amzn-Trace-Id": f"Root={root};Sampled=0"}, timeout=5)
    assert env.sink.segments == []
    assert env.invoker.calls[-1].trace_header == f"Root={root};Sampled=0"


# -- server lifecycle and logging ----------------------------------------------------------------------------
def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiGatewayServer(
            _apis(), FakeInvoker(), port=port, clock=VirtualClock(), region=REGION, account_id=ACCOUNT
        )
        with pytest.raises(PortInUseError) as info:
            server.start()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "in use" in message and "\n" not in message


def test_stop_releases_the_port_and_keep_alive_connections(env: Env) -> None:
    session = requests.Session()
    assert session.get(f"{env.url}/items/1", timeout=5).status_code == 200  # leaves a keep-alive connection
    port = env.server.port
    before = threading.active_count()
    env.server.stop()
    deadline = time.monotonic() + 2
    while threading.active_count() >= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() < before  # the server and its idle connection thread are gone
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    session.close()


def test_access_log_line_per_request(shop: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="local.apigateway"):
        requests.get(f"{shop.url}/items/5?q=1", timeout=5)
        requests.delete(f"{shop.url}/items/5", timeout=5)
    lines = [
        r.getMessage() for r in caplog.records if r.name == "local.apigateway" and r.levelno == logging.INFO
    ]
    assert re.fullmatch(r"GET /items/5\?q=1 200 \d+\.\dms", lines[0])
    assert re.fullmatch(r"DELETE /items/5 403 \d+\.\dms", lines[1])


def test_unreadable_request_is_400_and_the_server_keeps_serving(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=5) as raw:
        raw.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert requests.get(f"{env.url}/items/1", timeout=5).status_code == 200


def test_integration_timeout_is_wall_time_on_a_scaled_real_clock() -> None:
    """`--clock-scale 60` makes workflow waits pass faster, not the time a handler has to answer: the 29 s
    bounds a Lambda whose own Timeout is wall time."""
    from local.clock import RealClock

    entered, release = threading.Event(), threading.Event()
    invoker = FakeInvoker(_blocking_invoker(entered, release))
    server = ApiGatewayServer(
        _apis(),
        invoker,
        port=0,
        clock=RealClock(scale=60),
        region=REGION,
        account_id=ACCOUNT,
        integration_timeout=1,
    ).start()
    try:
        thread, out = _get_in_thread(f"{server.url}/items/1")
        assert entered.wait(5)
        time.sleep(0.5)  # 30 clock seconds at scale 60, but only half the wall-time limit
        assert not out
        thread.join(5)
        assert out[0].status_code == 504
    finally:
        release.set()
        server.stop()
