"""The Lambda proxy integration contract: the event API Gateway (REST, payload 1.0) sends, and how it reads
the function's answer. Pure functions of their inputs, so the shapes are testable without a server."""

from __future__ import annotations

import base64
import fnmatch
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class IncomingRequest:
    """An HTTP request as received, headers in arrival order with their original case."""

    method: str
    path: str  # without the query string, as sent (no stage prefix)
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    server_port: int | None = None  # the port the client connected to (X-Forwarded-Port)

    def header(self, name: str) -> str | None:
        """Last value of a header, case-insensitively (what the single-value ``headers`` map keeps)."""
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found


@dataclass
class RequestContextInfo:
    account_id: str
    rest_api_id: str
    stage: str
    resource_path: str
    resource_id: str
    request_id: str
    extended_request_id: str
    request_time: float  # epoch seconds on the runtime clock
    api_key: str | None = None
    api_key_id: str | None = None


def clf_time(epoch: float) -> str:
    """``09/Apr/2015:12:34:56 +0000``: locale-independent (strftime's %b follows the locale)."""
    t = datetime.fromtimestamp(epoch, tz=UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def media_type_matches(content_type: str | None, binary_media_types: list[str]) -> bool:
    if not content_type or not binary_media_types:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatchcase(mime, pattern.strip().lower()) for pattern in binary_media_types)


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None  # AWS sends null, not {}, when there are none
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value  # the last value wins in the single-value map
        multi.setdefault(key, []).append(value)
    return single, multi


def encode_body(
    body: bytes, content_type: str | None, binary_media_types: list[str]
) -> tuple[str | None, bool]:
    """Binary media types (and bytes that are not UTF-8) travel base64-encoded with isBase64Encoded=true."""
    if not body:
        return None, False
    if media_type_matches(content_type, binary_media_types):
        return base64.b64encode(body).decode("ascii"), True
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def build_event(
    request: IncomingRequest,
    ctx: RequestContextInfo,
    *,
    path_parameters: dict[str, str],
    binary_media_types: list[str],
    extra_headers: list[tuple[str, str]],
) -> dict[str, Any]:
    """The proxy event; ``extra_headers`` are the ones API Gateway adds (X-Forwarded-*, X-Amzn-Trace-Id)
    and replace any client header of the same name."""
    replaced = {k.lower() for k, _ in extra_headers}
    header_pairs = [(k, v) for k, v in request.headers if k.lower() not in replaced] + extra_headers
    headers, multi_headers = _multi(header_pairs)
    query, multi_query = _multi(parse_qsl(request.query, keep_blank_values=True))
    body, is_b64 = encode_body(request.body, request.header("Content-Type"), binary_media_types)
    host = request.header("Host") or ""
    user_agent = request.header("User-Agent")
    return {
        "resource": ctx.resource_path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": ctx.resource_id,
            "resourcePath": ctx.resource_path,
            "httpMethod": request.method,
            "extendedRequestId": ctx.extended_request_id,
            "requestTime": clf_time(ctx.request_time),
            "path": f"/{ctx.stage}{request.path}",
            "accountId": ctx.account_id,
            "protocol": request.protocol,
            "stage": ctx.stage,
            "domainPrefix": host.split(":", 1)[0].split(".", 1)[0],
            "requestTimeEpoch": int(ctx.request_time * 1000),
            "requestId": ctx.request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "apiKey": ctx.api_key,
                "apiKeyId": ctx.api_key_id,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
                "clientCert": None,
            },
            "domainName": host,
            "apiId": ctx.rest_api_id,
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }


class MalformedProxyResponse(ValueError):
    """API Gateway logs "Malformed Lambda proxy response" and answers 502."""


_RESPONSE_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _status(value: Any) -> int:
    if isinstance(value, bool):
        raise MalformedProxyResponse("statusCode is not an integer")
    if isinstance(value, int):
        status = value
    elif isinstance(value, str) and value.strip().isdigit():
        status = int(value)
    else:
        raise MalformedProxyResponse(f"statusCode {value!r} is not an integer")
    if not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode {status} is out of range")
    return status


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedProxyResponse(f"header value {value!r} is not a scalar")


def _headers(result: dict[str, Any]) -> list[tuple[str, str]]:
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise MalformedProxyResponse("headers/multiValueHeaders must be objects")
    out: list[tuple[str, str]] = []
    # Documented merge rule: a name present in multiValueHeaders takes its values from there only.
    multi_names = {k.lower() for k in multi}
    for key, value in single.items():
        if key.lower() not in multi_names:
            out.append((key, _scalar(value)))
    for key, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{key!r}] is not a list")
        out.extend((key, _scalar(v)) for v in values)
    return out


def parse_proxy_response(payload: bytes, *, decode_base64: bool) -> ProxyResponse:
    """Read the function's result. ``decode_base64``: the request's Accept matched a binary media type, the
    only case where API Gateway turns an isBase64Encoded body back into bytes (otherwise the text is sent)."""
    try:
        result = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedProxyResponse("result is not JSON") from exc
    if not isinstance(result, dict):
        raise MalformedProxyResponse("result is not a JSON object")
    unknown = set(result) - _RESPONSE_KEYS
    if unknown:
        raise MalformedProxyResponse(f"unexpected keys {sorted(unknown)}")
    if "statusCode" not in result:
        raise MalformedProxyResponse("statusCode is missing")
    status = _status(result["statusCode"])
    headers = _headers(result)
    body = result.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode("utf-8")
        if result.get("isBase64Encoded") is True and decode_base64:
            try:
                raw = base64.b64decode(body, validate=True)
            except ValueError as exc:
                raise MalformedProxyResponse("body is not valid base64") from exc
    else:
        raise MalformedProxyResponse("body is not a string")
    return ProxyResponse(status, headers, raw)


def accepts_binary(accept: str | None, binary_media_types: list[str]) -> bool:
    """Whether any media type the client accepts (q > 0) is one of the API's binary media types."""
    if not accept or not binary_media_types:
        return False
    for item in accept.split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if mime and (
            media_type_matches(mime, binary_media_types)
            or any(fnmatch.fnmatchcase(t.lower(), mime.lower()) for t in binary_media_types)
        ):
            return True
    return False
