"""A boto3 client for a local endpoint, with its own fake credentials: a test using it must not depend on
another test (or the environment) having set some."""

from __future__ import annotations

from typing import Any

import boto3


def local_client(endpoint_url: str, service: str, region: str = "us-east-1") -> Any:
    factory: Any = boto3.client  # a service chosen at run time: no typed overload applies
    return factory(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
