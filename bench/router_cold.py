"""`python -m bench.router_cold [--count N] [--warm N]`: the router's cold start, one fresh environment at
a time on an idle stack.

`python -m bench payments` reads Init Duration from the REPORT lines of environments the pool started
while four clients were paying at once: on a small machine those imports share the CPU with the whole
stack, so the figure is mostly contention. Here, once a `make run`-like stack is up and warm, the router's
own worker is copied (its command line and environment, read from /proc) and started again N times, one
after the other, each given one `POST /payments` (4242 card) and then a few warm ones: fresh process ->
ready (what Lambda reports as Init Duration), ready -> first answer, and the warm invocations.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Figures, figures, table
from tests.app.stack import APPROVED, MERCHANT_A_KEY, PaymentsApi, StackProcess, payment_body

_SUFFIX = "RouterFunction"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):  # the process or one of its threads may end meanwhile
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _router_worker(stack_pid: int) -> tuple[list[str], dict[str, str], str]:
    """(argv without the per-process fds/nonce, environment, cwd) of a running router environment."""
    stack = [stack_pid]
    while stack:
        pid = stack.pop()
        stack += _children(pid)
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        if env.get("AWS_LAMBDA_FUNCTION_NAME", "").endswith(_SUFFIX):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            return argv, env, os.readlink(f"/proc/{pid}/cwd")
    raise RuntimeError("no router environment found under the stack process")


def _event(idempotency_key: str) -> dict[str, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-Api-Key": MERCHANT_A_KEY,
        "Idempotency-Key": idempotency_key,
    }
    return {
        "resource": "/payments",
        "path": "/payments",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "resourcePath": "/payments",
            "httpMethod": "POST",
            "path": "/dev/payments",
            "stage": "dev",
            "requestId": str(uuid.uuid4()),
            "identity": {"apiKey": MERCHANT_A_KEY, "sourceIp": "127.0.0.1"},
        },
        "body": json.dumps(payment_body(APPROVED)),
        "isBase64Encoded": False,
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far (all its threads; ns resolution): unlike wall time, it does
    not grow when other processes share the machine."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class _Worker:
    """One environment started from the router's command line, spoken to with the bootstrap's frames."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log: Path) -> None:
        from local.lambda_runtime.bootstrap import read_frame, write_frame

        self._read, self._write = read_frame, write_frame
        ctrl_r, self._ctrl_w = os.pipe()
        self._result_r, result_w = os.pipe()
        head, layers = argv[:-4], argv[-1]  # [python, -B, bootstrap.py] ... CTRL RESULT NONCE LAYERS
        env = dict(env, AWS_LAMBDA_LOG_STREAM_NAME=f"bench/{uuid.uuid4().hex}")
        self.started = time.perf_counter()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*head, str(ctrl_r), str(result_w), uuid.uuid4().hex, layers],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(ctrl_r, result_w),
            )
        os.close(ctrl_r)
        os.close(result_w)

    def ready(self) -> tuple[float, float]:
        """(wall, CPU) seconds from the fresh process to the handler imported."""
        frame = self._read(self._result_r)
        if frame is None or frame.get("error"):
            raise RuntimeError(f"router init failed: {frame}")
        return time.perf_counter() - self.started, _cpu_seconds(self.proc.pid)

    def invoke(self) -> tuple[float, float]:
        """(wall, CPU of this worker) seconds of one sync POST /payments."""
        cpu = _cpu_seconds(self.proc.pid)
        root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
        trace = f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=1"
        message = {
            "type": "invoke",
            "request_id": str(uuid.uuid4()),
            "event": json.dumps(_event(f"cold-{uuid.uuid4().hex}")),
            "deadline_ms": int(time.time() * 1000) + 30_000,
            "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:bench-router",
            "trace_id": trace,
            "client_context": None,
        }
        started = time.perf_counter()
        self._write(self._ctrl_w, message)
        result = self._read(self._result_r)
        elapsed = time.perf_counter() - started
        answer = json.loads(result["payload"]) if result and result.get("ok") else None
        body = json.loads(answer["body"]) if answer and answer.get("statusCode") == 200 else {}
        if body.get("status") != "succeeded":
            raise RuntimeError(f"router answer: {result}")
        return elapsed, _cpu_seconds(self.proc.pid) - cpu

    def close(self) -> None:
        os.close(self._ctrl_w)  # the bootstrap's loop ends when its control pipe closes
        self.proc.wait(10)
        os.close(self._result_r)


@dataclass
class ColdSamples:
    """(wall, CPU) seconds per fresh environment (init, first answer) and per warm invocation."""

    inits: list[tuple[float, float]] = field(default_factory=list)
    firsts: list[tuple[float, float]] = field(default_factory=list)
    warms: list[tuple[float, float]] = field(default_factory=list)

    @property
    def totals(self) -> list[tuple[float, float]]:
        return [(i[0] + f[0], i[1] + f[1]) for i, f in zip(self.inits, self.firsts, strict=True)]

    def median_total_ms(self, index: int) -> float:
        return statistics.median(t[index] for t in self.totals) * 1000

    def rows(self, prefix: str) -> list[Figures]:
        rows = []
        for label, samples in (
            ("init (fresh process -> handler imported)", self.inits),
            ("first invocation (sync POST /payments)", self.firsts),
            ("cold total (fresh process -> first answer)", self.totals),
            ("warm invocation (sync POST /payments)", self.warms),
        ):
            for kind, index in (("wall", 0), ("CPU", 1)):
                values = [sample[index] for sample in samples]
                rows.append(figures(f"{prefix}{label}, {kind}", values, sum(values)))
        return rows


class RouterTemplate:
    """The running stack's router environment (command line, variables, code directory), to start copies
    of; optionally with the function and layer code taken from another checkout (``code_root``)."""

    def __init__(self, stack: StackProcess, log: Path) -> None:
        assert stack._proc is not None
        self.argv, self.env, self.cwd = _router_worker(stack._proc.pid)
        self.log = log

    def worker(self, code_root: Path | None = None) -> _Worker:
        argv, env, cwd = list(self.argv), dict(self.env), self.cwd
        if code_root is not None:
            cwd = str(code_root / "functions" / "router")
            argv[-1] = json.dumps([str(code_root / "layers" / "payeasy")])
            env["LAMBDA_TASK_ROOT"] = cwd
        return _Worker(argv, env, cwd, self.log)


def sample(template: RouterTemplate, samples: ColdSamples, warm: int, code_root: Path | None = None) -> None:
    """One fresh environment: init, first answer, then ``warm`` more answers; added to ``samples``."""
    worker = template.worker(code_root)
    try:
        samples.inits.append(worker.ready())
        samples.firsts.append(worker.invoke())
        samples.warms += [worker.invoke() for _ in range(warm)]
    finally:
        worker.close()


def bench_router_cold(count: int, warm: int = 20, baseline: Path | None = None) -> None:
    """``baseline``: another checkout (e.g. ``git worktree add /tmp/base HEAD``) whose functions/router and
    layers/payeasy are measured too, alternating with this tree's in the same stack (paired A/B)."""
    stack = StackProcess(acquirer_latency_ms=0).start()
    ours, theirs = ColdSamples(), ColdSamples()
    try:
        stack.wait_for_acquirer()
        api = PaymentsApi(stack.api_url, MERCHANT_A_KEY)
        for _ in range(5):  # everything downstream of the router warm
            assert api.create(payment_body(APPROVED), f"warm-{uuid.uuid4().hex}").status_code == 200
        api.close()
        template = RouterTemplate(stack, Path(os.environ.get("ROUTER_COLD_LOG", "/tmp/router-cold.log")))
        for _ in range(count):
            if baseline is not None:
                sample(template, theirs, warm, baseline)
            sample(template, ours, warm)
    finally:
        stack.stop()
    rows = ours.rows("router ")
    extra = {
        "environments": f"{count}, one at a time on an idle stack, {warm} warm invocations each",
        "median cold total": (
            f"{ours.median_total_ms(0):.0f} ms wall, {ours.median_total_ms(1):.0f} ms CPU (target <= 300 ms)"
        ),
    }
    if baseline is not None:
        rows += theirs.rows("baseline ")
        extra["baseline"] = str(baseline)
        extra["baseline median cold total"] = (
            f"{theirs.median_total_ms(0):.0f} ms wall, {theirs.median_total_ms(1):.0f} ms CPU"
        )
    print(table(rows, extra))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.router_cold")
    parser.add_argument("--count", type=int, default=10, help="fresh environments, one after the other")
    parser.add_argument("--warm", type=int, default=20, help="warm invocations in each")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (paired)")
    args = parser.parse_args()
    bench_router_cold(args.count, args.warm, args.baseline)


if __name__ == "__main__":
    main()
