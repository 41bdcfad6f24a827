"""The Lambda Invoke API (``POST /2015-03-31/functions/{FunctionName}/invocations``) as WSGI middleware.

Put in front of the local AWS endpoint so unmodified clients (boto3, the AWS CLI, SDK-based handlers, Step
Functions' Lambda tasks) reach the ``LambdaInvoker``; every other request passes through to ``app``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

from local.lambda_runtime.pool import parse_function_ref
from local.ports import LambdaInvoker, LambdaServiceError

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
_STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def lambda_invoke_middleware(app: WSGIApp, invoker: LambdaInvoker) -> WSGIApp:
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _INVOKE_PATH.match(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") != "POST" or match is None:
            return app(environ, start_response)
        return _invoke(environ, start_response, invoker, unquote(match["name"]))

    return middleware


def _invoke(
    environ: dict[str, Any], start_response: Callable[..., Any], invoker: LambdaInvoker, name: str
) -> Iterable[bytes]:
    qualifier = parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier", [None])[0]
    if qualifier and parse_function_ref(name)[1] is None:
        name = f"{name}:{qualifier}"
    invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse"
    log_type = environ.get("HTTP_X_AMZ_LOG_TYPE") or "None"
    try:
        result = invoker.invoke(
            name,
            _body(environ),
            invocation_type=invocation_type,
            trace_header=environ.get("HTTP_X_AMZN_TRACE_ID"),
            client_context=environ.get("HTTP_X_AMZ_CLIENT_CONTEXT"),
        )
    except LambdaServiceError as e:
        return _error(start_response, e)
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-RequestId", result.request_id or str(uuid.uuid4())),
    ]
    if result.status_code == 200:
        headers.append(("X-Amz-Executed-Version", result.executed_version))
        if result.function_error:
            headers.append(("X-Amz-Function-Error", result.function_error))
        if log_type == "Tail":
            headers.append(("X-Amz-Log-Result", base64.b64encode(result.log_tail.encode()).decode()))
    body = result.payload if result.status_code == 200 else b""
    headers.append(("Content-Length", str(len(body))))
    start_response(_status(result.status_code), headers)
    return [body]


def _body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return b""


def _error(start_response: Callable[..., Any], error: LambdaServiceError) -> Iterable[bytes]:
    """Lambda's REST-JSON error: the code in ``x-amzn-ErrorType``, ``Type``/``message`` in the body."""
    doc: dict[str, Any] = {"Type": "User", "message": error.message}
    reason = getattr(error, "reason", None)
    if reason:
        doc["Reason"] = reason
    if error.status_code >= 500:
        doc["Type"] = "Service"
    body = json.dumps(doc).encode()
    start_response(
        _status(error.status_code),
        [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", error.error_type),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def _status(code: int) -> str:
    return f"{code} {_STATUS_TEXT.get(code, 'Unknown')}"
