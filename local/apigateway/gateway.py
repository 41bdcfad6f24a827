"""What API Gateway does with one request, independent of the HTTP server: route, check the API key, build
the proxy event, invoke the function under the integration timeout, map the answer, and record the trace."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field

from local.apigateway.proxy import (
    IncomingRequest,
    MalformedProxyResponse,
    ProxyResponse,
    RequestContextInfo,
    accepts_binary,
    build_event,
    parse_proxy_response,
)
from local.apigateway.routing import Match, RouteTable
from local.clock import Clock, RealClock
from local.model import ApiKeySpec, ApiSpec
from local.ports import InvokeResult, LambdaInvoker, LambdaServiceError, SegmentSink
from local.xray import TraceHeader, api_stage_segment, ensure_trace, lambda_invoke_subsegment, new_segment_id

log = logging.getLogger("local.apigateway")

DEFAULT_INTEGRATION_TIMEOUT = 29.0  # seconds: API Gateway's default (and, unless raised by quota, maximum)


def gateway_error(status: int, message: str, error_type: str) -> ProxyResponse:
    """An answer API Gateway itself produces (default gateway responses: compact JSON, x-amzn-ErrorType)."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
    return ProxyResponse(status, headers, body)


def missing_authentication_token() -> ProxyResponse:
    # REST APIs answer an unknown resource or an undefined method with 403, not 404/405.
    return gateway_error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")


def forbidden() -> ProxyResponse:
    return gateway_error(403, "Forbidden", "ForbiddenException")


def internal_server_error(status: int) -> ProxyResponse:
    # 502 for a function error or malformed result; 500 when Lambda itself refuses (throttled, not found).
    return gateway_error(status, "Internal server error", "InternalServerErrorException")


def endpoint_timeout() -> ProxyResponse:
    return gateway_error(504, "Endpoint request timed out", "InternalServerErrorException")


def _resource_id(rest_api_id: str, path: str) -> str:
    digest = hashlib.sha256(f"{rest_api_id}{path}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:6])


@dataclass
class _Outcome:
    result: InvokeResult | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Answer:
    response: ProxyResponse
    request_id: str
    extended_request_id: str
    trace: TraceHeader


class Gateway:
    def __init__(
        self,
        apis: dict[str, ApiSpec],
        invoker: LambdaInvoker,
        *,
        clock: Clock,
        segment_sink: SegmentSink | None,
        region: str,
        account_id: str,
        integration_timeout: float = DEFAULT_INTEGRATION_TIMEOUT,
    ) -> None:
        self.routes = RouteTable(apis)
        self.invoker = invoker
        self.clock = clock
        self.segment_sink = segment_sink
        self.region = region
        self.account_id = account_id
        self.integration_timeout = integration_timeout

    def handle(self, request: IncomingRequest) -> Answer:
        request_id = str(uuid.uuid4())
        extended_id = base64.b64encode(os.urandom(11)).decode("ascii")
        start = self.clock.now()
        trace = ensure_trace(request.header("X-Amzn-Trace-Id"), start)
        match = self.routes.match(request.method, request.path)
        if match is None or match.route is None:
            return Answer(missing_authentication_token(), request_id, extended_id, trace)
        api = match.resource.api
        traced = api.tracing and bool(trace.sampled) and self.segment_sink is not None
        invoke_sub_id = new_segment_id()
        # The Lambda service segment hangs under the stage segment's "Lambda" invoke subsegment, as in AWS.
        downstream = trace.with_parent(invoke_sub_id) if traced else trace
        response, subsegment = self._serve(
            request, match, request_id, extended_id, start, downstream, invoke_sub_id
        )
        if traced:
            self._emit(api, request, trace, request_id, start, response, subsegment)
        return Answer(response, request_id, extended_id, trace)

    # -- the integration ----------------------------------------------------------------------------------
    def _serve(
        self,
        request: IncomingRequest,
        match: Match,
        request_id: str,
        extended_id: str,
        start: float,
        downstream: TraceHeader,
        invoke_sub_id: str,
    ) -> tuple[ProxyResponse, dict | None]:
        api = match.resource.api
        route = match.route
        assert route is not None
        key: ApiKeySpec | None = None
        if route.api_key_required:
            key = self._api_key(api, request.header("x-api-key"))
            if key is None:
                return forbidden(), None
        ctx = RequestContextInfo(
            account_id=self.account_id,
            rest_api_id=api.rest_api_id,
            stage=api.stage_name,
            resource_path=match.resource.path,
            resource_id=_resource_id(api.rest_api_id, match.resource.path),
            request_id=request_id,
            extended_request_id=extended_id,
            request_time=start,
            api_key=key.value if key else None,
            api_key_id=key.key_id if key else None,
        )
        trace_header = downstream.to_header()
        prior = request.header("X-Forwarded-For")
        extra = [
            ("X-Amzn-Trace-Id", trace_header),
            ("X-Forwarded-For", f"{prior}, {request.source_ip}" if prior else request.source_ip),
            ("X-Forwarded-Proto", "http"),  # AWS says https; the local server speaks plain HTTP
        ]
        if request.server_port is not None:
            extra.append(("X-Forwarded-Port", str(request.server_port)))
        event = build_event(
            request,
            ctx,
            path_parameters=match.path_parameters,
            binary_media_types=api.binary_media_types,
            extra_headers=extra,
        )
        payload = json.dumps(event).encode()
        call_start = self.clock.now()
        outcome = self._invoke(route.function_name, payload, trace_header)
        call_end = self.clock.now()
        response, lambda_status, function_error = self._map(outcome, request, api, route.function_name)
        subsegment = lambda_invoke_subsegment(
            function_name=route.function_name,
            function_arn=f"arn:aws:lambda:{self.region}:{self.account_id}:function:{route.function_name}",
            region=self.region,
            start=call_start,
            end=call_end,
            status=lambda_status,
            function_error=function_error,
            segment_id=invoke_sub_id,
        )
        return response, subsegment

    def _invoke(self, function: str, payload: bytes, trace_header: str) -> _Outcome | None:
        """Invoke on a helper thread so the integration timeout is measured on the runtime clock; a timed-out
        invocation keeps running (as Lambda does) and its result is dropped. None means timed out."""
        outcome = _Outcome()

        def run() -> None:
            try:
                outcome.result = self.invoker.invoke(function, payload, trace_header=trace_header)
            except BaseException as exc:  # delivered to the request thread, which maps it to a response
                outcome.error = exc
            finally:
                outcome.done.set()

        threading.Thread(target=run, name=f"apigw-invoke-{function}", daemon=True).start()
        with self.clock.waiting():  # the invocation thread holds the clock now; this request only waits
            if isinstance(self.clock, RealClock):
                # Wall time, like the Lambda Timeout it bounds: `--clock-scale` speeds up workflow waits,
                # not how long a handler may take to answer.
                finished = outcome.done.wait(self.integration_timeout)
            else:
                finished = self.clock.wait_event(outcome.done, self.integration_timeout)
        if not finished:
            return None
        return outcome

    def _map(
        self, outcome: _Outcome | None, request: IncomingRequest, api: ApiSpec, function: str
    ) -> tuple[ProxyResponse, int | None, bool]:
        """(client response, Lambda Invoke status for the trace, function error?)"""
        if outcome is None:
            log.warning("%s: integration timed out after %.0f s", function, self.integration_timeout)
            return endpoint_timeout(), None, False
        if isinstance(outcome.error, LambdaServiceError):
            err = outcome.error
            log.warning("%s: Lambda answered %s: %s", function, err.error_type, err.message)
            return internal_server_error(500), err.status_code, False
        if outcome.error is not None:
            log.error("%s: invocation failed", function, exc_info=outcome.error)
            return internal_server_error(500), 500, False
        result = outcome.result
        assert result is not None
        if result.function_error:
            log.warning("%s: function error: %s", function, result.payload[:500].decode("utf-8", "replace"))
            return internal_server_error(502), 200, True
        try:
            decode = accepts_binary(request.header("Accept"), api.binary_media_types)
            response = parse_proxy_response(result.payload, decode_base64=decode)
        except MalformedProxyResponse as exc:
            log.warning("%s: Malformed Lambda proxy response: %s", function, exc)
            return internal_server_error(502), 200, False
        if not any(k.lower() == "content-type" for k, _ in response.headers):
            response.headers.append(("Content-Type", "application/json"))  # API Gateway's default
        return response, 200, False

    @staticmethod
    def _api_key(api: ApiSpec, value: str | None) -> ApiKeySpec | None:
        if not value:
            return None
        return next((k for k in api.api_keys if k.enabled and k.value == value), None)

    def _emit(
        self,
        api: ApiSpec,
        request: IncomingRequest,
        trace: TraceHeader,
        request_id: str,
        start: float,
        response: ProxyResponse,
        subsegment: dict | None,
    ) -> None:
        assert self.segment_sink is not None and trace.root is not None
        host = request.header("Host") or ""
        query = f"?{request.query}" if request.query else ""
        segment = api_stage_segment(
            trace_id=trace.root,
            api_name=api.logical_id,
            rest_api_id=api.rest_api_id,
            stage=api.stage_name,
            region=self.region,
            account_id=self.account_id,
            request_id=request_id,
            method=request.method,
            url=f"http://{host}/{api.stage_name}{request.path}{query}",
            status=response.status,
            start=start,
            end=self.clock.now(),
            client_ip=request.source_ip,
            user_agent=request.header("User-Agent"),
            content_length=len(response.body),
            parent_id=trace.parent,
            subsegments=[subsegment] if subsegment else (),
        )
        try:
            self.segment_sink.emit(segment)
        except Exception:  # tracing must never break the request
            log.exception("could not record the API stage segment")
