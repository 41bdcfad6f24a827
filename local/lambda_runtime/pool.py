"""Lambda execution environments without Docker: one worker process per environment, reused warm.

An environment is ``python bootstrap.py`` with the function's code and layers first on sys.path and a
Lambda-shaped, otherwise clean, environment. It runs one invocation at a time; concurrent invocations start
more environments, up to ReservedConcurrentExecutions (or the account limit), beyond which the invoke is
throttled at once, as Lambda does for synchronous calls. Timeouts are real seconds: the environment is
killed and the next invocation starts cold. A published version with SnapStart gets its new environments
by fork from a snapshot process instead (snapstart.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from local.clock import Clock
from local.lambda_runtime.bootstrap import HEADER, INIT_MARKER, write_frame
from local.lambda_runtime.snapstart import (
    RESTORE_TIMEOUT,
    FunctionStateException,
    RestoredProcess,
    SnapshotProcess,
    SnapStartException,
    SnapStartNotReadyException,
    SnapStartTimeoutException,
)
from local.model import FunctionSpec
from local.ports import (
    InvalidRequestContentException,
    InvokeResult,
    LambdaServiceError,
    ResourceNotFoundException,
    SegmentSink,
    TooManyRequestsException,
)
from local.xray import TraceHeader, ensure_trace, is_trace_id, lambda_function_segment, lambda_service_segment
from local.xray import new_segment_id as _new_segment_id
from local.xray import parse_trace_header as _parse_trace_header

log = logging.getLogger(__name__)

# The access key of every execution environment: the runtime recognises calls made by function code by it.
LAMBDA_ACCESS_KEY_ID = "ASIALOCALLAMBDAKEY00"
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # the figure Lambda's error message quotes
LOG_TAIL_BYTES = 4096
INIT_TIMEOUT = 10.0  # seconds Lambda gives the init phase, independent of the function's Timeout
LOG_DRAIN_TIMEOUT = 2.0  # how long to wait for a finished invocation's last log lines
ASYNC_RETRY_DELAYS = (60.0, 120.0)  # Lambda retries a failed async invocation twice, 1 then 2 minutes later
MAX_EVENT_AGE = 6 * 3600.0  # an async event still throttled after this is dropped
RUNTIME_VERSION = "python:3.13.local"
PYCACHE_PREFIX = Path(tempfile.gettempdir()) / f"local-lambda-pycache-{os.getuid()}"
# Host variables a worker may inherit; everything else (notably AWS_* and PYTHONPATH) is withheld.
_INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "LD_LIBRARY_PATH", "SYSTEMROOT")
_SIGNAL_WORDS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGKILL: "killed",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
}

LogSink = Callable[[str, str], None]


class RequestTooLargeException(LambdaServiceError):
    status_code = 413
    error_type = "RequestTooLargeException"


class ValidationException(LambdaServiceError):
    status_code = 400
    error_type = "ValidationException"


class ThrottledException(TooManyRequestsException):
    """Lambda's 429 carries a ``Reason`` saying which limit was hit."""

    def __init__(self, reason: str) -> None:
        super().__init__("Rate Exceeded.")
        self.reason = reason


def _stderr_sink(function_name: str, line: str) -> None:
    print(f"[{function_name}] {line}", file=sys.stderr, flush=True)


@dataclass
class _Capture:
    """One invocation's log, as the reader thread sees it."""

    request_id: str
    lines: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class _Environment:
    """One execution environment: the worker process, its two frame pipes and its log reader thread."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes] | RestoredProcess,
        ctrl_w: int,
        result_r: int,
        nonce: str,
        function_name: str,
        emit: Callable[[str, _Capture | None], None],
        capture: _Capture,
        version: str = "$LATEST",
        restored: bool = False,
    ) -> None:
        self.nonce = nonce
        self.capture: _Capture | None = capture
        self.init_logged = threading.Event()  # the init phase's output has been read (START comes after)
        self.max_memory_mb = 0
        self.version = version
        self.restored = restored  # forked from a SnapStart snapshot
        self.restore_hooks_ms = 0.0  # the after-restore hooks' time (Billed Restore Duration)
        self._emit = emit
        self.proc = proc
        self._ctrl_w, self._result_r = ctrl_w, result_r
        self._unread = bytearray()  # read from the result pipe, not yet handed out as a frame
        self._poller: select.poll | None = None
        self.pid = self.proc.pid
        self._fds: tuple[int, ...] = (self._ctrl_w, self._result_r)
        self._dispose_lock = threading.Lock()
        self._reader = threading.Thread(
            target=self._read_log, name=f"lambda-log-{function_name}-{self.pid}", daemon=True
        )
        self._reader.start()

    @classmethod
    def spawn(
        cls,
        argv_head: list[str],
        spec: FunctionSpec,
        env: dict[str, str],
        emit: Callable[[str, _Capture | None], None],
        capture: _Capture,
        version: str,
    ) -> _Environment:
        """A fresh worker process (on-demand init)."""
        nonce = uuid.uuid4().hex
        ctrl_r, ctrl_w = os.pipe()
        result_r, result_w = os.pipe()
        layers = json.dumps([str(p) for p in layer_paths(spec.layer_dirs)])
        try:
            proc = subprocess.Popen(
                [*argv_head, str(ctrl_r), str(result_w), nonce, layers],
                env=env,
                cwd=spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, in order, as CloudWatch shows it
                pass_fds=(ctrl_r, result_w),
                start_new_session=True,  # so a kill also takes the handler's own children
            )
        except BaseException:
            os.close(ctrl_w)
            os.close(result_r)
            raise
        finally:
            os.close(ctrl_r)
            os.close(result_w)
        return cls(proc, ctrl_w, result_r, nonce, spec.function_name, emit, capture, version)

    # -- the log stream -------------------------------------------------------------------------------------
    def _read_log(self) -> None:
        stream = cast(IO[bytes], self.proc.stdout)
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            capture = self.capture
            at = line.find(self.nonce)
            if at < 0:
                self._emit(line, capture)
                continue
            if at:  # the handler's unterminated last line
                self._emit(line[:at], capture)
            marker = line[at + len(self.nonce) :]
            if marker == INIT_MARKER:
                self.init_logged.set()
            elif capture is not None and capture.request_id == marker:
                capture.done.set()
        stream.close()

    def drain(self, timeout: float) -> None:
        self._reader.join(timeout)

    # -- frames ---------------------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> bool:
        try:
            write_frame(self._ctrl_w, message)
        except OSError:  # the worker is gone
            return False
        return True

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next frame, None if the worker exited; TimeoutError at ``deadline`` (monotonic)."""
        if not self._fill(HEADER.size, deadline):
            return None
        size = HEADER.size + HEADER.unpack_from(self._unread)[0]
        if not self._fill(size, deadline):
            return None
        body = bytes(self._unread[HEADER.size : size])
        del self._unread[:size]
        return cast(dict[str, Any], json.loads(body))

    def _fill(self, size: int, deadline: float) -> bool:
        """Read until ``size`` bytes are unread; False if the worker exited. A read takes whatever the pipe
        holds (up to 64 KiB): a frame's header and body usually come in one read."""
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._result_r, select.POLLIN)
        while len(self._unread) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poller.poll(remaining * 1000):
                raise TimeoutError
            try:
                chunk = os.read(self._result_r, max(65536, size - len(self._unread)))
            except OSError:  # disposed meanwhile
                return False
            if not chunk:
                return False
            self._unread += chunk
        return True

    # -- end of life ----------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "exit status unknown"
        if code < 0:
            sig = signal.Signals(-code)
            return f"signal: {_SIGNAL_WORDS.get(sig, sig.name)}"
        return f"exit status {code}"

    def kill(self) -> None:
        """Kill the worker (and its children) and collect its last log lines. Safe from any thread."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:  # a restored environment killed before it had its own group
                    os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(LOG_DRAIN_TIMEOUT)

    def dispose(self) -> None:
        """Kill and close the pipes. Only the environment's owner calls this (the invoking thread, or the
        pool for an idle environment), so no other thread can be reading a descriptor number being reused."""
        self.kill()
        with self._dispose_lock:
            fds, self._fds = self._fds, ()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def layer_paths(layer_dirs: list[Path]) -> list[Path]:
    """/opt/python and /opt/python/lib/python3.X/site-packages for each layer, as Lambda mounts them."""
    paths: list[Path] = []
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for layer in layer_dirs:
        root = layer / "python" if (layer / "python").is_dir() else layer
        site = root / "lib" / version / "site-packages"
        paths.extend([site, root] if site.is_dir() else [root])
    return paths


def parse_function_ref(ref: str) -> tuple[str, str | None]:
    """(name, qualifier) from a name, a full or partial ARN, each with an optional ``:qualifier``."""
    parts = ref.split(":")
    if ref.startswith("arn:") and len(parts) >= 7 and parts[5] == "function":
        return parts[6], (parts[7] if len(parts) > 7 else None)
    if len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:qualifier]
        return parts[2], (parts[3] if len(parts) > 3 else None)
    if len(parts) == 2:
        return parts[0], parts[1]
    return ref, None


def _event_text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RequestTooLargeException(
            f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
        )
    if not payload.strip():
        return "{}"  # Lambda hands an empty payload to the handler as an empty object
    try:
        text = payload.decode("utf-8")
        json.loads(text)
    except ValueError as e:
        raise InvalidRequestContentException(
            f"Could not parse request body into json: Could not parse payload into json: {e}"
        ) from None
    return text


def _client_context(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        doc = json.loads(base64.b64decode(value, validate=True))
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise InvalidRequestContentException("Client context must be a valid Base64-encoded JSON object.")
    return doc


def _tail(lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode()[-LOG_TAIL_BYTES:]
    return data.decode("utf-8", "ignore")


@dataclass
class _Trace:
    header: TraceHeader  # as received (Parent = the caller's segment)
    service_id: str = field(default_factory=_new_segment_id)
    function_id: str = field(default_factory=_new_segment_id)

    @property
    def worker_header(self) -> str:
        return self.header.with_parent(self.function_id).to_header()


@dataclass
class _Outcome:
    payload: bytes
    error: dict[str, Any] | None = None
    init_span: tuple[float, float] | None = None  # monotonic
    invoke_span: tuple[float, float] | None = None
    timed_out: bool = False
    reusable: bool = True


class LambdaPool:
    """Implements ``local.ports.LambdaInvoker`` with real worker processes."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        *,
        endpoint_url: str,
        region: str,
        account_id: str,
        clock: Clock,
        xray_daemon_address: str | None = None,
        segment_sink: SegmentSink | None = None,
        log_sink: LogSink | None = None,
        python: str = sys.executable,
        account_concurrency: int = 50,
    ) -> None:
        self._functions = dict(functions)
        self._endpoint_url = endpoint_url
        self._region = region
        self._account_id = account_id
        self._clock = clock
        self._xray_address = xray_daemon_address
        self._segments = segment_sink
        self._log_sink = log_sink or _stderr_sink
        self._argv_head = [python, str(BOOTSTRAP)]
        self._account_concurrency = account_concurrency
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Environment]] = {name: [] for name in self._functions}
        self._live: dict[str, set[_Environment]] = {name: set() for name in self._functions}
        self._busy: Counter[str] = Counter()
        self._unreserved_busy = 0
        self._counts: dict[str, Counter[str]] = {name: Counter() for name in self._functions}
        self._async: set[threading.Thread] = set()
        self._closed = threading.Event()
        # SnapStart: each published version with SnapStart is initialised once, in the background, so start-up
        # is not slowed; its first invocation waits for the snapshot if needed.
        self._snapshots: dict[str, SnapshotProcess] = {}
        for spec in self._functions.values():
            if spec.snap_start:
                self._snapshots[spec.function_name] = self._snapshot(spec)

    # -- public API -----------------------------------------------------------------------------------------
    def invoke(
        self,
        function: str,
        payload: bytes,
        *,
        invocation_type: str = "RequestResponse",
        trace_header: str | None = None,
        client_context: str | None = None,
    ) -> InvokeResult:
        if self._closed.is_set():
            raise LambdaServiceError("The local Lambda service is shutting down.")
        spec, invoked_arn = self._resolve(function)
        event = _event_text(payload)
        context = _client_context(client_context)
        request_id = str(uuid.uuid4())
        if invocation_type == "DryRun":
            return InvokeResult(b"", status_code=204, request_id=request_id)
        if invocation_type == "Event":
            self._start_async(spec, invoked_arn, event, request_id, trace_header, context)
            return InvokeResult(b"", status_code=202, request_id=request_id)
        if invocation_type != "RequestResponse":
            raise ValidationException(
                f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
                "satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            )
        return self._invoke(spec, invoked_arn, event, request_id, trace_header, context)

    def snapshot_pid(self, function_name: str) -> int | None:
        """Process id of the function's SnapStart snapshot process (None: no SnapStart, or not started)."""
        spec, _ = self._resolve(function_name)
        snapshot = self._snapshots.get(spec.function_name)
        return None if snapshot is None else snapshot.pid

    def stats(self, function_name: str) -> dict[str, int]:
        spec, _ = self._resolve(function_name)
        name = spec.function_name
        with self._lock:
            counts = self._counts[name]
            return {
                "cold_starts": counts["cold_starts"],
                "restores": counts["restores"],
                "warm_environments": len(self._live[name]),
                "idle_environments": len(self._idle[name]),
                "busy": self._busy[name],
                "invocations": counts["invocations"],
                "throttles": counts["throttles"],
                "errors": counts["errors"],
                "timeouts": counts["timeouts"],
            }

    def pids(self, function_name: str) -> set[int]:
        """Process ids of the function's live environments."""
        spec, _ = self._resolve(function_name)
        with self._lock:
            return {env.pid for env in self._live[spec.function_name]}

    def close(self, timeout: float = 3.0) -> None:
        """Shut down as Lambda does: no new invocations, every environment killed at once, busy ones too
        (their callers get Runtime.ExitError). Waits up to ``timeout`` in all for the invoking threads to
        let go, killing what a cold start that was already past _acquire spawns meanwhile."""
        self._closed.set()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = [env for envs in self._idle.values() for env in envs]
                live = [env for envs in self._live.values() for env in envs]
                for name in self._functions:
                    self._idle[name].clear()
                    self._live[name].clear()
                in_flight = sum(self._busy.values())
                pending = [thread for thread in self._async if thread.is_alive()]
            for env in live:  # SIGKILL to every group first: no environment waits for another's death
                if env.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(env.proc.pid, signal.SIGKILL)
                env.init_logged.set()  # a killed worker logs no more init output: a cold start goes on
            for env in idle:  # nobody owns an idle environment: close it here
                env.dispose()
            if (in_flight == 0 and not pending) or time.monotonic() >= deadline:
                break
            time.sleep(0.02)  # busy ones are disposed by their invoking threads, which see the exit
        for snapshot in self._snapshots.values():
            snapshot.close()
        if in_flight or pending:
            log.warning("Lambda pool closed with %d invocation(s) still unwinding", in_flight + len(pending))

    def __enter__(self) -> LambdaPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resolving and limits -------------------------------------------------------------------------------
    def _resolve(self, ref: str) -> tuple[FunctionSpec, str]:
        name, qualifier = parse_function_ref(ref)
        spec = self._functions.get(name)
        if spec is None:
            arn = f"arn:aws:lambda:{self._region}:{self._account_id}:function:{name}"
            raise ResourceNotFoundException(
                f"Function not found: {arn}" + (f":{qualifier}" if qualifier else "")
            )
        # A function with AutoPublishAlias has version 1 and its aliases; any other qualifier of it does not
        # exist. Functions without published versions run every qualifier as $LATEST (lenient, as before).
        if (
            spec.published_version is not None
            and qualifier not in (None, "$LATEST", spec.published_version)
            and qualifier not in spec.aliases
        ):
            raise ResourceNotFoundException(f"Function not found: {spec.arn}:{qualifier}")
        return spec, spec.arn + (f":{qualifier}" if qualifier else "")

    @staticmethod
    def _version(spec: FunctionSpec, invoked_arn: str) -> str:
        """The version an invocation runs: the published one for its number or an alias, else $LATEST."""
        qualifier = invoked_arn[len(spec.arn) + 1 :]
        if spec.published_version is not None and qualifier not in ("", "$LATEST"):
            return spec.published_version
        return "$LATEST"

    def _acquire(self, spec: FunctionSpec, version: str = "$LATEST") -> _Environment | None:
        """Take a concurrency slot and a warm environment if one is idle (None: start a cold one)."""
        name = spec.function_name
        with self._lock:
            if self._closed.is_set():
                raise LambdaServiceError("The local Lambda service is shutting down.")
            reserved = spec.reserved_concurrency
            if reserved is not None and self._busy[name] >= reserved:
                self._counts[name]["throttles"] += 1
                raise ThrottledException("ReservedFunctionConcurrentInvocationLimitExceeded")
            if reserved is None and self._unreserved_busy >= self._account_concurrency:
                self._counts[name]["throttles"] += 1
                raise ThrottledException("ConcurrentInvocationLimitExceeded")
            self._busy[name] += 1
            if reserved is None:
                self._unreserved_busy += 1
            self._counts[name]["invocations"] += 1
            idle = self._idle[name]
            for at in range(len(idle) - 1, -1, -1):  # the most recently used environment of that version
                if idle[at].version == version:
                    return idle.pop(at)
            return None

    def _release(self, spec: FunctionSpec, env: _Environment | None, reusable: bool) -> None:
        name = spec.function_name
        with self._lock:
            self._busy[name] -= 1
            if spec.reserved_concurrency is None:
                self._unreserved_busy -= 1
            keep = env is not None and reusable and env.alive and not self._closed.is_set()
            if env is not None and keep:
                self._idle[name].append(env)
            elif env is not None:
                self._live[name].discard(env)
        if env is not None and not keep:
            env.dispose()

    # -- one synchronous invocation -------------------------------------------------------------------------
    def _invoke(
        self,
        spec: FunctionSpec,
        invoked_arn: str,
        event: str,
        request_id: str,
        trace_header: str | None,
        client_context: dict[str, Any] | None,
        status: int = 200,
    ) -> InvokeResult:
        trace = self._trace_for(spec, trace_header)
        clock_start, mono_start = self._clock.now(), time.monotonic()
        version = self._version(spec, invoked_arn)
        try:
            env = self._acquire(spec, version)
        except ThrottledException:
            self._emit_segments(spec, trace, request_id, clock_start, mono_start, None, 429)
            raise
        capture = _Capture(request_id)
        holder: list[_Environment | None] = [env]  # _execute puts a cold environment here for _release
        outcome = _Outcome(b"", reusable=False)
        try:
            with self._clock.busy():
                outcome = self._execute(
                    spec, holder, invoked_arn, event, request_id, trace, client_context, capture, version
                )
        finally:
            self._release(spec, holder[0], outcome.reusable)
        if outcome.error is not None:
            with self._lock:
                self._counts[spec.function_name]["timeouts" if outcome.timed_out else "errors"] += 1
        self._emit_segments(spec, trace, request_id, clock_start, mono_start, outcome, status)
        return InvokeResult(
            payload=outcome.payload,
            function_error="Unhandled" if outcome.error is not None else None,
            log_tail=_tail(capture.lines),
            request_id=request_id,
        )

    def _execute(
        self,
        spec: FunctionSpec,
        holder: list[_Environment | None],
        invoked_arn: str,
        event: str,
        request_id: str,
        trace: _Trace | None,
        client_context: dict[str, Any] | None,
        capture: _Capture,
        version: str = "$LATEST",
    ) -> _Outcome:
        outcome: _Outcome | None = None
        env = holder[0]
        init_span: tuple[float, float] | None = None
        if env is None:
            snapshot = self._snapshots.get(spec.function_name) if version != "$LATEST" else None
            if snapshot is not None:
                env, outcome, init_span = self._restore(spec, capture, snapshot, version)
            else:
                env, outcome, init_span = self._cold_start(spec, capture, version)
            holder[0] = env
        else:
            env.capture = capture
        self._log(spec, f"START RequestId: {request_id} Version: {version}", capture)
        started = time.monotonic()
        if outcome is None:
            deadline_ms = int(time.time() * 1000) + spec.timeout * 1000
            message = {
                "request_id": request_id,
                "event": event,
                "deadline_ms": deadline_ms,
                "invoked_function_arn": invoked_arn,
                "trace_id": trace.worker_header if trace else None,
                "client_context": client_context,
            }
            outcome = self._exchange(spec, env, message, started + spec.timeout, capture)
        ended = time.monotonic()
        outcome.init_span, outcome.invoke_span = init_span, (started, ended)
        env.capture = None
        self._log(spec, f"END RequestId: {request_id}", capture)
        self._log(
            spec, self._report_line(spec, request_id, ended - started, env, init_span, outcome), capture
        )
        return outcome

    def _cold_start(
        self, spec: FunctionSpec, capture: _Capture, version: str = "$LATEST"
    ) -> tuple[_Environment, _Outcome | None, tuple[float, float]]:
        """Start an environment and import the handler: (env, an error outcome if init failed, init span)."""
        self._log(spec, f"INIT_START Runtime Version: {RUNTIME_VERSION}", capture)
        started = time.monotonic()
        try:
            env = _Environment.spawn(
                self._argv_head,
                spec,
                self._worker_environment(spec, version),
                lambda line, cap: self._log(spec, line, cap),
                capture,
                version,
            )
        except OSError as e:  # e.g. a missing CodeUri directory or interpreter
            raise LambdaServiceError(f"Could not start an environment for {spec.function_name}: {e}") from e
        with self._lock:
            self._live[spec.function_name].add(env)
            self._counts[spec.function_name]["cold_starts"] += 1
        outcome: _Outcome | None = None
        try:
            ready = env.receive(started + max(INIT_TIMEOUT, spec.timeout))
        except TimeoutError:
            limit = max(INIT_TIMEOUT, spec.timeout)
            outcome = self._timeout_outcome(spec, env, capture.request_id, capture, limit)
        else:
            if ready is None:
                outcome = self._exit_outcome(env, capture.request_id)
            elif ready.get("error"):
                error = dict(ready["error"], requestId=capture.request_id)
                outcome = _Outcome(json.dumps(error).encode(), error=error, reusable=False)
            # Import-time output belongs before START, as in Lambda. A worker that exited has no marker to
            # print: its log was drained above.
            if ready is not None:
                env.init_logged.wait(LOG_DRAIN_TIMEOUT)
        return env, outcome, (started, time.monotonic())

    # -- SnapStart ------------------------------------------------------------------------------------------
    def _snapshot(self, spec: FunctionSpec) -> SnapshotProcess:
        """Publish the version: its snapshot process (init + before-snapshot hooks), in the background."""
        version = spec.published_version
        assert version is not None, "the loader sets snap_start only on a published version"
        snapshot = SnapshotProcess(
            self._argv_head,
            self._worker_environment(spec, version, snap_start=True),
            spec.code_dir,
            json.dumps([str(p) for p in layer_paths(spec.layer_dirs)]),
            lambda line: self._log(spec, line, None),
        )

        def take() -> None:
            self._log(spec, f"INIT_START Runtime Version: {RUNTIME_VERSION}", None)
            try:
                snapshot.start(max(INIT_TIMEOUT, spec.timeout))
            except LambdaServiceError:  # closed while starting
                return
            except OSError as e:
                log.error("SnapStart %s: cannot start the snapshot process: %s", spec.function_name, e)
                return
            failure, span = snapshot.failure, snapshot.init_span
            report = "INIT_REPORT" + (f" Init Duration: {(span[1] - span[0]) * 1000:.2f} ms" if span else "")
            if failure is None:
                self._log(spec, report, None)
            elif not self._closed.is_set():
                error_type = failure.error.get("errorType")
                report += f"\tPhase: {failure.phase}\tStatus: error\tError Type: {error_type}"
                self._log(spec, report, None)
                log.error(
                    "SnapStart %s version %s: snapshot failed (%s: %s); the version is in state Failed and "
                    "its invocations answer ResourceConflictException",
                    spec.function_name,
                    version,
                    error_type,
                    failure.error.get("errorMessage"),
                )

        threading.Thread(target=take, name=f"snapstart-{spec.function_name}", daemon=True).start()
        return snapshot

    def _restore(
        self, spec: FunctionSpec, capture: _Capture, snapshot: SnapshotProcess, version: str
    ) -> tuple[_Environment, _Outcome | None, tuple[float, float]]:
        """A new environment forked from the version's snapshot: (env, error outcome, restore span)."""
        if not snapshot.wait_ready(max(INIT_TIMEOUT, spec.timeout) + LOG_DRAIN_TIMEOUT):
            raise SnapStartNotReadyException(
                "Lambda is initializing your function. It will be ready to invoke once your function state "
                "becomes ACTIVE."
            )
        if snapshot.failure is not None or snapshot.pid is None:
            raise FunctionStateException(
                "The operation cannot be performed at this time. The function is currently in the following "
                f"state: Failed (version {version}: its snapshot could not be created; see the log)"
            )
        self._log(spec, f"RESTORE_START Runtime Version: {RUNTIME_VERSION}", capture)
        started = time.monotonic()
        restored = snapshot.restore()
        env = _Environment(
            restored.process,
            restored.ctrl_w,
            restored.result_r,
            restored.nonce,
            spec.function_name,
            lambda line, cap: self._log(spec, line, cap),
            capture,
            version,
            restored=True,
        )
        with self._lock:
            self._live[spec.function_name].add(env)
            self._counts[spec.function_name]["restores"] += 1
        try:
            ready = env.receive(started + RESTORE_TIMEOUT)
        except TimeoutError:
            self._discard(spec, env)
            raise SnapStartTimeoutException(
                "Lambda couldn't restore the snapshot within the timeout limit."
            ) from None
        if ready is None:
            return env, self._exit_outcome(env, capture.request_id), (started, time.monotonic())
        env.init_logged.wait(LOG_DRAIN_TIMEOUT)
        if ready.get("error"):
            self._discard(spec, env)
            raise SnapStartException(
                "The afterRestore() runtime hook encountered an error. For more information, check the "
                "Amazon CloudWatch logs."
            )
        env.restore_hooks_ms = float(ready.get("hooks_ms") or 0.0)
        ended = time.monotonic()
        self._log(spec, f"RESTORE_REPORT Restore Duration: {(ended - started) * 1000:.2f} ms", capture)
        return env, None, (started, ended)

    def _discard(self, spec: FunctionSpec, env: _Environment) -> None:
        with self._lock:
            self._live[spec.function_name].discard(env)
        env.dispose()

    def _exchange(
        self,
        spec: FunctionSpec,
        env: _Environment,
        message: dict[str, Any],
        deadline: float,
        capture: _Capture,
    ) -> _Outcome:
        request_id = message["request_id"]
        try:
            result = env.receive(deadline) if env.send(message) else None
        except TimeoutError:
            return self._timeout_outcome(spec, env, request_id, capture, spec.timeout)
        if result is None:
            return self._exit_outcome(env, request_id)
        env.max_memory_mb = int(result.get("max_memory_mb") or 0)
        capture.done.wait(LOG_DRAIN_TIMEOUT)
        if result["ok"]:
            payload = result["payload"].encode()
            if len(payload) <= MAX_RESPONSE_BYTES:
                return _Outcome(payload)
            error = {
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
            self._log(spec, f"[ERROR] {error['errorType']}: {error['errorMessage']}", capture)
            return _Outcome(json.dumps(error).encode(), error=error)
        return _Outcome(json.dumps(result["error"]).encode(), error=result["error"])

    def _timeout_outcome(
        self, spec: FunctionSpec, env: _Environment, request_id: str, capture: _Capture, seconds: float
    ) -> _Outcome:
        env.kill()
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self._log(spec, f"{stamp} {request_id} Task timed out after {seconds:.2f} seconds", capture)
        error = {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds",
        }
        return _Outcome(json.dumps(error).encode(), error=error, timed_out=True, reusable=False)

    def _exit_outcome(self, env: _Environment, request_id: str) -> _Outcome:
        reason = env.exit_reason()
        env.drain(LOG_DRAIN_TIMEOUT)
        error = {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {reason}",
        }
        return _Outcome(json.dumps(error).encode(), error=error, reusable=False)

    def _report_line(
        self,
        spec: FunctionSpec,
        request_id: str,
        seconds: float,
        env: _Environment,
        init_span: tuple[float, float] | None,
        outcome: _Outcome,
    ) -> str:
        ms = seconds * 1000
        parts = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {ms:.2f} ms",
            f"Billed Duration: {max(1, math.ceil(ms))} ms",
            f"Memory Size: {spec.memory_size} MB",
            f"Max Memory Used: {env.max_memory_mb} MB",
        ]
        if init_span is not None and env.restored:
            restore_ms = (init_span[1] - init_span[0]) * 1000
            parts.append(f"Restore Duration: {restore_ms:.2f} ms")
            parts.append(f"Billed Restore Duration: {math.ceil(env.restore_hooks_ms)} ms")
        elif init_span is not None:
            parts.append(f"Init Duration: {(init_span[1] - init_span[0]) * 1000:.2f} ms")
        if outcome.timed_out:
            parts.append("Status: timeout")
        elif outcome.error is not None and not outcome.reusable:
            parts.append(f"Status: error\tError Type: {outcome.error['errorType']}")
        return "\t".join(parts)

    # -- environment variables ------------------------------------------------------------------------------
    def _worker_environment(
        self, spec: FunctionSpec, version: str = "$LATEST", snap_start: bool = False
    ) -> dict[str, str]:
        env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": self._region,
                "AWS_DEFAULT_REGION": self._region,
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
                "_HANDLER": spec.handler,
                "TZ": ":UTC",
                "AWS_ACCESS_KEY_ID": LAMBDA_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": "local-lambda-secret-access-key",
                "AWS_SESSION_TOKEN": "local-lambda-session-token",
                "AWS_ENDPOINT_URL": self._endpoint_url,
                "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            }
        )
        # Compiled handler and layer code is cached outside the CodeUri and layer folders (nothing written
        # there, as -B did) but kept between environments: recompiling it cost every cold start ~25 ms.
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_PREFIX)
        if snap_start:  # one snapshot serves many environments: Lambda withholds the per-environment names
            env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
            del env["AWS_LAMBDA_LOG_GROUP_NAME"], env["AWS_LAMBDA_LOG_STREAM_NAME"]
        if self._xray_address:
            env["AWS_XRAY_DAEMON_ADDRESS"] = self._xray_address
        if spec.log_level:
            env["AWS_LAMBDA_LOG_LEVEL"] = spec.log_level.upper()
        env.update(spec.environment)  # the function's own Environment wins
        return env

    # -- logs and traces ------------------------------------------------------------------------------------
    def _log(self, spec: FunctionSpec, line: str, capture: _Capture | None) -> None:
        if capture is not None:
            capture.lines.append(line)
        try:
            self._log_sink(spec.function_name, line)
        except Exception:  # a broken sink must not fail the invocation
            log.exception("log sink failed for %s", spec.function_name)

    def _trace_for(self, spec: FunctionSpec, header: str | None) -> _Trace | None:
        parsed = _parse_trace_header(header) if header else None
        if parsed is None or not is_trace_id(parsed.root):
            if not spec.tracing:
                return None
            parsed = ensure_trace(None, self._clock.now())  # Active tracing starts a trace of its own
        return _Trace(parsed)

    def _emit_segments(
        self,
        spec: FunctionSpec,
        trace: _Trace | None,
        request_id: str,
        clock_start: float,
        mono_start: float,
        outcome: _Outcome | None,
        status: int,
    ) -> None:
        if trace is None or self._segments is None or trace.header.sampled is not True:
            return

        def at(mono: float) -> float:  # clock time of a monotonic instant of this invocation
            return clock_start + (mono - mono_start)

        root = cast(str, trace.header.root)
        end = at(time.monotonic())
        segments = [
            lambda_service_segment(
                trace_id=root,
                parent_id=trace.header.parent,
                function_name=spec.function_name,
                function_arn=spec.arn,
                request_id=request_id,
                start=clock_start,
                end=end,
                status=status,
                segment_id=trace.service_id,
            )
        ]
        if outcome is not None and outcome.invoke_span is not None:
            init, invocation = outcome.init_span, outcome.invoke_span
            error = outcome.error
            segments.append(
                lambda_function_segment(
                    trace_id=root,
                    parent_id=trace.service_id,
                    function_name=spec.function_name,
                    function_arn=spec.arn,
                    account_id=self._account_id,
                    start=at(init[0] if init else invocation[0]),
                    end=at(invocation[1]),
                    init=(at(init[0]), at(init[1])) if init else None,
                    invocation=(at(invocation[0]), at(invocation[1])),
                    error=(error["errorType"], error["errorMessage"]) if error else None,
                    segment_id=trace.function_id,
                )
            )
        for segment in segments:
            try:
                self._segments.emit(segment)
            except Exception:
                log.exception("segment sink failed")

    # -- asynchronous invocations ---------------------------------------------------------------------------
    def _start_async(
        self,
        spec: FunctionSpec,
        invoked_arn: str,
        event: str,
        request_id: str,
        trace_header: str | None,
        client_context: dict[str, Any] | None,
    ) -> None:
        thread = threading.Thread(
            target=self._run_async,
            args=(spec, invoked_arn, event, request_id, trace_header, client_context),
            name=f"lambda-event-{spec.function_name}",
            daemon=True,
        )
        with self._lock:
            self._async.add(thread)
        thread.start()

    def _run_async(
        self,
        spec: FunctionSpec,
        invoked_arn: str,
        event: str,
        request_id: str,
        trace_header: str | None,
        client_context: dict[str, Any] | None,
    ) -> None:
        """Lambda's async queue: throttles wait and retry (up to the event's max age), function errors are
        retried twice, then the event is dropped (no destinations or DLQ locally)."""
        received, backoff, retries = self._clock.now(), 1.0, 0
        try:
            while not self._closed.is_set():
                try:
                    result = self._invoke(
                        spec, invoked_arn, event, request_id, trace_header, client_context, 202
                    )
                except ThrottledException:
                    if self._clock.now() - received > MAX_EVENT_AGE:
                        log.warning(
                            "dropping event %s for %s: throttled too long", request_id, spec.function_name
                        )
                        return
                    if self._clock.sleep(backoff, auto=True, cancel=self._closed):
                        return
                    backoff = min(backoff * 2, 300.0)
                    continue
                except LambdaServiceError:  # shutting down
                    return
                if result.function_error is None or retries >= len(ASYNC_RETRY_DELAYS):
                    return
                if self._clock.sleep(ASYNC_RETRY_DELAYS[retries], auto=True, cancel=self._closed):
                    return
                retries += 1
        finally:
            with self._lock:
                self._async.discard(threading.current_thread())
