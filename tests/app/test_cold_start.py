"""Cold-start work the handlers must not do: X-Ray patches only the libraries the functions call."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
from payeasy.observability import TRACED_MODULES

from .handler_support import ROOT

HANDLERS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/app.py"))


def _tracer_calls(name: str) -> list[ast.Call]:
    tree = ast.parse((ROOT / "functions" / name / "app.py").read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Tracer"
    ]


@pytest.mark.parametrize("name", HANDLERS)
def test_every_handler_builds_its_tracer_with_the_traced_modules(name: str) -> None:
    # Tracer() without patch_modules patches (and imports) every library the X-Ray SDK supports.
    calls = _tracer_calls(name)
    assert len(calls) == 1, f"{name}: one module-level Tracer expected"
    keywords = {kw.arg: ast.unparse(kw.value) for kw in calls[0].keywords}
    assert keywords.get("patch_modules", "").endswith("TRACED_MODULES"), f"{name}: {keywords}"


def test_traced_modules_cover_the_sdk_and_http_calls() -> None:
    assert set(TRACED_MODULES) == {"botocore", "requests"}


_PROBE = """
import json, sys
sys.path[0:0] = [sys.argv[1], sys.argv[2]]
import app
from aws_xray_sdk.core import patcher
import requests, botocore.client
print(json.dumps({
    "patched": sorted(patcher._PATCHED_MODULES),
    "sqlite3_imported": "sqlite3" in sys.modules,
    "requests_traced": hasattr(requests.Session.request, "__wrapped__"),
    "botocore_traced": hasattr(botocore.client.BaseClient._make_api_call, "__wrapped__"),
}))
"""


def test_router_in_a_lambda_environment_patches_only_boto_and_requests() -> None:
    """The router imported as Lambda would (tracing on, LAMBDA_TASK_ROOT set): the AWS SDK and the acquirer
    calls are still traced, and nothing else is imported for the sake of patching it."""
    task_root = ROOT / "functions" / "router"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "payeasy-test-RouterFunction",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing is called at import
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "POWERTOOLS_SERVICE_NAME": "payeasy",
    }
    layer = ROOT / "layers" / "payeasy"
    done = subprocess.run(
        [sys.executable, "-B", "-c", _PROBE, str(task_root), str(layer)],
        cwd=task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["patched"] == ["botocore", "requests"]
    assert found["requests_traced"] and found["botocore_traced"]
    assert not found["sqlite3_imported"]
