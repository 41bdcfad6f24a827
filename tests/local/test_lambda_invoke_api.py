"""The Invoke API middleware, driven by an unmodified boto3 client and the AWS CLI over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from werkzeug.serving import make_server

from local.clock import RealClock
from local.lambda_runtime import LambdaPool
from local.lambda_runtime.invoke_api import lambda_invoke_middleware
from local.model import FunctionSpec
from local.ports import InvokeResult

BASIC = (Path(__file__).parent / "fixtures" / "functions" / "basic").resolve()
REGION, ACCOUNT = "us-east-1", "123456789012"


def _spec(name: str, *, reserved: int | None = None) -> FunctionSpec:
    return FunctionSpec(
        logical_id=name,
        function_name=name,
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        handler="app.handler",
        code_dir=BASIC,
        runtime="python3.13",
        timeout=3,
        memory_size=128,
        environment={},
        layer_dirs=[],
        reserved_concurrency=reserved,
        tracing=False,
    )


class RecordingInvoker:
    """The real pool, remembering what the middleware passed it."""

    def __init__(self, pool: LambdaPool) -> None:
        self.pool = pool
        self.calls: list[dict[str, Any]] = []

    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
        self.calls.append({"function": function, "payload": payload, **kwargs})
        return self.pool.invoke(function, payload, **kwargs)


def _fallback(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"fallback {environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, RecordingInvoker]]:
    pool = LambdaPool(
        {"fn": _spec("fn"), "never": _spec("never", reserved=0)},
        endpoint_url="http://127.0.0.1:1",
        region=REGION,
        account_id=ACCOUNT,
        clock=RealClock(),
        log_sink=lambda name, line: None,
    )
    invoker = RecordingInvoker(pool)
    httpd = make_server("127.0.0.1", 0, lambda_invoke_middleware(_fallback, invoker), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", invoker
    finally:
        httpd.shutdown()
        thread.join(5)
        httpd.server_close()
        pool.close()


@pytest.fixture
def lam(server: tuple[str, RecordingInvoker]) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server[0],
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_boto3_invoke_by_name_arn_and_partial_arn(lam: Any) -> None:
    for ref in ("fn", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn", f"{ACCOUNT}:function:fn"):
        resp = lam.invoke(FunctionName=ref, Payload=json.dumps({"ref": ref}).encode())
        assert resp["StatusCode"] == 200
        assert resp["ExecutedVersion"] == "$LATEST"
        assert "FunctionError" not in resp
        body = json.loads(resp["Payload"].read())
        assert body["event"] == {"ref": ref}
        assert body["context"]["aws_request_id"] == resp["ResponseMetadata"]["RequestId"]


def test_boto3_qualifier_and_log_tail_and_client_context(
    lam: Any, server: tuple[str, RecordingInvoker]
) -> None:
    context = base64.b64encode(json.dumps({"custom": {"tenant": "t1"}}).encode()).decode()
    resp = lam.invoke(
        FunctionName="fn", Qualifier="$LATEST", LogType="Tail", ClientContext=context, Payload=b"{}"
    )
    body = json.loads(resp["Payload"].read())
    assert body["context"]["invoked_function_arn"].endswith(":function:fn:$LATEST")
    assert body["context"]["client_custom"] == {"tenant": "t1"}
    log = base64.b64decode(resp["LogResult"]).decode()
    request_id = resp["ResponseMetadata"]["RequestId"]
    # (a cold invocation's tail starts with INIT_START and the init's own lines, as on AWS)
    assert f"\nSTART RequestId: {request_id}" in f"\n{log}"
    assert log.rstrip("\n").splitlines()[-1].startswith(f"REPORT RequestId: {request_id}")
    assert server[1].calls[-1]["function"] == "fn:$LATEST"
    assert server[1].calls[-1]["client_context"] == context


def test_boto3_function_error_header(lam: Any) -> None:
    resp = lam.invoke(FunctionName="fn", Payload=b'{"op": "raise", "n": 2}')
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom 2")


def test_boto3_event_and_dry_run(lam: Any, server: tuple[str, RecordingInvoker]) -> None:
    event = lam.invoke(FunctionName="fn", InvocationType="Event", Payload=b'{"async": true}')
    assert event["StatusCode"] == 202
    assert event["Payload"].read() == b""
    dry = lam.invoke(FunctionName="fn", InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert [c["invocation_type"] for c in server[1].calls[-2:]] == ["Event", "DryRun"]


def test_boto3_service_errors(lam: Any) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.invoke(FunctionName="nope", Payload=b"{}")
    assert missing.value.response["Error"]["Message"] == (
        f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:nope"
    )
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(lam.exceptions.TooManyRequestsException) as throttled:
        lam.invoke(FunctionName="never", Payload=b"{}")
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert throttled.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as bad:
        lam.invoke(FunctionName="fn", Payload=b"{nope")
    assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_trace_header_is_passed_through(server: tuple[str, RecordingInvoker]) -> None:
    header = "Root=1-67890abc-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
    resp = requests.post(
        f"{server[0]}/2015-03-31/functions/fn/invocations", data=b"{}", headers={"X-Amzn-Trace-Id": header}
    )
    assert resp.status_code == 200
    assert resp.headers["x-amzn-RequestId"] == resp.json()["context"]["aws_request_id"]
    assert server[1].calls[-1]["trace_header"] == header


def test_other_requests_pass_through(server: tuple[str, RecordingInvoker]) -> None:
    calls = len(server[1].calls)
    assert requests.get(f"{server[0]}/2015-03-31/functions/fn/invocations").text.startswith("fallback GET")
    assert requests.post(f"{server[0]}/", data=b"Action=ListQueues").text == "fallback POST /"
    assert len(server[1].calls) == calls


def test_aws_cli_invoke(server: tuple[str, RecordingInvoker], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    aws = Path(sys.executable).with_name("aws")
    proc = subprocess.run(
        [
            str(aws),
            "lambda",
            "invoke",
            "--endpoint-url",
            server[0],
            "--function-name",
            "fn",
            "--payload",
            '{"from": "cli"}',
            "--log-type",
            "Tail",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["StatusCode"] == 200
    assert meta["ExecutedVersion"] == "$LATEST"
    assert "REPORT RequestId" in base64.b64decode(meta["LogResult"]).decode()
    assert json.loads(out.read_text())["event"] == {"from": "cli"}
