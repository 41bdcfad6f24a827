"""Stopping the stack while Lambda invocations are in flight: it ends promptly and leaves no process behind.

The fixture's function sleeps for minutes (with a child process of its own), invoked the three ways work
reaches a function: an SQS event source mapping, an asynchronous Invoke and a synchronous one. Lambda ends
such invocations on shutdown; so must the runtime, instead of waiting for them (or for the interpreter's
teardown) past the patience of whoever pressed Ctrl-C.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.clock import RealClock
from local.ports import InvokeResult
from local.runtime import LocalRuntime, RuntimeConfig
from local.uploader import BackgroundUploader
from tests.local.clients import local_client
from tests.local.test_cli import Stack, _alive, _children

FIXTURE = Path(__file__).parent / "fixtures" / "shutdown" / "template.yaml"
STOP_BOUND_S = 5.0  # the promise: Ctrl-C ends `local start` within this, invocations in flight or not
IN_PROCESS_BOUND_S = 3.0  # LocalRuntime.stop() alone (no interpreter exit, no sidecars)


def _client(endpoint_url: str, service: str) -> Any:
    return local_client(endpoint_url, service)


def _busy_pids(pidfile: Path, count: int, timeout: float = 60.0) -> set[int]:
    """The worker and child pids of ``count`` invocations once all are inside the handler."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = pidfile.read_text().splitlines() if pidfile.exists() else []
        if len(lines) >= count:
            return {int(pid) for line in lines for pid in line.split()}
        time.sleep(0.05)
    raise AssertionError(f"{count} invocations did not start within {timeout}s: {lines}")


def _still_alive(pids: set[int], grace: float = 1.0) -> set[int]:
    """Those of ``pids`` alive after ``grace`` seconds (killed processes may take a moment to be reaped)."""
    deadline = time.monotonic() + grace
    while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _queue_url(endpoint_url: str) -> str:
    urls = _client(endpoint_url, "sqs").list_queues()["QueueUrls"]
    [url] = [u for u in urls if "WorkQueue" in u]
    return str(url)


def _slow_function(names: str) -> str:
    """The deployed name of SlowFunction (``<stack>-SlowFunction``) among ``names``."""
    match = re.search(r"[\w-]*SlowFunction[\w-]*", names)
    assert match, names
    return match.group(0)


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    rt = LocalRuntime(
        RuntimeConfig(template=FIXTURE, aws_port=0, api_port=0, xray_port=0, echo_logs=False),
        clock=RealClock(),
    )
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()  # a no-op once the test has stopped it


def test_stop_kills_invocations_in_flight_at_once_and_leaves_no_process(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    params = json.dumps({"pidfile": str(pidfile)})
    name = _slow_function(" ".join(runtime.model.functions))
    _client(runtime.endpoint_url, "sqs").send_message(
        QueueUrl=_queue_url(runtime.endpoint_url), MessageBody=params
    )
    _client(runtime.endpoint_url, "lambda").invoke(
        FunctionName=name, InvocationType="Event", Payload=params.encode()
    )
    results: list[InvokeResult] = []
    caller = threading.Thread(target=lambda: results.append(runtime.pool.invoke(name, params.encode())))
    caller.start()
    pids = _busy_pids(pidfile, 3)
    assert len(pids) == 6 and all(_alive(pid) for pid in pids), "3 workers and their 3 children run"

    started = time.monotonic()
    runtime.stop()
    took = time.monotonic() - started

    assert took < IN_PROCESS_BOUND_S, f"stop() took {took:.1f}s with 3 invocations in flight"
    assert _still_alive(pids) == set(), "workers or their children outlived stop()"
    caller.join(5)
    [result] = results  # the synchronous caller got its answer: the environment was killed under it
    assert result.function_error == "Unhandled"
    assert b"Runtime.ExitError" in result.payload


def test_sigint_ends_local_start_promptly_with_invocations_in_flight(tmp_path: Path) -> None:
    stack = Stack("--template", str(FIXTURE))
    try:
        pidfile = tmp_path / "pids"
        params = json.dumps({"pidfile": str(pidfile)})
        _client(stack.endpoint_url, "sqs").send_message(
            QueueUrl=_queue_url(stack.endpoint_url), MessageBody=params
        )
        _client(stack.endpoint_url, "lambda").invoke(
            FunctionName=_slow_function(stack.banner), InvocationType="Event", Payload=params.encode()
        )
        pids = _busy_pids(pidfile, 2) | _children(stack.proc.pid)
    except BaseException:
        stack.kill()
        raise

    code, took = stack.stop(signal.SIGINT, timeout=30)

    assert code == 0, stack.stderr_text
    assert took < STOP_BOUND_S, f"SIGINT took {took:.1f}s to end `local start`:\n{stack.stderr_text[-3000:]}"
    assert _still_alive(pids) == set(), "processes outlived `local start`"
    assert "stopping ..." in stack.stderr_text


class _HungUploader(BackgroundUploader):
    """An uploader whose endpoint never answers: every flush blocks until the test lets it go."""

    close_timeout = 0.5

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", flush_interval=0.01)
        self.release = threading.Event()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.release.wait(60)


def test_close_does_not_wait_on_an_endpoint_that_stopped_answering(caplog: pytest.LogCaptureFixture) -> None:
    uploader = _HungUploader().start()
    while uploader.flushes == 0:  # the background thread is inside an upload
        time.sleep(0.01)
    closer = threading.Thread(target=uploader.close, daemon=True)
    started = time.monotonic()
    closer.start()
    closer.join(10)
    took = time.monotonic() - started
    uploader.release.set()
    assert not closer.is_alive(), "close() hung on the endpoint"
    assert took < uploader.close_timeout + 2
    assert "did not finish in time" in caplog.text


class _RecordingUploader(BackgroundUploader):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", flush_interval=60)
        self.flushed = 0

    def flush(self) -> None:
        self.flushed += 1


def test_close_still_makes_a_last_flush_and_raises_its_error() -> None:
    uploader = _RecordingUploader().start()
    uploader.close()
    assert uploader.flushed >= 1  # what was buffered when close() began is uploaded

    class Failing(_RecordingUploader):
        def flush(self) -> None:
            raise RuntimeError("endpoint refused")

    with pytest.raises(RuntimeError, match="endpoint refused"):
        Failing().close()


def _tgkill(pid: int, tid: int, sig: signal.Signals) -> None:
    """``sig`` to one thread of ``pid``: what the kernel does with a kill() when it picks that thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill is Linux's")
def test_sigint_taken_by_a_thread_other_than_main_still_stops_the_stack() -> None:
    """A process-directed signal may be handed to any thread that does not block it. Python then runs the
    handler on the main thread only once that thread next runs bytecode: a main thread blocked in a lock
    acquire without timeout (``Event.wait()``) never did, and the stack ran on until killed."""
    stack = Stack("--template", str(FIXTURE))
    try:
        others = sorted(
            int(t) for t in os.listdir(f"/proc/{stack.proc.pid}/task") if int(t) != stack.proc.pid
        )
        assert others, "the stack runs threads besides main"
        started = time.monotonic()
        _tgkill(stack.proc.pid, others[-1], signal.SIGINT)
        code = stack.proc.wait(STOP_BOUND_S * 3)
    except BaseException:
        stack.kill()
        raise
    took = time.monotonic() - started
    assert code == 0, stack.stderr_text
    assert took < STOP_BOUND_S, f"took {took:.1f}s"
    assert "stopping ..." in stack.stderr_text
