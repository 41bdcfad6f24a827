"""SnapStart (Python) in the local Lambda runtime: published versions, the snapshot process, restores by fork.

One pool on tests/local/fixtures/snapstart/template.yaml serves the module (each SnapStart function takes its
snapshot once, at pool start). The fixture function writes "<function> <what> <pid>" lines to a trace file
for its init and its runtime hooks, so the tests can count what ran where.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from local.clock import VirtualClock
from local.lambda_runtime import LambdaPool
from local.lambda_runtime.pool import ThrottledException
from local.lambda_runtime.snapstart import (
    FunctionStateException,
    SnapStartException,
)
from local.model import StackModel
from local.ports import ResourceNotFoundException
from local.template_loader import load_stack

TEMPLATE = Path(__file__).parent / "fixtures" / "snapstart" / "template.yaml"
REGION, ACCOUNT = "eu-west-1", "123456789012"


class _PeerPort(BaseHTTPRequestHandler):
    """Answers each request with the client's port: one port per TCP connection."""

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:  # http.server calls it by this name
        body = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Snap:
    def __init__(self, pool: LambdaPool, trace: Path, lines: list[str], model: StackModel) -> None:
        self.pool, self.trace, self.lines, self.model = pool, trace, lines, model

    def call(self, ref: str, event: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        result = self.pool.invoke(ref, json.dumps(event or {}).encode())
        assert result.function_error is None, result.payload
        return json.loads(result.payload), result.log_tail

    def traced(self, function: str, what: str) -> list[int]:
        """Pids of the trace lines "<function> <what> <pid>"."""
        found = []
        for line in self.trace.read_text().splitlines():
            name, event, pid = line.split()
            if (name, event) == (function, what):
                found.append(int(pid))
        return found


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snap]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PeerPort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trace = tmp_path_factory.mktemp("snapstart") / "trace"
    trace.touch()
    model = load_stack(
        TEMPLATE,
        region=REGION,
        account_id=ACCOUNT,
        parameter_overrides={
            "TraceFile": str(trace),
            "KeepAliveUrl": f"http://127.0.0.1:{server.server_address[1]}/",
        },
    )
    lines: list[str] = []
    pool = LambdaPool(
        model.functions,
        endpoint_url="http://127.0.0.1:1",
        region=REGION,
        account_id=ACCOUNT,
        clock=VirtualClock(),
        log_sink=lambda name, line: lines.append(f"{name} {line}"),
    )
    try:
        yield Snap(pool, trace, lines, model)
    finally:
        pool.close()
        server.shutdown()


def test_template_alias_and_snapstart_are_understood(snap: Snap) -> None:
    spec = snap.model.functions["snap"]
    assert (spec.published_version, spec.aliases, spec.snap_start) == ("1", ("live",), True)
    plain = snap.model.functions["plain"]
    assert plain.published_version == "1" and not plain.snap_start
    assert not any("SnapStart" in u.detail for u in snap.model.unsupported)
    (api,) = snap.model.apis.values()
    assert [(r.path, r.function_name) for r in api.routes] == [("/info", "snap:live")]  # SAM: the alias


def test_environments_are_forks_of_one_snapshot(snap: Snap) -> None:
    results: list[dict[str, Any]] = []

    def busy() -> None:  # two at once: two environments
        results.append(snap.call("snap:live", {"op": "sleep", "seconds": 0.3})[0])

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.append(snap.call("snap:1")[0])  # the version number runs the same version
    snapshot_pid = snap.pool.snapshot_pid("snap")
    assert snapshot_pid is not None
    pids = {r["pid"] for r in results}
    assert len(pids) == 2 and snapshot_pid not in pids
    for r in results:
        assert r["init_pid"] == snapshot_pid  # module-level state from the snapshot's init
        assert r["restored_in"] == r["pid"]  # the after-restore hook ran in this environment
        assert (r["version"], r["init_type"], r["log_stream"]) == ("1", "snap-start", None)
    assert snap.traced("snap", "init").count(snapshot_pid) == 1  # init not re-run by a restore
    assert snap.traced("snap", "before_snapshot") == [snapshot_pid]
    assert pids <= set(snap.traced("snap", "after_restore"))


def test_report_has_restore_duration_and_version(snap: Snap) -> None:
    _, tail = _fresh_restore(snap)
    assert "RESTORE_START Runtime Version: " in tail
    assert re.search(r"^RESTORE_REPORT Restore Duration: \d+\.\d\d ms$", tail, re.M)
    report = next(line for line in tail.splitlines() if line.startswith("REPORT"))
    assert re.search(r"\tRestore Duration: \d+\.\d\d ms\tBilled Restore Duration: \d+ ms", report)
    assert "Init Duration" not in report
    assert "Version: 1" in tail
    _, warm = snap.call("snap:live")
    assert "Restore Duration" not in warm and "RESTORE_START" not in warm


def _fresh_restore(snap: Snap) -> tuple[dict[str, Any], str]:
    """An invocation that restores a new environment: the idle ones of the version exit first."""
    while snap.pool.stats("snap")["idle_environments"]:
        result = snap.pool.invoke("snap:live", json.dumps({"op": "exit"}).encode())
        if "RESTORE_START" in result.log_tail:  # the idle ones were $LATEST: this one was new
            break
        assert json.loads(result.payload)["errorType"] == "Runtime.ExitError"
    result = snap.pool.invoke("snap:live", b"{}")
    assert result.function_error is None
    return json.loads(result.payload), result.log_tail


def test_timeout_kills_the_restored_environment_and_next_restores_again(snap: Snap) -> None:
    before, _ = snap.call("snap:live")
    restores = snap.pool.stats("snap")["restores"]
    timed_out = snap.pool.invoke("snap:live", json.dumps({"op": "sleep", "seconds": 3}).encode())
    assert timed_out.function_error == "Unhandled"
    assert json.loads(timed_out.payload)["errorType"] == "Sandbox.Timedout"
    assert "Status: timeout" in timed_out.log_tail
    idle_pids = snap.pool.pids("snap")
    assert before["pid"] not in idle_pids
    with pytest.raises(ProcessLookupError):  # killed (its process group) and reaped by the snapshot
        for _ in range(100):
            os.kill(before["pid"], 0)
            threading.Event().wait(0.02)
    after, tail = _fresh_restore(snap)
    assert after["pid"] != before["pid"] and after["restored_in"] == after["pid"]
    assert "RESTORE_START" in tail
    assert snap.pool.stats("snap")["restores"] > restores


def test_keepalive_connection_from_init_does_not_survive_restore(snap: Snap) -> None:
    peers = []
    for _ in range(2):
        answer, _ = _fresh_restore_op(snap, "keepalive")
        assert answer["init_peer"] and answer["peer"]
        assert answer["peer"] != answer["init_peer"]  # reconnected: the init connection was shut down
        peers.append(answer["peer"])
    assert peers[0] != peers[1]  # each environment has its own connection


def _fresh_restore_op(snap: Snap, op: str) -> tuple[dict[str, Any], str]:
    _fresh_restore(snap)
    return snap.call("snap:live", {"op": op})


def test_exit_of_a_restored_environment_is_reported_with_its_code(snap: Snap) -> None:
    snap.call("snap:live")
    result = snap.pool.invoke("snap:live", json.dumps({"op": "exit"}).encode())
    error = json.loads(result.payload)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Runtime exited with error: exit status 3")


def test_latest_runs_plain_on_demand_init(snap: Snap) -> None:
    answer, tail = snap.call("snap")
    assert answer["version"] == "$LATEST" and answer["init_type"] == "on-demand"
    assert answer["init_pid"] == answer["pid"] and answer["restored_in"] is None
    assert answer["pid"] in snap.traced("snap", "init")
    assert "Init Duration" in tail and "Restore Duration" not in tail and "Version: $LATEST" in tail
    plain, plain_tail = snap.call("plain:live")  # a published version without SnapStart
    assert plain["version"] == "1" and plain["restored_in"] is None and "Init Duration" in plain_tail


def test_unknown_qualifier_of_a_published_function_is_not_found(snap: Snap) -> None:
    with pytest.raises(ResourceNotFoundException, match=r"function:snap:2$"):
        snap.pool.invoke("snap:2", b"{}")
    with pytest.raises(ResourceNotFoundException):
        snap.pool.invoke("snap:prod", b"{}")


def test_init_failure_at_snapshot_time_fails_the_version(snap: Snap) -> None:
    with pytest.raises(FunctionStateException) as caught:
        snap.pool.invoke("init-fails:live", b"{}")
    assert caught.value.status_code == 409 and caught.value.error_type == "ResourceConflictException"
    assert "state: Failed" in caught.value.message
    (report,) = [line for line in snap.lines if line.startswith("init-fails INIT_REPORT")]
    expected = r"init-fails INIT_REPORT Init Duration: [\d.]+ ms\tPhase: init\tStatus: error\tError Type: \w+"
    assert re.fullmatch(expected, report) and report.endswith("RuntimeError")
    assert snap.pool.snapshot_pid("init-fails") is not None
    assert snap.traced("init-fails", "before_snapshot") == []
    latest = snap.pool.invoke("init-fails", b"{}")  # $LATEST: the ordinary init error, as before
    assert latest.function_error == "Unhandled"
    assert json.loads(latest.payload)["errorMessage"] == "init failed on purpose"


def test_after_restore_hook_failure_is_snapstart_exception(snap: Snap) -> None:
    with pytest.raises(SnapStartException) as caught:
        snap.pool.invoke("restore-fails:live", b"{}")
    assert caught.value.status_code == 400
    assert "afterRestore() runtime hook" in caught.value.message
    assert any("after-restore hook failed on purpose" in line for line in snap.lines)
    assert snap.pool.pids("restore-fails") == set()  # the failed environment is gone


def test_reserved_concurrency_counts_every_version(snap: Snap) -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def busy(ref: str) -> None:
        try:
            barrier.wait(5)
            snap.call(ref, {"op": "sleep", "seconds": 0.6})
        except BaseException as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=busy, args=(ref,)) for ref in ("snap:live", "snap")]
    for thread in threads:
        thread.start()
    threading.Event().wait(0.3)
    with pytest.raises(ThrottledException):  # ReservedConcurrentExecutions: 2, both slots taken
        snap.pool.invoke("snap:live", b"{}")
    for thread in threads:
        thread.join()
    assert errors == []


def test_no_thread_runs_in_the_snapshot(snap: Snap) -> None:
    snap.call("snap:live")
    assert not [line for line in snap.lines if "running at snapshot time" in line]
    pid = snap.pool.snapshot_pid("snap")
    assert pid is not None and len(os.listdir(f"/proc/{pid}/task")) == 1


def test_what_lambda_refuses_with_snapstart_is_named_and_runs_without(tmp_path: Path) -> None:
    source = TEMPLATE.read_text().replace("CodeUri: src", f"CodeUri: {TEMPLATE.parent / 'src'}")
    name = "      FunctionName: snap\n"
    source = source.replace(name, name + "      EphemeralStorage:\n        Size: 1024\n")
    template = tmp_path / "template.yaml"
    template.write_text(source)
    model = load_stack(template, parameter_overrides={"TraceFile": str(tmp_path / "trace")})
    spec = model.functions["snap"]
    assert spec.published_version == "1" and not spec.snap_start
    assert model.functions["init-fails"].snap_start
    (refusal,) = [u.detail for u in model.unsupported if "SnapStart" in u.detail]
    assert refusal == "SnapStart ignored: Lambda refuses it with EphemeralStorage 1024 MB > 512 MB"
