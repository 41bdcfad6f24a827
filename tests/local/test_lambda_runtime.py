"""LambdaPool with real worker processes: environments, concurrency, timeouts, errors, logs, X-Ray."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.clock import RealClock, VirtualClock
from local.lambda_runtime import LambdaPool
from local.model import FunctionSpec
from local.ports import (
    InvalidRequestContentException,
    LambdaServiceError,
    ResourceNotFoundException,
    TooManyRequestsException,
)
from local.xray import parse_datagram, segment_problem

FUNCTIONS = Path(__file__).parent / "fixtures" / "functions"
BASIC = FUNCTIONS / "basic"
REGION, ACCOUNT = "eu-west-1", "123456789012"
ENDPOINT = "http://127.0.0.1:45999"
TRACE_ROOT = "1-67890abc-0123456789abcdef01234567"


def make_spec(
    name: str,
    handler: str = "app.handler",
    *,
    code_dir: Path = BASIC,
    timeout: int = 1,
    reserved: int | None = None,
    environment: dict[str, str] | None = None,
    layers: list[Path] | None = None,
    tracing: bool = False,
) -> FunctionSpec:
    return FunctionSpec(
        logical_id=name.title(),
        function_name=name,
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        handler=handler,
        code_dir=code_dir.resolve(),
        runtime="python3.13",
        timeout=timeout,
        memory_size=256,
        environment=environment or {},
        layer_dirs=[p.resolve() for p in layers or []],
        reserved_concurrency=reserved,
        tracing=tracing,
    )


class Recorder:
    """List-backed log sink and SegmentSink."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.segments: list[dict[str, Any]] = []

    def log(self, function: str, line: str) -> None:
        self.lines.append((function, line))

    def emit(self, segment: dict[str, Any]) -> None:
        self.segments.append(segment)

    def text(self, function: str) -> list[str]:
        return [line for name, line in self.lines if name == function]


PoolFactory = Callable[..., LambdaPool]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_pool(recorder: Recorder) -> Iterator[PoolFactory]:
    pools: list[LambdaPool] = []

    def factory(*specs: FunctionSpec, **kwargs: Any) -> LambdaPool:
        kwargs.setdefault("clock", RealClock())
        pool = LambdaPool(
            {s.function_name: s for s in specs},
            endpoint_url=ENDPOINT,
            region=REGION,
            account_id=ACCOUNT,
            segment_sink=recorder,
            log_sink=recorder.log,
            **kwargs,
        )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.close()


def call(
    pool: LambdaPool, function: str, event: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    result = pool.invoke(function, json.dumps(event or {}).encode(), **kwargs)
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); /proc tells them apart
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cold_start_then_warm_reuse_of_the_same_environment(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    first = call(pool, "fn", {"n": 1})
    second = call(pool, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn", {"n": 2})
    third = call(pool, f"{ACCOUNT}:function:fn:$LATEST", {"n": 3})
    assert first["pid"] == second["pid"] == third["pid"]
    assert third["imports"] == 1  # the module was imported once for three invocations
    assert [first["event"], second["event"]] == [{"n": 1}, {"n": 2}]
    stats = pool.stats("fn")
    assert stats["cold_starts"] == 1
    assert stats["invocations"] == 3
    assert stats["warm_environments"] == 1


def test_parallel_invocations_start_a_second_environment(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(call(pool, "fn", {"op": "sleep", "seconds": 0.4})))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["pid"] for r in results}) == 2
    assert pool.stats("fn")["cold_starts"] == 2
    assert pool.stats("fn")["warm_environments"] == 2
    # both stay warm: two more sequential calls start nothing new
    assert {call(pool, "fn")["pid"], call(pool, "fn")["pid"]} <= {r["pid"] for r in results}
    assert pool.stats("fn")["cold_starts"] == 2


def test_reserved_concurrency_one_throttles_the_second_concurrent_call(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn", reserved=1))
    call(pool, "fn")  # warm the environment so the slow call starts immediately
    slow = threading.Thread(target=call, args=(pool, "fn", {"op": "sleep", "seconds": 0.5}))
    slow.start()
    deadline = time.monotonic() + 5
    while pool.stats("fn")["busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(TooManyRequestsException, match="Rate Exceeded"):
        pool.invoke("fn", b"{}")
    slow.join()
    assert pool.stats("fn")["throttles"] == 1
    call(pool, "fn")  # the slot is free again


def test_reserved_concurrency_zero_always_throttles(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn", reserved=0))
    with pytest.raises(TooManyRequestsException) as info:
        pool.invoke("fn", b"{}")
    assert getattr(info.value, "reason", None) == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert pool.stats("fn")["cold_starts"] == 0


def test_account_concurrency_caps_unreserved_functions(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("a"), make_spec("b"), account_concurrency=1)
    call(pool, "a")
    slow = threading.Thread(target=call, args=(pool, "a", {"op": "sleep", "seconds": 0.5}))
    slow.start()
    deadline = time.monotonic() + 5
    while pool.stats("a")["busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(TooManyRequestsException):
        pool.invoke("b", b"{}")
    slow.join()


def test_timeout_kills_the_environment_and_the_next_call_is_cold(
    make_pool: PoolFactory, recorder: Recorder
) -> None:
    pool = make_pool(make_spec("fn", timeout=1))
    pid = call(pool, "fn")["pid"]
    started = time.monotonic()
    result = pool.invoke("fn", json.dumps({"op": "sleep", "seconds": 10}).encode())
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert f"{result.request_id} Task timed out after 1.00 seconds" in result.log_tail
    assert not alive(pid)
    after = call(pool, "fn")
    assert after["pid"] != pid and after["imports"] == 1
    assert pool.stats("fn")["cold_starts"] == 2
    assert pool.stats("fn")["timeouts"] == 1


def test_handler_exception_shape_and_the_environment_stays_warm(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    pid = call(pool, "fn")["pid"]
    result = pool.invoke("fn", b'{"op": "raise", "n": 7}')
    assert result.function_error == "Unhandled"
    error = json.loads(result.payload)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom 7"
    assert error["requestId"] == result.request_id
    frame = error["stackTrace"][-1]
    assert frame.startswith(f'  File "{BASIC / "app.py"}", line ')
    assert frame.endswith(", in handler\n    raise ValueError(f\"boom {event.get('n', 0)}\")\n")
    assert "bootstrap.py" not in "".join(error["stackTrace"])
    assert "[ERROR] ValueError: boom 7" in result.log_tail
    assert call(pool, "fn")["pid"] == pid


def test_init_errors_import_and_missing_handler(make_pool: PoolFactory) -> None:
    pool = make_pool(
        make_spec("broken", code_dir=FUNCTIONS / "broken_import"),
        make_spec("missing", "app.nope"),
    )
    broken = pool.invoke("broken", b"{}")
    assert broken.function_error == "Unhandled"
    error = json.loads(broken.payload)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == (
        "Unable to import module 'app': No module named 'not_a_real_module_for_lambda_tests'"
    )
    missing = json.loads(pool.invoke("missing", b"{}").payload)
    assert missing["errorType"] == "Runtime.HandlerNotFound"
    assert missing["errorMessage"] == "Handler 'nope' missing on module 'app'"
    # a failed init leaves no environment behind: the next call initialises again
    pool.invoke("broken", b"{}")
    assert pool.stats("broken")["cold_starts"] == 2
    assert pool.stats("broken")["warm_environments"] == 0


def test_a_worker_exiting_during_init_is_an_exit_error_at_once(
    make_pool: PoolFactory, recorder: Recorder
) -> None:
    pool = make_pool(make_spec("exits", code_dir=FUNCTIONS / "exit_on_import"))
    started = time.monotonic()
    result = pool.invoke("exits", b"{}")
    elapsed = time.monotonic() - started
    error = json.loads(result.payload)
    assert error["errorType"] == "Runtime.ExitError" and error["errorMessage"].endswith("exit status 7")
    assert "importing, then exiting" in recorder.text("exits")  # its last words are in the log
    assert elapsed < 1.5  # no wait for an init marker a dead worker cannot print (it waited 2 s)


def test_marshal_error_and_exit_error(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    marshal = json.loads(pool.invoke("fn", b'{"op": "marshal"}').payload)
    assert marshal["errorType"] == "Runtime.MarshalError"
    assert (
        marshal["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"
    )
    pid = call(pool, "fn")["pid"]
    exited = pool.invoke("fn", b'{"op": "exit"}')
    assert exited.function_error == "Unhandled"
    assert json.loads(exited.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {exited.request_id} Error: Runtime exited with error: exit status 3",
    }
    assert not alive(pid)
    assert call(pool, "fn")["pid"] != pid


def test_response_larger_than_6_mb_is_a_function_error(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn", timeout=5))
    pid = call(pool, "fn")["pid"]
    result = pool.invoke("fn", json.dumps({"op": "big", "size": 6 * 1024 * 1024 + 200}).encode())
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    assert (
        len(json.loads(pool.invoke("fn", json.dumps({"op": "big", "size": 1000}).encode()).payload)) == 1000
    )
    assert call(pool, "fn")["pid"] == pid  # the environment stays warm


def test_service_errors_unknown_function_and_bad_payload(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    with pytest.raises(
        ResourceNotFoundException,
        match=rf"^Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:nope$",
    ):
        pool.invoke("nope", b"{}")
    with pytest.raises(InvalidRequestContentException, match="Could not parse request body into json"):
        pool.invoke("fn", b"{not json")
    assert call(pool, "fn", None)["event"] == {}
    assert pool.invoke("fn", b"", invocation_type="DryRun").status_code == 204
    assert pool.stats("fn")["invocations"] == 1


def test_environment_variables_and_no_leaked_parent_variables(
    make_pool: PoolFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "parent-profile")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent-secret")
    monkeypatch.setenv("PYTHONPATH", "/parent/python/path")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-00000000-000000000000000000000000")
    spec = make_spec("fn", environment={"TABLE_NAME": "payments", "AWS_REGION": "us-west-2"})
    pool = make_pool(spec, xray_daemon_address="127.0.0.1:2999")
    result = call(pool, "fn")
    env = result["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/fn"
    assert "/[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_REGION"] == "us-west-2"  # the function's own Environment wins
    assert env["AWS_DEFAULT_REGION"] == REGION
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert env["LAMBDA_TASK_ROOT"] == str(BASIC.resolve())
    assert env["_HANDLER"] == "app.handler"
    assert env["TZ"] == ":UTC"
    assert env["AWS_ENDPOINT_URL"] == ENDPOINT
    assert env["AWS_DISABLE_HOST_PREFIX_INJECTION"] == "true"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2999"
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert env["TABLE_NAME"] == "payments"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SESSION_TOKEN"]
    assert env["AWS_SECRET_ACCESS_KEY"] != "parent-secret"
    assert "AWS_PROFILE" not in env
    assert "PYTHONPATH" not in env
    assert "_X_AMZN_TRACE_ID" not in env  # no trace header given
    assert result["cwd"] == str(BASIC.resolve())
    assert result["sys_path_head"][0] == str(BASIC.resolve())
    assert not any(p.endswith("lambda_runtime") for p in result["sys_path_head"])


def test_layer_is_importable_after_the_code_dir(make_pool: PoolFactory) -> None:
    layer = FUNCTIONS / "layers" / "common"
    pool = make_pool(make_spec("fn", "app.with_layer", layers=[layer]))
    result = call(pool, "fn", {"name": "ada"})
    assert result["greeting"] == "hello from the layer, ada"
    assert result["layer_file"] == str((layer / "python" / "layer_util.py").resolve())
    plain = make_pool(make_spec("plain", "app.with_layer"))
    error = json.loads(plain.invoke("plain", b'{"name": "x"}').payload)
    assert error["errorType"] == "ModuleNotFoundError"


def test_context_object_fields(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn", timeout=3))
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}, "env": {"e": "1"}}).encode()).decode()
    result = pool.invoke("fn:live", b"{}", client_context=client_context)
    ctx = json.loads(result.payload)["context"]
    assert ctx["aws_request_id"] == result.request_id
    assert ctx["function_name"] == "fn"
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn:live"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["log_group_name"] == "/aws/lambda/fn"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 2000 < ctx["remaining_ms"] <= 3000
    assert ctx["identity_id"] is None
    assert ctx["client_custom"] == {"k": "v"}
    assert ctx["client_env"] == {"e": "1"}
    with pytest.raises(InvalidRequestContentException):
        pool.invoke("fn", b"{}", client_context="not base64 json")


def test_log_lines_start_end_report_and_tail(make_pool: PoolFactory, recorder: Recorder) -> None:
    pool = make_pool(make_spec("fn"))
    first = pool.invoke("fn", b'{"op": "log"}')
    second = pool.invoke("fn", b'{"op": "log"}')
    lines = recorder.text("fn")
    rid = first.request_id
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    end = lines.index(f"END RequestId: {rid}")
    body = lines[start + 1 : end]
    assert body[0] == "handling log"
    assert body[1].startswith("[INFO]\t") and body[1].endswith(f"\t{rid}\tvia logging")
    assert body[2:] == ["to stderr", "no newline at the end"]
    report = lines[end + 1]
    assert report.startswith(f"REPORT RequestId: {rid}\tDuration: ")
    for field in ("Billed Duration: ", "Memory Size: 256 MB", "Max Memory Used: ", "Init Duration: "):
        assert field in report
    second_report = next(line for line in lines if line.startswith(f"REPORT RequestId: {second.request_id}"))
    assert "Init Duration" not in second_report  # warm
    assert lines.index("init: module imported") < start  # import-time output belongs to the cold start
    assert second.log_tail.startswith(f"START RequestId: {second.request_id}")
    assert second.log_tail.rstrip("\n").endswith(second_report)
    assert rid not in second.log_tail


def test_log_tail_is_at_most_4_kb(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn"))
    result = pool.invoke("fn", json.dumps({"op": "echo", "pad": "x" * 10_000}).encode())
    assert len(result.log_tail.encode()) <= 4096
    assert "REPORT RequestId" in result.log_tail


def test_event_invocation_returns_202_and_retries_a_failure(make_pool: PoolFactory, tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    try:
        pool = make_pool(make_spec("fn"), clock=clock)
        result = pool.invoke(
            "fn", json.dumps({"op": "fail_once", "dir": str(tmp_path)}).encode(), invocation_type="Event"
        )
        assert result.status_code == 202 and result.payload == b""
        deadline = time.monotonic() + 10
        attempts = tmp_path / "attempts"
        while time.monotonic() < deadline:
            if attempts.exists() and len(attempts.read_text().split()) == 2:
                break
            time.sleep(0.02)
        # the retry happens a (virtual) minute later with the same request id
        assert attempts.read_text().split() == [result.request_id, result.request_id]
        while pool.stats("fn")["busy"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats("fn")["invocations"] == 2
    finally:
        clock.close()


def _trace(pool: LambdaPool, recorder: Recorder, function: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    header = f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    result = pool.invoke(function, b"{}", trace_header=header)
    service = next(s for s in recorder.segments if s["origin"] == "AWS::Lambda")
    fn = next(s for s in recorder.segments if s["origin"] == "AWS::Lambda::Function")
    return result, service, fn


def test_xray_segments_with_parentage(make_pool: PoolFactory, recorder: Recorder) -> None:
    pool = make_pool(make_spec("fn"))
    result, service, fn = _trace(pool, recorder, "fn")
    payload = json.loads(result.payload)
    assert service["trace_id"] == fn["trace_id"] == TRACE_ROOT
    assert service["parent_id"] == "53995c3f42cd8ad8"
    assert service["name"] == fn["name"] == "fn"
    assert fn["parent_id"] == service["id"]
    assert len(service["id"]) == len(fn["id"]) == 16
    assert service["aws"]["request_id"] == result.request_id
    assert service["start_time"] <= fn["start_time"] <= fn["end_time"] <= service["end_time"]
    assert [s["name"] for s in fn["subsegments"]] == ["Initialization", "Invocation"]
    worker_trace = payload["env"]["_X_AMZN_TRACE_ID"]
    assert worker_trace == f"Root={TRACE_ROOT};Parent={fn['id']};Sampled=1"
    # warm: no Initialization, and no trace variable left over for an untraced call
    recorder.segments.clear()
    _, _, warm = _trace(pool, recorder, "fn")
    assert [s["name"] for s in warm["subsegments"]] == ["Invocation"]
    assert "_X_AMZN_TRACE_ID" not in call(pool, "fn")["env"]


def test_xray_sdk_subsegments_nest_under_the_function_segment(
    make_pool: PoolFactory, recorder: Recorder
) -> None:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    try:
        address = f"127.0.0.1:{daemon.getsockname()[1]}"
        pool = make_pool(make_spec("traced", "tracing.handler", timeout=10), xray_daemon_address=address)
        # the same trace twice in one warm environment (a state machine calling the function twice): the
        # SDK keeps its facade while Root is unchanged, so only clearing it per invocation re-parents
        parents = []
        for _ in range(2):
            recorder.segments.clear()
            header = f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
            assert pool.invoke("traced", b"{}", trace_header=header).function_error is None
            fn = next(s for s in recorder.segments if s["origin"] == "AWS::Lambda::Function")
            sub = parse_datagram(daemon.recv(65536))
            assert sub["name"] == "work"
            assert sub["trace_id"] == TRACE_ROOT
            assert sub["parent_id"] == fn["id"]
            parents.append(sub["parent_id"])
        assert parents[0] != parents[1]
    finally:
        daemon.close()


def test_unsampled_or_absent_trace_emits_no_segments(make_pool: PoolFactory, recorder: Recorder) -> None:
    pool = make_pool(make_spec("fn"))
    call(pool, "fn", trace_header=f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=0")
    call(pool, "fn")
    assert recorder.segments == []
    active = make_pool(make_spec("active", tracing=True))
    env = call(active, "active")["env"]
    assert env["_X_AMZN_TRACE_ID"].endswith("Sampled=1")  # Active tracing starts its own trace
    assert {s["origin"] for s in recorder.segments} == {"AWS::Lambda", "AWS::Lambda::Function"}


def test_close_leaves_no_processes(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("a"), make_spec("b"))
    threads = [
        threading.Thread(target=call, args=(pool, "a", {"op": "sleep", "seconds": 0.2})) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    call(pool, "b")
    pids = pool.pids("a") | pool.pids("b")
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    pool.close()
    assert not any(alive(pid) for pid in pids)
    assert pool.stats("a")["warm_environments"] == 0
    busy_threads = [t for t in threading.enumerate() if t.name.startswith("lambda-log-")]
    assert busy_threads == []


def test_segments_are_valid_and_record_faults_and_throttles(
    make_pool: PoolFactory, recorder: Recorder
) -> None:
    pool = make_pool(make_spec("fn"), make_spec("never", reserved=0))
    header = f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    result = pool.invoke("fn", b'{"op": "raise"}', trace_header=header)
    with pytest.raises(TooManyRequestsException):
        pool.invoke("never", b"{}", trace_header=header)
    assert [segment_problem(s) for s in recorder.segments] == [None, None, None]
    service, fn, throttled = recorder.segments
    assert service["http"]["response"]["status"] == 200  # a function error is still a 200 from the service
    assert fn["fault"] is True
    assert fn["cause"]["exceptions"][0]["type"] == "ValueError"
    assert fn["cause"]["exceptions"][0]["message"] == "boom 0"
    assert result.function_error == "Unhandled"
    assert throttled["origin"] == "AWS::Lambda" and throttled["name"] == "never"
    assert throttled["http"]["response"]["status"] == 429
    assert throttled["throttle"] is True


def test_close_during_a_running_invocation(make_pool: PoolFactory) -> None:
    pool = make_pool(make_spec("fn", timeout=10))
    pid = call(pool, "fn")["pid"]
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.append(pool.invoke("fn", b'{"op": "sleep", "seconds": 5}')), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 5
    while pool.stats("fn")["busy"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    pool.close()
    runner.join(5)
    assert time.monotonic() - started < 3
    assert not alive(pid)
    assert json.loads(results[0].payload)["errorType"] == "Runtime.ExitError"
    with pytest.raises(LambdaServiceError, match="shutting down"):
        pool.invoke("fn", b"{}")


def test_missing_code_dir_is_a_service_error(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(make_spec("fn", code_dir=tmp_path / "gone"))
    with pytest.raises(LambdaServiceError, match="Could not start an environment for fn"):
        pool.invoke("fn", b"{}")
    assert pool.stats("fn")["busy"] == 0


def test_compiled_code_is_cached_outside_the_code_folder(make_pool: PoolFactory, tmp_path: Path) -> None:
    from local.lambda_runtime.pool import PYCACHE_PREFIX

    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    pool = make_pool(make_spec("cached", code_dir=code))
    assert call(pool, "cached") == {"ok": True}
    assert not list(code.rglob("__pycache__"))  # nothing written into the CodeUri, as in Lambda
    cached = PYCACHE_PREFIX / code.resolve().relative_to("/")  # PYTHONPYCACHEPREFIX mirrors the path
    assert [p.name for p in cached.glob("app.*.pyc")], f"no bytecode under {cached}"
