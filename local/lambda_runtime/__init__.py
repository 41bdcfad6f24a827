"""Lambda execution environments for the local runtime (``sam local invoke`` without Docker)."""

from local.lambda_runtime.pool import (
    LambdaPool,
    RequestTooLargeException,
    ThrottledException,
    ValidationException,
    parse_function_ref,
)

__all__ = [
    "LambdaPool",
    "RequestTooLargeException",
    "ThrottledException",
    "ValidationException",
    "parse_function_ref",
]
