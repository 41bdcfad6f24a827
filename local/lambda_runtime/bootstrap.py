"""The code that runs INSIDE one Lambda execution environment (a worker process), like Lambda's /var/runtime.

Started as ``python bootstrap.py CTRL_FD RESULT_FD NONCE LAYER_PATHS_JSON``. Standard library only: the
worker's sys.path holds the function's code and layers, never the local runtime's own package.

Protocol: frames of 4-byte big-endian length + UTF-8 JSON. The parent writes ``invoke`` frames on CTRL_FD;
the worker answers one ``ready`` frame after the handler import, then one ``result`` frame per invocation on
RESULT_FD. stdout and stderr are the function's log; after each invocation the worker writes
``NONCE + request_id`` on its own line so the parent knows the invocation's log is complete. User prints
cannot forge a result (results never travel on stdout) and cannot guess the nonce.
"""

from __future__ import annotations

import contextlib
import decimal
import importlib
import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from typing import Any

HEADER = struct.Struct(">I")
_THIS_DIR = os.path.dirname(os.path.abspath(__file__))


# -- framing ------------------------------------------------------------------------------------------------
def write_frame(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> dict[str, Any] | None:
    """One frame, or None when the parent closed the pipe."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# -- what the handler sees ----------------------------------------------------------------------------------
class CognitoIdentity:
    def __init__(self, identity: dict[str, Any] | None) -> None:
        identity = identity or {}
        self.cognito_identity_id = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")


class Client:
    def __init__(self, client: dict[str, Any]) -> None:
        self.installation_id = client.get("installation_id")
        self.app_title = client.get("app_title")
        self.app_version_name = client.get("app_version_name")
        self.app_version_code = client.get("app_version_code")
        self.app_package_name = client.get("app_package_name")


class ClientContext:
    def __init__(self, context: dict[str, Any]) -> None:
        self.client = Client(context["client"]) if context.get("client") else None
        self.custom = context.get("custom")
        self.env = context.get("env")


class LambdaContext:
    """Same attributes and methods as the context object of Lambda's Python runtime."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        client_context: dict[str, Any] | None,
        identity: dict[str, Any] | None,
    ) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)
        sys.stdout.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name},"
            f"function_version={self.function_version},invoked_function_arn={self.invoked_function_arn}])"
        )


# -- errors as Lambda's Python runtime shapes them ----------------------------------------------------------
def make_error(
    message: str, error_type: str, stack: list[str] | None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack or [],
    }


def user_stack(tb: Any) -> list[str]:
    """The traceback without this bootstrap's own leading frames, formatted as Lambda formats it."""
    frames = traceback.extract_tb(tb)
    while frames and os.path.abspath(frames[0].filename) == os.path.abspath(__file__):
        frames = traceback.StackSummary.from_list(frames[1:])
    return traceback.format_list(frames)


def log_error(error: dict[str, Any]) -> None:
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(frame.rstrip("\n") for frame in error["stackTrace"])
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):  # Lambda's runtime serialises Decimal (DynamoDB numbers)
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- set-up -------------------------------------------------------------------------------------------------
def setup_sys_path(task_root: str, layer_paths: list[str]) -> None:
    """Like Lambda: /var/task first, then the layers (/opt/python...), then the interpreter's own paths."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _THIS_DIR]
    sys.path[0:0] = [task_root, *layer_paths]


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


_REQUEST_ID = _RequestIdFilter()


def setup_logging() -> None:
    """Lambda's runtime puts a handler on the root logger so ``logging.getLogger().info`` reaches the log."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_REQUEST_ID)
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(level.upper())


def load_handler(handler: str) -> tuple[Any, dict[str, Any] | None]:
    """(handler function, None) or (None, the init error Lambda would report)."""
    try:
        module_path, function_name = handler.rsplit(".", 1)
    except ValueError as e:
        return None, make_error(f"Bad handler '{handler}': {e}", "Runtime.MalformedHandlerName", None)
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        return None, make_error(
            f"Unable to import module '{module_name}': {e}", "Runtime.ImportModuleError", None
        )
    except SyntaxError as e:
        return None, make_error(
            f"Syntax error in module '{module_name}': {e}",
            "Runtime.UserCodeSyntaxError",
            [f'  File "{e.filename}" Line {e.lineno}\n    {(e.text or "").strip()}\n'],
        )
    except Exception as e:
        return None, make_error(str(e), type(e).__name__, user_stack(e.__traceback__))
    function = getattr(module, function_name, None)
    if function is None:
        return None, make_error(
            f"Handler '{function_name}' missing on module '{module_name}'", "Runtime.HandlerNotFound", None
        )
    return function, None


# -- one invocation -----------------------------------------------------------------------------------------
def _prepare_trace(trace_id: str | None) -> None:
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    if "aws_xray_sdk.core" in sys.modules:  # the SDK rebuilds its facade segment only when Root changes
        recorder = sys.modules["aws_xray_sdk.core"].xray_recorder
        recorder.context.clear_trace_entities()


def invoke(handler: Any, message: dict[str, Any]) -> dict[str, Any]:
    request_id = message["request_id"]
    _REQUEST_ID.request_id = request_id
    _prepare_trace(message.get("trace_id"))
    context = LambdaContext(
        request_id,
        message["deadline_ms"],
        message["invoked_function_arn"],
        message.get("client_context"),
        message.get("identity"),
    )
    try:
        result = handler(json.loads(message["event"]), context)
    except Exception as e:
        error = make_error(str(e), type(e).__name__, user_stack(e.__traceback__), request_id)
        log_error(error)
        return {"ok": False, "error": error}
    try:
        return {"ok": True, "payload": json.dumps(result, default=_json_default)}
    except Exception as e:
        error = make_error(f"Unable to marshal response: {e}", "Runtime.MarshalError", None, request_id)
        log_error(error)
        return {"ok": False, "error": error}


def _max_memory_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux reports KiB


INIT_MARKER = "init"  # after the nonce: never a request id (those are UUIDs)


def main(argv: list[str]) -> int:
    ctrl_fd, result_fd, nonce = int(argv[1]), int(argv[2]), argv[3]
    handler, init_error = init_phase(json.loads(argv[4]))
    if init_error is not None:
        log_error(init_error)
    end_of_output(nonce, INIT_MARKER)  # the init phase's output ends here (before START)
    write_frame(result_fd, {"type": "ready", "error": init_error})
    if init_error is not None:
        return 0
    return serve(handler, ctrl_fd, result_fd, nonce)


def init_phase(layer_paths: list[str]) -> tuple[Any, dict[str, Any] | None]:
    """Lambda's init phase: the function's code and layers on sys.path, its folder as cwd, logging set up,
    the handler's module imported: (handler, init error or None)."""
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)  # type: ignore[union-attr]
    setup_sys_path(task_root, layer_paths)
    os.chdir(task_root)
    setup_logging()
    return load_handler(os.environ["_HANDLER"])


def end_of_output(nonce: str, tag: str) -> None:
    """Everything written so far belongs to ``tag`` (the init phase or a request id): flush, then the marker
    line the pool's log reader splits on."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, f"{nonce}{tag}\n".encode())


def serve(handler: Any, ctrl_fd: int, result_fd: int, nonce: str) -> int:
    """The invocation loop, until the parent closes the control pipe."""
    while (message := read_frame(ctrl_fd)) is not None:
        outcome = invoke(handler, message)
        end_of_output(nonce, message["request_id"])
        outcome.update(type="result", max_memory_mb=_max_memory_mb())
        write_frame(result_fd, outcome)
    return 0


# -- SnapStart: the snapshot process ------------------------------------------------------------------------
# Started as ``python bootstrap.py --snapshot SOCK_FD NONCE LAYER_PATHS_JSON``. It runs the init phase and the
# before-snapshot hooks once, then waits on SOCK_FD (a SOCK_SEQPACKET Unix socket): each ``restore`` message
# carries three fds (control pipe, result pipe, log pipe) and is answered with the pid of a fork that owns
# them, restored from this process's initialised memory as Firecracker restores a snapshot. Exits of those
# forks (this process is their parent) are reported on the same socket.
_MAX_MESSAGE = 65536


def _send(sock: Any, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _run_hooks(which: str) -> tuple[dict[str, Any] | None, float]:
    """Run snapshot_restore_py's registered hooks, in order: (error or None, seconds). A handler that never
    imported the module registered none."""
    started = time.perf_counter()
    module = sys.modules.get("snapshot_restore_py")
    hooks = getattr(module, f"get_{which}")() if module is not None else []
    for func, args, kwargs in hooks:
        try:
            func(*args, **kwargs)
        except Exception as e:
            error = make_error(str(e), type(e).__name__, user_stack(e.__traceback__))
            return error, time.perf_counter() - started
    return None, time.perf_counter() - started


def _drop_connections(keep: set[int]) -> int:
    """Shut down every connected stream socket (TCP, or a Unix one other than ours): network connections do
    not survive a restore on Lambda. The fds stay open (dead, EOF on read, EPIPE on write), so a pooled
    keep-alive connection sees itself dropped and reconnects, and no fd number is freed for reuse under
    the code that still holds it."""
    import socket
    import stat

    dropped = 0
    families = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.family in families:
                sock.getpeername()  # OSError (ENOTCONN) for listening or unconnected sockets
                sock.shutdown(socket.SHUT_RDWR)
                dropped += 1
        except OSError:
            pass
        finally:
            sock.detach()
    return dropped


def _running_threads() -> list[str]:
    """Threads besides this one (Python's and native ones): a fork copies only the calling thread."""
    import threading

    named = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    native = len(os.listdir("/proc/self/task")) - 1
    return named or ([f"{native} native thread(s)"] if native > 0 else [])


def _restore_child(sock: Any, fds: list[int], nonce: str, handler: Any, wakeup: tuple[int, int]) -> None:
    """In the fork: take over the environment's pipes, run the after-restore hooks, then serve. Never
    returns."""
    import signal

    code = 1
    try:
        os.setpgid(0, 0)  # its own process group: the pool kills an environment with killpg
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for fd in wakeup:
            os.close(fd)
        ctrl_fd, result_fd, log_fd = fds
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        error, seconds = _run_hooks("after_restore")
        if error is not None:
            log_error(error)
        end_of_output(nonce, INIT_MARKER)
        write_frame(result_fd, {"type": "ready", "error": error, "hooks_ms": seconds * 1000})
        code = 0 if error is not None else serve(handler, ctrl_fd, result_fd, nonce)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def snapshot_main(argv: list[str]) -> int:
    import select
    import signal
    import socket

    sock = socket.socket(fileno=int(argv[1]))
    nonce = argv[2]
    handler, error = init_phase(json.loads(argv[3]))
    hooks_error = None
    if error is None:
        hooks_error, _ = _run_hooks("before_snapshot")
        error = hooks_error
    if error is not None:
        log_error(error)
    else:
        _drop_connections({sock.fileno()})
        threads = _running_threads()
        if threads:
            sys.stderr.write(
                "[WARNING] SnapStart: thread(s) running at snapshot time are not restored: "
                f"{', '.join(threads)}\n"
            )
    end_of_output(nonce, INIT_MARKER)
    _send(sock, {"type": "ready", "error": error, "phase": "hook" if hooks_error else "init"})
    if error is not None:
        return 0

    wakeup = os.pipe()
    for fd in wakeup:
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler (not SIG_IGN) so exits can be collected
    while True:
        readable, _, _ = select.select([sock.fileno(), wakeup[0]], [], [])
        if wakeup[0] in readable:
            with contextlib.suppress(OSError):
                while os.read(wakeup[0], 512):
                    pass
            _report_exits(sock)
        if sock.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 3)
            except ConnectionError:
                return 0
            if not data:  # the pool closed its end: the version is gone
                return 0
            message = json.loads(data)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _restore_child(sock, fds, message["nonce"], handler, wakeup)
            with contextlib.suppress(OSError):  # also in the parent: the pool may killpg it at once
                os.setpgid(pid, pid)
            for fd in fds:
                os.close(fd)
            _send(sock, {"type": "restored", "id": message["id"], "pid": pid})


def _report_exits(sock: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            _send(sock, {"type": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--snapshot"]:  # SnapStart: init once, then fork an environment per restore
        sys.exit(snapshot_main(sys.argv[1:]))
    sys.exit(main(sys.argv))
