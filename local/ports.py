"""The seams between the runtime's parts, so each part can be built and tested on its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class LambdaServiceError(Exception):
    """An error the Lambda *service* returns (not the function): HTTP status + AWS error code."""

    status_code = 500
    error_type = "ServiceException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooManyRequestsException(LambdaServiceError):
    status_code = 429
    error_type = "TooManyRequestsException"


class ResourceNotFoundException(LambdaServiceError):
    status_code = 404
    error_type = "ResourceNotFoundException"


class InvalidRequestContentException(LambdaServiceError):
    status_code = 400
    error_type = "InvalidRequestContentException"


@dataclass
class InvokeResult:
    """What the Lambda Invoke API answers. ``payload`` is the function's JSON result, or for a function error
    ``{"errorType", "errorMessage", "stackTrace"}`` with ``function_error="Unhandled"``."""

    payload: bytes
    function_error: str | None = None
    status_code: int = 200  # 202 for InvocationType=Event
    log_tail: str = ""  # last 4 KB of the invocation's log, for LogType=Tail
    request_id: str = ""
    executed_version: str = "$LATEST"


class LambdaInvoker(Protocol):
    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        """Run ``function`` (name, ARN, or partial ARN). Raises a ``LambdaServiceError`` subclass for
        service-side failures (unknown function, throttled)."""
        ...


class SegmentSink(Protocol):
    def emit(self, segment: dict[str, Any]) -> None:
        """Record one complete X-Ray segment document (as PutTraceSegments takes it)."""
        ...


class NullSegmentSink:
    def emit(self, segment: dict[str, Any]) -> None:
        return None
