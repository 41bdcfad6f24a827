"""`python -m local ...`: start the stack, invoke one function, lint a template, inspect executions.

Every failure a user can cause (port in use, bad template, missing handler, bad event file) ends in
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import faulthandler
import gc
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_AWS_PORT = 4566
DEFAULT_API_PORT = 3000
DEFAULT_XRAY_PORT = 2000
STOP_WATCHDOG_S = 10.0  # a stop slower than this dumps every thread's stack to stderr


class CliError(Exception):
    """One line for the user; exit code 2."""


def parse_overrides(values: list[str]) -> dict[str, str]:
    """Accepts `Key=Value` and SAM's `ParameterKey=Key,ParameterValue=Value`, space or repeat separated."""
    result: dict[str, str] = {}
    for raw in values:
        for item in raw.split():
            if item.startswith("ParameterKey="):
                parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
                if "ParameterValue" not in parts:
                    raise CliError(
                        f"bad parameter override {item!r}: expected ParameterKey=K,ParameterValue=V"
                    )
                result[parts["ParameterKey"]] = parts["ParameterValue"]
            elif "=" in item:
                key, value = item.split("=", 1)
                result[key] = value
            else:
                raise CliError(f"bad parameter override {item!r}: expected Key=Value")
    return result


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise CliError(f"{name} must be a port number, got {value!r}") from exc


def _add_template_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", "-t", type=Path, default=Path("template.yaml"))
    p.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--region", default=None)
    p.add_argument("--stack-name", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser(
        "start", help="serve the template: AWS endpoint, API, Lambdas, workflows, schedules"
    )
    _add_template_args(start)
    start.add_argument("--host", default=os.environ.get("LOCAL_HOST", "127.0.0.1"))
    start.add_argument(
        "--port", type=int, default=None, help="AWS endpoint port (env LOCAL_AWS_PORT, default 4566)"
    )
    start.add_argument(
        "--api-port", type=int, default=None, help="API Gateway port (env LOCAL_API_PORT, default 3000)"
    )
    start.add_argument("--xray-port", type=int, default=None, help="X-Ray daemon UDP port (default 2000)")
    start.add_argument(
        "--sidecar",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a helper process to run beside the stack (e.g. a simulator); stopped with it; repeatable",
    )
    start.add_argument(
        "--clock-scale",
        type=float,
        default=float(os.environ.get("LOCAL_CLOCK_SCALE", "1")),
        help="virtual seconds per real second (60: a Wait of one minute takes one second)",
    )

    invoke = sub.add_parser("invoke", help="invoke one function once (like `sam local invoke`)")
    invoke.add_argument("function", help="logical id or function name")
    invoke.add_argument("--event", "-e", type=Path, default=None, help="event JSON file ('-' for stdin)")
    invoke.add_argument(
        "--endpoint-url",
        default=None,
        help="invoke through a running `start` (default: a private stack is started for this call)",
    )
    _add_template_args(invoke)

    lint = sub.add_parser(
        "lint", help="check the template's state machines (ASL) and the translated template"
    )
    _add_template_args(lint)

    execs = sub.add_parser("executions", help="list executions of the running stack's state machines")
    execs.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    execs.add_argument("--state-machine", default=None, help="name or ARN (default: all)")
    execs.add_argument("--region", default=None)

    hist = sub.add_parser("history", help="print an execution's history events")
    hist.add_argument("execution_arn")
    hist.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    hist.add_argument("--region", default=None)

    traces = sub.add_parser("traces", help="search the running stack's X-Ray traces (GetTraceSummaries)")
    traces.add_argument("--filter", default=None, help="an X-Ray filter expression (local/README.md)")
    traces.add_argument("--minutes", type=float, default=None, help="only the last N minutes (default: all)")
    traces.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    traces.add_argument("--region", default=None)

    xmap = sub.add_parser("xray-map", help="write the running stack's X-Ray service map as .svg or .png")
    xmap.add_argument("--out", type=Path, required=True, help="map.svg (pure Python) or map.png (Chromium)")
    xmap.add_argument("--endpoint-url", default=f"http://127.0.0.1:{DEFAULT_AWS_PORT}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "start":
            return cmd_start(args)
        if args.command == "invoke":
            return cmd_invoke(args)
        if args.command == "lint":
            return cmd_lint(args)
        if args.command == "executions":
            return cmd_executions(args)
        if args.command == "traces":
            return cmd_traces(args)
        if args.command == "xray-map":
            return cmd_xray_map(args)
        return cmd_history(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _user_error(exc: BaseException) -> CliError | None:
    """Map the runtime's own clear errors (and OS-level ones) to a one-line CLI error."""
    from local.aws_endpoint import PortInUseError as EndpointPortInUseError
    from local.errors import LocalRuntimeError

    # aws_endpoint's PortInUseError is its own RuntimeError, not a LocalRuntimeError.
    if isinstance(exc, LocalRuntimeError | EndpointPortInUseError):
        return CliError(str(exc))
    if isinstance(exc, FileNotFoundError):
        return CliError(f"file not found: {exc.filename}")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        # e.g. the X-Ray daemon's UDP port, which raises the bare OSError.
        return CliError(f"a port the stack needs is in use ({exc.strerror}): choose others with the flags")
    return None


def _runtime_config(args: argparse.Namespace, *, ports: tuple[int, int, int]) -> Any:
    from local.runtime import RuntimeConfig

    return RuntimeConfig(
        template=args.template,
        parameter_overrides=parse_overrides(args.parameter_overrides),
        region=args.region,
        stack_name=args.stack_name,
        host=getattr(args, "host", "127.0.0.1"),
        aws_port=ports[0],
        api_port=ports[1],
        xray_port=ports[2],
    )


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies, however it dies (SIGKILL, a
    crash, a test runner killed mid-test): a sidecar never outlives the stack. Linux only; elsewhere None."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must do as little as possible
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _start_sidecars(commands: list[str]) -> list[subprocess.Popen[bytes]]:
    """Each sidecar runs in a process group of its own (stopped as a group, so the children a sidecar
    starts go too) and dies with this process."""
    procs: list[subprocess.Popen[bytes]] = []
    preexec = _die_with_parent()
    for command in commands:
        try:
            argv = shlex.split(command)
            if not argv:
                raise CliError("empty --sidecar command")
            procs.append(subprocess.Popen(argv, process_group=0, preexec_fn=preexec))
        except ValueError as exc:  # shlex: unbalanced quotes
            _stop_sidecars(procs)
            raise CliError(f"cannot parse sidecar {command!r}: {exc}") from exc
        except OSError as exc:
            _stop_sidecars(procs)
            raise CliError(f"cannot start sidecar {command!r}: {exc.strerror}") from exc
        except CliError:
            _stop_sidecars(procs)
            raise
    time.sleep(0.5 if procs else 0)
    for command, proc in zip(commands, procs, strict=True):
        if proc.poll() is not None:
            _stop_sidecars(procs)
            raise CliError(f"sidecar {command!r} exited at start with status {proc.returncode}")
    return procs


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """``sig`` to the sidecar's process group (its own children too), even if the sidecar itself has
    already exited; nothing if the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop_sidecars(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every sidecar's group, up to 5 s for them to exit, then SIGKILL to what is left. Runs to
    the end even if a second Ctrl-C arrives meanwhile (it would otherwise leave sidecars behind)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # the sidecar's leftover children, or a sidecar that hung
            proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


GC_GEN0_THRESHOLD = 20_000  # CPython's default is 2,000 allocations


def settle_garbage_collector() -> None:
    """A started stack holds what start-up built (moto's backends and service models, botocore's, parsed
    definitions): long-lived objects every full collection walked again. Freeze them (never collected, still
    freed by reference counting) and collect the young generation every 20,000 allocations instead of
    2,000. Later long-lived objects (log events, items, executions) still age as usual. Measured on
    `make run`, 200 payments: the collector's time 711 -> ~540 ms, its longest pause (the endpoint stops for
    it) 450 -> ~210 ms."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def cmd_start(args: argparse.Namespace) -> int:
    from local.clock import RealClock
    from local.runtime import LocalRuntime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    ports = (
        args.port if args.port is not None else _env_int("LOCAL_AWS_PORT", DEFAULT_AWS_PORT),
        args.api_port if args.api_port is not None else _env_int("LOCAL_API_PORT", DEFAULT_API_PORT),
        args.xray_port if args.xray_port is not None else _env_int("LOCAL_XRAY_PORT", DEFAULT_XRAY_PORT),
    )
    if args.clock_scale <= 0:
        raise CliError("--clock-scale must be > 0")
    _check_ports_free(args.host, ports)
    runtime = LocalRuntime(_runtime_config(args, ports=ports), clock=RealClock(scale=args.clock_scale))
    stop = _stop_on_signals()
    # `kill -USR1 <pid>`: every thread's stack to stderr, from C, so even a wedged process answers.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sidecars = _start_sidecars(args.sidecar)
    try:
        runtime.start()
    except BaseException as exc:  # SystemExit/KeyboardInterrupt too: never leave sidecars behind
        _stop_sidecars(sidecars)
        if isinstance(exc, SystemExit):
            # werkzeug's make_server prints its reason and calls sys.exit(1) when it cannot bind.
            raise CliError(f"the AWS endpoint cannot listen on {args.host}:{ports[0]} (see above)") from exc
        err = _user_error(exc) if isinstance(exc, Exception) else None
        if err is None:
            raise
        raise err from exc
    settle_garbage_collector()
    try:
        if not stop.is_set():  # a signal during start-up: stop without announcing
            print(describe(runtime), flush=True)
        stop.wait()
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        pass
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        # A stop that hangs says where: every thread's stack goes to stderr after STOP_WATCHDOG_S.
        faulthandler.dump_traceback_later(STOP_WATCHDOG_S, exit=False)
        try:
            runtime.stop()
        finally:
            _stop_sidecars(sidecars)
            faulthandler.cancel_dump_traceback_later()
    return _exit_now(0)


def _exit_now(code: int) -> int:
    """End `python -m local start` as soon as everything is stopped, skipping the interpreter's teardown: it
    garbage-collects the whole emulated account (moto's backends, botocore's models, every execution) and
    took 4-9 s after a busy run on a loaded machine. Nothing is left for it to do: workers and sidecars are
    gone and the streams are flushed here. Called in-process (not as `python -m local`), it returns."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is None or spec.name != "local.__main__":
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that has gone away
            stream.flush()
    os._exit(code)


def _check_ports_free(host: str, ports: tuple[int, int, int]) -> None:
    """Fail before the slow template load, in one line, if a fixed port is taken. (The AWS endpoint cannot
    report this itself: werkzeug's make_server prints to stderr and calls sys.exit(1).)"""
    checks = (
        ("AWS endpoint", ports[0], socket.SOCK_STREAM, "--port"),
        ("API Gateway", ports[1], socket.SOCK_STREAM, "--api-port"),
        ("X-Ray daemon", ports[2], socket.SOCK_DGRAM, "--xray-port"),
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for what, port, kind, flag in checks:
        if port == 0:
            continue
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:
                # As the HTTP servers do, so a port left in TIME_WAIT is not reported as taken.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise CliError(
                    f"{what} cannot listen on {host}:{port}: {reason} (choose another with {flag})"
                ) from exc


class _StopRequest:
    """Set by the signal handler, waited on by the main thread; lock-free on purpose. A Python handler runs
    on the main thread between any two bytecodes, possibly inside a ``threading.Event``'s own lock (setting
    the event there deadlocks); and a main thread blocked in a lock acquire without timeout only wakes for a
    signal the kernel hands to it, not to one of the stack's hundred other threads, which it may. So the
    main thread polls: a pending handler runs within ``POLL_S`` whoever took the signal."""

    POLL_S = 0.1

    def __init__(self) -> None:
        self.signals: list[int] = []  # list.append is atomic: safe from a handler

    def set(self, signum: int) -> None:
        self.signals.append(signum)

    def is_set(self) -> bool:
        return bool(self.signals)

    def wait(self) -> None:
        while not self.signals:
            time.sleep(self.POLL_S)


def _stop_on_signals() -> _StopRequest:
    """SIGINT and SIGTERM both ask for a clean stop. SIGINT is handled explicitly because a shell starts
    background jobs (`make run &`, CI scripts) with SIGINT ignored, which would make Ctrl-C/kill -INT a no-op.
    A second SIGINT while stopping falls back to KeyboardInterrupt."""
    stop = _StopRequest()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def describe(runtime: Any) -> str:
    """The start-up banner: where everything is, and the names a user needs."""
    model = runtime.model
    lines = [
        f"stack {model.stack_name} ({model.region}) from {model.template_path}",
        f"  AWS endpoint   {runtime.endpoint_url}   (boto3/aws: --endpoint-url {runtime.endpoint_url},"
        " AWS_DISABLE_HOST_PREFIX_INJECTION=true)",
        f"  API Gateway    {runtime.api_url}",
    ]
    for api in model.apis.values():
        for route in api.routes:
            key = "  (x-api-key)" if route.api_key_required else ""
            lines.append(f"    {route.method:6} {route.path}  -> {route.function_name}{key}")
        for key_spec in api.api_keys:
            lines.append(f"    API key {key_spec.name}: {key_spec.value}")
    lines.append(f"  functions      {', '.join(sorted(model.functions)) or '-'}")
    for sm in model.state_machines.values():
        lines.append(f"  state machine  {sm.name} ({sm.type})  {sm.arn}")
    for sched in model.schedules.values():
        lines.append(f"  schedule       {sched.name}: {sched.expression} -> {sched.target_arn}")
    lines.append("Ctrl-C stops.")
    return "\n".join(lines)


def _read_event(path: Path | None) -> bytes:
    if path is None:
        return b"{}"
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read event file {path}: {exc.strerror}") from exc
    try:
        json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise CliError(f"event file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    return raw or b"{}"


def cmd_invoke(args: argparse.Namespace) -> int:
    payload = _read_event(args.event)
    if args.endpoint_url:
        client = _aws_client("lambda", args.endpoint_url, args.region)
        with _talking_to(args.endpoint_url):
            try:
                resp = client.invoke(FunctionName=args.function, Payload=payload, LogType="Tail")
            except client.exceptions.ResourceNotFoundException as exc:
                raise CliError(
                    f"function {args.function!r} not found at {args.endpoint_url}"
                    " (use the deployed name, e.g. <stack>-<LogicalId>)"
                ) from exc
        body = resp["Payload"].read().decode()
        print(body)
        return 1 if resp.get("FunctionError") else 0

    from local.clock import RealClock
    from local.runtime import LocalRuntime

    runtime = LocalRuntime(_runtime_config(args, ports=(0, 0, 0)), clock=RealClock())
    try:
        runtime.start()
    except Exception as exc:
        err = _user_error(exc)
        if err is None:
            raise
        raise err from exc
    try:
        model = runtime.model
        spec = model.function_by_arn_or_name(args.function) or next(
            (f for f in model.functions.values() if f.logical_id == args.function), None
        )
        if spec is None:
            names = ", ".join(sorted(f.logical_id for f in model.functions.values()))
            raise CliError(f"no function {args.function!r} in {args.template} (functions: {names})")
        result = runtime.pool.invoke(spec.function_name, payload)
        print(result.payload.decode())
        return 1 if result.function_error else 0
    finally:
        runtime.stop()


def cmd_lint(args: argparse.Namespace) -> int:
    from local.asl_lint import lint_stack
    from local.template_loader import load_stack

    try:
        model = load_stack(
            args.template,
            parameter_overrides=parse_overrides(args.parameter_overrides),
            region=args.region or "us-east-1",
            stack_name=args.stack_name,
        )
    except Exception as exc:
        err = _user_error(exc)
        if err is None:
            raise
        raise err from exc
    problems = lint_stack(model)
    for problem in problems:
        print(problem)
    print(
        f"{args.template}: {len(model.state_machines)} state machine(s), {len(problems)} problem(s)",
        file=sys.stderr,
    )
    return 1 if problems else 0


def _aws_client(service: str, endpoint_url: str, region: str | None) -> Any:
    """A client for the local endpoint. Works with no AWS configuration at all (moto accepts any key), and
    fails fast when nothing listens instead of retrying a refused connection for several seconds."""
    import boto3
    from botocore.config import Config

    session = boto3.Session(region_name=region)
    fake = None if session.get_credentials() is not None else "local"
    client: Any = session.client(  # type: ignore[call-overload]  # service is a runtime string
        service,
        endpoint_url=endpoint_url,
        region_name=region or session.region_name or "us-east-1",
        aws_access_key_id=fake,
        aws_secret_access_key=fake,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=310),
    )
    return client


@contextmanager
def _talking_to(endpoint_url: str) -> Iterator[None]:
    """AWS call failures the user can cause (nothing listening, a wrong URL, a bad ARN) as one line."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        yield
    except EndpointConnectionError as exc:
        raise CliError(f"cannot reach {endpoint_url}: is `python -m local start` running? ({exc})") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CliError(f"{endpoint_url}: {error.get('Code')}: {error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise CliError(f"{endpoint_url}: {exc}") from exc


def _sfn(endpoint_url: str, region: str | None) -> Any:
    return _aws_client("stepfunctions", endpoint_url, region)


def cmd_executions(args: argparse.Namespace) -> int:
    sfn = _sfn(args.endpoint_url, args.region)
    wanted = args.state_machine
    with _talking_to(args.endpoint_url):
        machines = sfn.list_state_machines()["stateMachines"]
        for machine in machines:
            if wanted and wanted not in (machine["name"], machine["stateMachineArn"]):
                continue
            for ex in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
                stop = ex.get("stopDate")
                print(
                    f"{ex['status']:10} {machine['name']:30} {ex['startDate']} {stop or '-'}"
                    f" {ex['executionArn']}"
                )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    sfn = _sfn(args.endpoint_url, args.region)
    with _talking_to(args.endpoint_url):
        try:
            events = sfn.get_execution_history(executionArn=args.execution_arn)["events"]
        except (sfn.exceptions.ExecutionDoesNotExist, sfn.exceptions.InvalidArn) as exc:
            raise CliError(f"no execution {args.execution_arn}: {exc.response['Error']['Message']}") from exc
    for ev in events:
        details = {k: v for k, v in ev.items() if k.endswith("EventDetails")}
        detail = json.dumps(next(iter(details.values()), {}), default=str)
        print(f"{ev['id']:>4} {ev['timestamp']} {ev['type']:32} {detail}")
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    from local.xray_cli import search, summary_line

    xray = _aws_client("xray", args.endpoint_url, args.region)
    now = time.time()
    # Locally traces may carry virtual-clock times far from now: without --minutes, search everything.
    start = now - args.minutes * 60 if args.minutes is not None else 0.0
    end = now + 3600 if args.minutes is not None else now + 10 * 365 * 86400
    with _talking_to(args.endpoint_url):
        found = search(xray, args.filter, start, end)
    for summary in found:
        print(summary_line(summary))
    print(f"{len(found)} trace(s)", file=sys.stderr)
    return 0


def cmd_xray_map(args: argparse.Namespace) -> int:
    import requests

    from local.xray_cli import chromium_path, fetch_svg, screenshot_map

    out: Path = args.out
    suffix = out.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise CliError(f"--out must end in .svg or .png, got {out.name!r}")
    try:
        if suffix == ".svg":
            out.write_text(fetch_svg(args.endpoint_url), encoding="utf-8")
        else:
            chromium = chromium_path()
            if chromium is None:
                raise CliError("a PNG needs Chromium (/usr/bin/chromium, tools/ensure-chromium); or use .svg")
            screenshot_map(args.endpoint_url, out, chromium)
    except requests.RequestException as exc:
        where = args.endpoint_url
        raise CliError(f"cannot reach {where}: is `python -m local start` running? ({exc})") from exc
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror}") from exc
    except Exception as exc:  # Playwright's errors: a page that did not load, a browser that did not start
        if type(exc).__module__.startswith("playwright"):
            raise CliError(f"could not render the map with Chromium: {str(exc).splitlines()[0]}") from exc
        raise
    print(f"wrote {out}", file=sys.stderr)
    return 0
