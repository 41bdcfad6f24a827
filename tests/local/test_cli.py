"""`python -m local ...` driven the way a user runs it: real subprocesses from the repo root, real signals,
real ports. The environment holds no AWS configuration, as on a fresh laptop."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from local.cli import CliError, parse_overrides
from tests.local.clients import local_client

REPO = Path(__file__).resolve().parents[2]
FIXTURE = "tests/local/fixtures/stack/template.yaml"
BAD_ASL = "tests/local/fixtures/templates/bad_asl/template.yaml"
BAD_YAML = "tests/local/fixtures/templates/bad_yaml.yaml"
API_KEY = "fixture-key-0123456789abcdef"
START = ("start", "--template", FIXTURE, "--port", "0", "--api-port", "0", "--xray-port", "0")
SLEEPER = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"


def _env() -> dict[str, str]:
    """No credentials, profile or endpoint from the developer's shell may leak into the CLI under test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AWS_") and k != "AWS_CA_BUNDLE") and not k.startswith("LOCAL_")
    }
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local", *args],
        cwd=REPO,
        env=_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def _children(pid: int) -> set[int]:
    """Every live descendant of pid, read from /proc (the Lambda workers run in their own session)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


class Stack:
    """One `python -m local start` process on free ports; the banner is parsed for the URLs."""

    def __init__(self, *extra: str, sigint_ignored: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local", *START, *extra],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a shell starts a background job (`make run &`): SIGINT inherited as ignored.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.banner = self._read_banner(timeout=45)
        self.endpoint_url = self._find(r"AWS endpoint\s+(http://\S+)")
        self.api_url = self._find(r"API Gateway\s+(http://\S+)")

    @staticmethod
    def _pump(stream: IO[str] | None, sink: Any) -> None:
        assert stream is not None
        for line in stream:
            sink(line)
        sink(None)

    def _read_banner(self, timeout: float) -> str:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(
                    f"no banner in {timeout}s: {''.join(lines)} {self.stderr_text}"
                ) from None
            if line is None:
                raise AssertionError(f"start exited {self.proc.wait()}: {self.stderr_text}")
            lines.append(line)
            if line.startswith("Ctrl-C stops."):
                return "".join(lines)

    def _find(self, pattern: str) -> str:
        match = re.search(pattern, self.banner)
        assert match, self.banner
        return match.group(1)

    @property
    def stderr_text(self) -> str:
        return "".join(line for line in self.stderr if line)

    def client(self, service: str) -> Any:
        return local_client(self.endpoint_url, service)

    def stop(self, sig: signal.Signals, timeout: float = 20) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{sig.name} did not stop the stack in {timeout}s: {self.stderr_text}"
            ) from None
        for reader in self._readers:
            reader.join(5)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """Last resort for a failed test: the process and everything it started."""
        for pid in _children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(10)


def _wait_gone(pids: set[int], timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The shared stack, started with SAM's ParameterKey form of override (Stage=prod keeps ProdOnlyQueue)."""
    running = Stack("--parameter-overrides", "ParameterKey=Stage,ParameterValue=prod", "Greeting=hey")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            children = _children(running.proc.pid)
            try:
                running.stop(signal.SIGTERM)
            finally:
                for pid in _wait_gone(children):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


# --- parse_overrides (in-process) --------------------------------------------------------------------


def test_parse_overrides_accepts_both_forms_space_or_repeat_separated() -> None:
    assert parse_overrides(["Stage=prod"]) == {"Stage": "prod"}
    assert parse_overrides(["ParameterKey=Stage,ParameterValue=prod"]) == {"Stage": "prod"}
    assert parse_overrides(["Stage=prod Greeting=a=b", "ParameterKey=X,ParameterValue="]) == {
        "Stage": "prod",
        "Greeting": "a=b",
        "X": "",
    }
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("bad", ["Stage", "ParameterKey=Stage", "ParameterKey=Stage,Value=prod"])
def test_parse_overrides_rejects_malformed_items(bad: str) -> None:
    with pytest.raises(CliError, match="bad parameter override"):
        parse_overrides([bad])


# --- start ------------------------------------------------------------------------------------------


def test_banner_names_endpoint_api_key_functions_and_state_machines(stack: Stack) -> None:
    banner = stack.banner
    assert f"API key fixture-key: {API_KEY}" in banner
    assert "AWS_DISABLE_HOST_PREFIX_INJECTION=true" in banner
    for name in ("sam-app-ApiFunction", "sam-app-StepFunction", "sam-app-WorkerFunction"):
        assert name in banner
    for machine in ("sam-app-ExpressMachine (EXPRESS)", "sam-app-NightlyMachine (STANDARD)"):
        assert f"state machine  {machine}" in banner
    assert re.search(r"GET\s+/health\s+-> sam-app-ApiFunction\n", banner)
    assert re.search(r"POST\s+/orders\s+-> sam-app-ApiFunction\s+\(x-api-key\)", banner)


def test_endpoint_answers_boto3_and_api_answers_health(stack: Stack) -> None:
    machines = {m["name"] for m in stack.client("stepfunctions").list_state_machines()["stateMachines"]}
    assert {"sam-app-ExpressMachine", "sam-app-NightlyMachine", "sam-app-TickMachine"} <= machines
    resp = requests.get(f"{stack.api_url}/health", timeout=30)
    assert resp.status_code == 200
    assert resp.json()["ok"] is True
    assert requests.post(f"{stack.api_url}/orders", json={}, timeout=30).status_code == 403  # no key


def test_parameter_key_override_reaches_the_running_stack(stack: Stack) -> None:
    urls = stack.client("sqs").list_queues().get("QueueUrls", [])
    assert any("ProdOnlyQueue" in url for url in urls), urls  # Condition IsProd held


def test_sigint_stops_stack_workers_and_sidecar_even_as_a_background_job() -> None:
    running = Stack("--sidecar", SLEEPER, sigint_ignored=True)
    try:
        # A request spawns an ApiFunction worker process; the sidecar is already a child.
        assert requests.get(f"{running.api_url}/health", timeout=30).status_code == 200
        children = _children(running.proc.pid)
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        assert any(b"bootstrap.py" in c for c in cmdlines), cmdlines
        assert any(b"time.sleep(60)" in c for c in cmdlines), cmdlines
        code, took = running.stop(signal.SIGINT)
        assert code == 0, running.stderr_text
        assert took < 10
        assert _wait_gone(children, timeout=5) == set()
        assert "Traceback" not in running.stderr_text
    finally:
        if running.proc.poll() is None:
            running.kill()


def test_sigterm_stops_cleanly() -> None:
    running = Stack()
    try:
        assert requests.get(f"{running.api_url}/health", timeout=30).status_code == 200
        children = _children(running.proc.pid)
        assert children
        code, took = running.stop(signal.SIGTERM)
        assert (code, took < 10) == (0, True), running.stderr_text
        assert _wait_gone(children, timeout=5) == set()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{running.api_url}/health", timeout=5)
    finally:
        if running.proc.poll() is None:
            running.kill()


# A sidecar with a process of its own (as a server with worker processes has).
PARENT_SIDECAR = shlex.join(
    [
        sys.executable,
        "-c",
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # sidecar child'])\n"
        "time.sleep(60)  # sidecar",
    ]
)


def _sidecar_family(running: Stack) -> set[int]:
    """The sidecar and its child, once both run (found by their command lines)."""
    deadline = time.monotonic() + 10
    while True:
        found = {
            pid
            for pid in _children(running.proc.pid)
            if b"# sidecar" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }
        if len(found) == 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _kill_left(running: Stack, family: set[int]) -> None:
    """A failed test leaves nothing behind: the stack, and sidecar processes it did not stop."""
    if running.proc.poll() is None:
        running.kill()
    for pid in family:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sidecar_and_its_own_children_are_gone_after_the_cli_stops(sig: signal.Signals) -> None:
    running = Stack("--sidecar", PARENT_SIDECAR)
    family = _sidecar_family(running)
    try:
        assert len(family) == 2, family
        code, _ = running.stop(sig)
        assert code == 0, running.stderr_text
        assert _wait_gone(family, timeout=5) == set()  # the child too: the sidecar's group is stopped
    finally:
        _kill_left(running, family)


def test_sidecar_does_not_outlive_a_killed_cli() -> None:
    """SIGKILL (a test runner's timeout, the OOM killer) gives the CLI no chance to stop anything: the
    sidecar is told by the kernel (parent-death signal)."""
    running = Stack("--sidecar", SLEEPER)
    family = {
        pid
        for pid in _children(running.proc.pid)
        if b"time.sleep(60)" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }
    try:
        assert len(family) == 1, family
        running.proc.kill()
        running.proc.wait(10)
        assert _wait_gone(family, timeout=5) == set()
    finally:
        _kill_left(running, family)


@pytest.mark.parametrize(
    ("flag", "kind", "what"),
    [
        ("--port", socket.SOCK_STREAM, "AWS endpoint"),
        ("--api-port", socket.SOCK_STREAM, "API Gateway"),
        ("--xray-port", socket.SOCK_DGRAM, "X-Ray daemon"),
    ],
)
def test_port_in_use_is_one_line_and_exit_2(flag: str, kind: socket.SocketKind, what: str) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--api-port": "0", "--xray-port": "0", flag: str(port)}
        proc = cli("start", "--template", FIXTURE, *[x for item in ports.items() for x in item])
    assert_one_line_error(proc, what, f"127.0.0.1:{port}", "in use", flag)
    assert proc.stdout == ""


def test_sidecar_that_exits_at_once_is_one_line_exit_2() -> None:
    quick = f"{shlex.quote(sys.executable)} -c 'raise SystemExit(3)'"
    proc = cli(*START, "--sidecar", quick)
    assert_one_line_error(proc, "sidecar", "status 3")


def test_sidecar_that_cannot_start_is_one_line_exit_2() -> None:
    proc = cli(*START, "--sidecar", "/nonexistent/simulator --fast")
    assert_one_line_error(proc, "cannot start sidecar", "No such file")


# --- invoke -----------------------------------------------------------------------------------------


def _event(tmp_path: Path, op: str, order: dict[str, Any]) -> Path:
    path = tmp_path / f"{op}.json"
    path.write_text(json.dumps({"op": op, "order": order}))
    return path


def test_invoke_prints_result_on_stdout_with_overrides(tmp_path: Path) -> None:
    event = _event(tmp_path, "validate", {"order_id": "o-1", "items": [2, 3]})
    proc = cli(
        "invoke",
        "StepFunction",
        "--template",
        FIXTURE,
        "--event",
        str(event),
        "--parameter-overrides",
        "Greeting=howdy",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is the result and nothing else
    assert result["greeting"] == "howdy, o-1"  # Key=Value override became the function's GREETING
    assert result["function"] == "sam-app-StepFunction"
    assert "START RequestId" in proc.stderr  # logs go to stderr


def test_invoke_of_raising_handler_prints_error_and_exits_1() -> None:
    event = json.dumps({"op": "validate", "order": {"order_id": "o-2"}})
    proc = cli("invoke", "sam-app-StepFunction", "--template", FIXTURE, "--event", "-", stdin=event)
    assert proc.returncode == 1, proc.stderr
    error = json.loads(proc.stdout)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "order has no items"


def test_invoke_unknown_function_names_the_available_ones() -> None:
    proc = cli("invoke", "NoSuchFunction", "--template", FIXTURE)
    line = assert_one_line_error(proc, "NoSuchFunction")
    for name in ("ApiFunction", "StepFunction", "WorkerFunction"):
        assert name in line


def test_invoke_with_missing_or_invalid_event_file(tmp_path: Path) -> None:
    missing = cli("invoke", "StepFunction", "--template", FIXTURE, "--event", str(tmp_path / "none.json"))
    assert_one_line_error(missing, "none.json", "cannot read")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    invalid = cli("invoke", "StepFunction", "--template", FIXTURE, "--event", str(bad))
    assert_one_line_error(invalid, "bad.json", "not valid JSON")
    piped = cli("invoke", "StepFunction", "--template", FIXTURE, "--event", "-", stdin="[1,")
    assert_one_line_error(piped, "not valid JSON")


def test_invoke_through_running_stack_uses_lambda_invoke_api(stack: Stack, tmp_path: Path) -> None:
    event = _event(tmp_path, "price", {"order_id": "o-3", "items": [4, 5]})
    ok = cli("invoke", "sam-app-StepFunction", "--endpoint-url", stack.endpoint_url, "--event", str(event))
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["total"] == 9
    assert _children(stack.proc.pid) & {result["pid"]}  # ran in a worker of the running stack
    failed = cli(
        "invoke",
        "sam-app-StepFunction",
        "--endpoint-url",
        stack.endpoint_url,
        "--event",
        "-",
        stdin=json.dumps({"op": "validate", "order": {"order_id": "x"}}),
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "ValueError"
    missing = cli("invoke", "Nope", "--endpoint-url", stack.endpoint_url)
    assert_one_line_error(missing, "'Nope' not found")


# --- lint -------------------------------------------------------------------------------------------


def test_lint_reports_problems_and_exits_1() -> None:
    fixture = cli("lint", "--template", FIXTURE)
    assert fixture.returncode == 1, fixture.stderr
    assert "VisibilityTimeout" in fixture.stdout  # the fixture's queue is shorter than the function timeout
    assert "3 state machine(s), 1 problem(s)" in fixture.stderr
    broken = cli("lint", "--template", BAD_ASL)
    assert broken.returncode == 1, broken.stderr
    assert "transition to 'Missing', which is not a state" in broken.stdout
    assert "'Orphan' is unreachable" in broken.stdout


def test_lint_yaml_error_and_missing_template_are_one_line() -> None:
    assert_one_line_error(cli("lint", "--template", BAD_YAML), "invalid YAML", "line 6")
    assert_one_line_error(cli("lint", "--template", "no/such/template.yaml"), "template not found")
    bad_value = cli("lint", "--template", FIXTURE, "--parameter-overrides", "Stage=qa")
    assert_one_line_error(bad_value, "Stage")


# --- executions / history ---------------------------------------------------------------------------


def test_executions_and_history_of_a_running_stack(stack: Stack) -> None:
    sfn = stack.client("stepfunctions")
    tick = next(
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if m["name"] == "sam-app-TickMachine"
    )
    arn = sfn.start_execution(stateMachineArn=tick, name="cli-test", input="{}")["executionArn"]
    deadline = time.monotonic() + 15
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)

    listed = cli("executions", "--endpoint-url", stack.endpoint_url)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.endswith(arn))
    assert line.split()[:2] == ["SUCCEEDED", "sam-app-TickMachine"]
    other = cli(
        "executions", "--endpoint-url", stack.endpoint_url, "--state-machine", "sam-app-ExpressMachine"
    )
    assert other.returncode == 0
    assert arn not in other.stdout

    history = cli("history", arn, "--endpoint-url", stack.endpoint_url)
    assert history.returncode == 0, history.stderr
    types = [line.split()[3] for line in history.stdout.splitlines()]
    assert types[0] == "ExecutionStarted"
    assert "PassStateEntered" in types
    assert types[-1] == "ExecutionSucceeded"
    unknown = cli("history", arn.replace("cli-test", "never-ran"), "--endpoint-url", stack.endpoint_url)
    assert_one_line_error(unknown, "never-ran")
    assert_one_line_error(cli("history", "not-an-arn", "--endpoint-url", stack.endpoint_url), "not-an-arn")


def test_executions_against_something_that_is_not_aws_is_one_line(stack: Stack) -> None:
    # The API Gateway port answers HTTP, but not the Step Functions protocol.
    assert_one_line_error(cli("executions", "--endpoint-url", stack.api_url), stack.api_url)


def test_executions_and_history_against_dead_endpoint_are_one_line() -> None:
    with socket.socket() as reserved:  # a port nobody listens on
        reserved.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        executions = cli("executions", "--endpoint-url", dead, timeout=20)
        arn = "arn:aws:states:us-east-1:123456789012:execution:m:e"
        history = cli("history", arn, "--endpoint-url", dead, timeout=20)
    assert_one_line_error(executions, "cannot reach", dead)
    assert_one_line_error(history, "cannot reach", dead)


def test_a_started_stack_freezes_its_start_up_heap_and_collects_young_objects_less_often() -> None:
    """`local start` settles the collector once started: what start-up built is frozen (full collections stop
    walking moto's and botocore's models) and the young generation is collected every 20,000 allocations."""
    import gc

    from local.cli import GC_GEN0_THRESHOLD, settle_garbage_collector

    before = gc.get_threshold()
    built = [[n] for n in range(10)]  # containers alive at "start-up": the collector tracks them
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > len(built)
        walked = {id(o) for o in gc.get_objects()}  # what collections still walk: not the frozen ones
        assert not walked & {id(o) for o in built}
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, before[1], before[2])
        young = [[n] for n in range(10)]  # built later: collected as usual
        assert {id(o) for o in young} <= {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
