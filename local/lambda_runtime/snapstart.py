"""Lambda SnapStart for Python, emulated with fork: one snapshot process per published version, a fork of it
per new execution environment.

The snapshot process (``bootstrap.py --snapshot``) runs the function's init and the before-snapshot hooks
once, shuts down the network connections it holds and waits. A restore sends it three fresh pipe ends (the
environment's control, result and log pipes) over a Unix socket (``socket.send_fds``); it forks, the child
puts itself in its own process group, takes the pipes over (dup2 onto stdout/stderr for the log), runs the
after-restore hooks and then serves invocations with the ordinary worker protocol. The snapshot process is
the children's parent and reports their exit codes on the same socket, so a restored environment's
``RestoredProcess`` answers ``poll``/``wait`` like a ``subprocess.Popen``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from local.ports import LambdaServiceError

RESTORE_TIMEOUT = 10.0  # Lambda's limit for the Restore phase (after-restore hooks included)
_MAX_MESSAGE = 65536


class SnapStartException(LambdaServiceError):
    status_code = 400
    error_type = "SnapStartException"


class SnapStartNotReadyException(LambdaServiceError):
    status_code = 409
    error_type = "SnapStartNotReadyException"


class SnapStartTimeoutException(LambdaServiceError):
    status_code = 408
    error_type = "SnapStartTimeoutException"


class FunctionStateException(LambdaServiceError):
    """Invoking a version whose creation failed (its snapshot's init failed): it stays in state Failed."""

    status_code = 409
    error_type = "ResourceConflictException"


@dataclass
class SnapshotFailure:
    error: dict[str, Any]  # as the runtime shapes an init error (errorType, errorMessage, stackTrace)
    phase: str  # "init" or "hook" (a before-snapshot hook)


class RestoredProcess:
    """The Popen-like handle of a forked environment (this process is not its parent)."""

    def __init__(self, pid: int, stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int | None) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"restored environment {self.pid}", timeout or 0.0)
        # None: the snapshot process died first, the exit code is lost; reported as a kill.
        return -signal.SIGKILL if self.returncode is None else self.returncode


@dataclass
class Restored:
    """What a restore hands the caller: the process and its ends of the three pipes."""

    process: RestoredProcess
    ctrl_w: int
    result_r: int
    nonce: str


class SnapshotProcess:
    """One version's snapshot: start it (init + before-snapshot hooks), then ``restore()`` as often as needed.

    ``on_log(line)`` receives the snapshot process's own output (init logs, hook logs, warnings)."""

    def __init__(
        self,
        argv_head: list[str],
        env: dict[str, str],
        cwd: Path | str,
        layers_json: str,
        on_log: Callable[[str], None],
    ) -> None:
        self._argv_head = argv_head
        self._env = env
        self._cwd = cwd
        self._layers = layers_json
        self._on_log = on_log
        self._nonce = uuid.uuid4().hex
        self._lock = threading.Lock()  # one restore request on the socket at a time
        self._pending: dict[str, tuple[threading.Event, list[int]]] = {}
        self._children: dict[int, RestoredProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._ready = threading.Event()
        self._init_logged = threading.Event()
        self._closed = False
        self.failure: SnapshotFailure | None = None
        self.init_span: tuple[float, float] | None = None  # monotonic, also when init failed
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    # -- taking the snapshot --------------------------------------------------------------------------------
    def start(self, init_timeout: float = 10.0) -> None:
        """Start the snapshot process and wait for its init (blocking: call from a background thread)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.settimeout(init_timeout)
        started = time.monotonic()
        try:
            with self._lock:
                if self._closed:
                    raise LambdaServiceError("The local Lambda service is shutting down.")
                self.proc = subprocess.Popen(
                    [*self._argv_head, "--snapshot", str(theirs.fileno()), self._nonce, self._layers],
                    env=self._env,
                    cwd=self._cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
                self._sock = ours
        except BaseException as e:
            ours.close()
            self._fail({"errorType": "Runtime.Unknown", "errorMessage": str(e), "stackTrace": []}, "init")
            raise
        finally:
            theirs.close()
        threading.Thread(target=self._read_log, name=f"snapstart-log-{self.proc.pid}", daemon=True).start()
        ready = self._receive()
        ours.settimeout(None)
        self.init_span = (started, time.monotonic())
        if ready is None or ready.get("type") != "ready":
            if self.proc.poll() is None:  # init ran past its limit
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                message = f"Init timed out after {init_timeout:.2f} seconds"
                error = {"errorType": "Runtime.InitTimeout", "errorMessage": message}
            else:
                message = f"Runtime exited with error: exit status {self.proc.wait()}"
                error = {"errorType": "Runtime.ExitError", "errorMessage": message}
            self.proc.wait()
            self._fail(error, "init")
        elif ready.get("error"):
            self._init_logged.wait(2.0)
            self._fail(ready["error"], ready.get("phase", "init"))
        else:
            self._init_logged.wait(2.0)
            threading.Thread(target=self._read_socket, name=f"snapstart-{self.proc.pid}", daemon=True).start()
        self._ready.set()

    def _fail(self, error: dict[str, Any], phase: str) -> None:
        self.failure = SnapshotFailure(dict(error, stackTrace=error.get("stackTrace") or []), phase)
        self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- restoring ------------------------------------------------------------------------------------------
    def restore(self) -> Restored:
        """Fork a new environment from the snapshot. Raises LambdaServiceError if the snapshot is unusable."""
        if not self._ready.is_set() or self.failure is not None or self._sock is None or self.proc is None:
            raise LambdaServiceError("The snapshot of this version is not available.")
        ctrl_r, ctrl_w = os.pipe()
        result_r, result_w = os.pipe()
        log_r, log_w = os.pipe()
        request_id = uuid.uuid4().hex
        nonce = uuid.uuid4().hex
        done = threading.Event()
        slot: list[int] = []
        try:
            with self._lock:
                self._pending[request_id] = (done, slot)
                message = json.dumps({"type": "restore", "id": request_id, "nonce": nonce}).encode()
                socket.send_fds(self._sock, [message], [ctrl_r, result_w, log_w])
        except OSError as e:
            for fd in (ctrl_w, result_r, log_r):
                os.close(fd)
            raise LambdaServiceError(f"The snapshot process is gone: {e}") from e
        finally:
            for fd in (ctrl_r, result_w, log_w):  # the fork has its own copies now
                os.close(fd)
        if not done.wait(RESTORE_TIMEOUT) or not slot:
            for fd in (ctrl_w, result_r, log_r):
                os.close(fd)
            raise LambdaServiceError("The snapshot process did not fork an environment.")
        pid = slot[0]
        process = RestoredProcess(pid, os.fdopen(log_r, "rb"))
        with self._lock:
            self._children[pid] = process
            code = self._early_exits.pop(pid, None)
        if code is not None:
            process._set_exit(code)
        return Restored(process, ctrl_w, result_r, nonce)

    # -- the socket and the log -----------------------------------------------------------------------------
    def _receive(self) -> dict[str, Any] | None:
        assert self._sock is not None
        try:
            data = self._sock.recv(_MAX_MESSAGE)
        except OSError:
            return None
        return cast(dict[str, Any], json.loads(data)) if data else None

    def _read_socket(self) -> None:
        while (message := self._receive()) is not None:
            if message["type"] == "restored":
                with self._lock:
                    done, slot = self._pending.pop(message["id"], (None, []))
                slot.append(message["pid"])
                if done is not None:
                    done.set()
            elif message["type"] == "exit":
                with self._lock:
                    child = self._children.pop(message["pid"], None)
                    if child is None:  # exited before restore() registered it
                        self._early_exits[message["pid"]] = message["code"]
                if child is not None:
                    child._set_exit(message["code"])
        # The snapshot process is gone: its forks' exit codes with it. Kill them so none is left orphaned.
        with self._lock:
            children, self._children = self._children, {}
            pending, self._pending = self._pending, {}
        for child in children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child._set_exit(None)
        for done, _ in pending.values():
            done.set()

    def _read_log(self) -> None:
        assert self.proc is not None
        stream = cast(IO[bytes], self.proc.stdout)
        marker = f"{self._nonce}init"
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            at = line.find(marker)
            if at < 0:
                self._on_log(line)
                continue
            if at:
                self._on_log(line[:at])
            self._init_logged.set()
        stream.close()
        self._init_logged.set()

    # -- end of life ----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def close(self) -> None:
        """Kill the snapshot process (its restored environments are the pool's to kill)."""
        with self._lock:
            self._closed = True
            proc, sock = self.proc, self._sock
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if sock is not None:
            sock.close()
        self._ready.set()
