"""`python -m bench.router_cold [--count N] [--warm N]`: the router's cold start, one new environment at
a time on an idle stack, on-demand and with SnapStart, side by side.

`python -m bench payments` reads Init/Restore Duration from the REPORT lines of environments the pool
started while four clients were paying at once: on a small machine those share the CPU with the whole
stack, so the figure is mostly contention. Here, once a `make run`-like stack is up and warm, the router's
environment is copied (command line and environment of its process, read from /proc) and N new
environments are made one after the other, each given one `POST /payments` (4242 card) and then a few warm
ones:

- on-demand: a fresh process -> ready (what Lambda reports as Init Duration), ready -> first answer;
- SnapStart: one snapshot process of the same code (init + before-snapshot hooks, once, not measured),
  then per environment a fork of it -> after-restore hooks done (Restore Duration), -> first answer.

The two kinds alternate, so both see the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.stats import Figures, children, cpu_seconds, environment, figures, table
from local.lambda_runtime.snapstart import RestoredProcess, SnapshotProcess
from tests.app.stack import APPROVED, MERCHANT_A_KEY, PaymentsApi, StackProcess, payment_body

_SUFFIX = "RouterFunction"


def _router_worker(stack_pid: int) -> tuple[list[str], dict[str, str], str]:
    """(command line, environment, cwd) of a running router environment (or of its SnapStart snapshot)."""
    stack = [stack_pid]
    while stack:
        pid = stack.pop()
        stack += children(pid)
        try:
            env = environment(pid)
        except OSError:
            continue
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


class _Worker:
    """One environment of the router, spoken to with the bootstrap's frames: a fresh process started from
    the router's command line (on-demand), or ``restored`` from a snapshot process (SnapStart)."""

    def __init__(
        self,
        head: list[str],
        env: dict[str, str],
        cwd: str,
        log: Path,
        layers: str = "[]",
        snapshot: SnapshotProcess | None = None,
    ) -> None:
        from local.lambda_runtime.bootstrap import read_frame, write_frame

        self._read, self._write = read_frame, write_frame
        self.proc: subprocess.Popen[bytes] | RestoredProcess
        self.started = time.perf_counter()
        if snapshot is not None:
            restored = snapshot.restore()
            self.proc, self._ctrl_w, self._result_r = restored.process, restored.ctrl_w, restored.result_r
            self._log = threading.Thread(target=_copy_log, args=(restored.process.stdout, log), daemon=True)
            self._log.start()
            return
        ctrl_r, self._ctrl_w = os.pipe()
        self._result_r, result_w = os.pipe()
        env = dict(env, AWS_LAMBDA_LOG_STREAM_NAME=f"bench/{uuid.uuid4().hex}")
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
        """(wall, CPU) seconds from the fresh process (or the restore request) to the handler ready. A fork's
        CPU counts from the fork."""
        frame = self._read(self._result_r)
        if frame is None or frame.get("error"):
            raise RuntimeError(f"router init failed: {frame}")
        return time.perf_counter() - self.started, cpu_seconds(self.proc.pid)

    def invoke(self) -> tuple[float, float]:
        """(wall, CPU of this worker) seconds of one sync POST /payments."""
        cpu = cpu_seconds(self.proc.pid)
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
        return elapsed, cpu_seconds(self.proc.pid) - cpu

    def close(self) -> None:
        os.close(self._ctrl_w)  # the bootstrap's loop ends when its control pipe closes
        self.proc.wait(10)
        os.close(self._result_r)


def _copy_log(stream: IO[bytes], log: Path) -> None:
    with log.open("ab") as out:
        for line in stream:
            out.write(line)
    stream.close()


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

    def rows(self, prefix: str, restored: bool = False) -> list[Figures]:
        rows = []
        start = "restore (fork -> hooks run)" if restored else "init (process -> imported)"
        total = "cold total (restore -> 1st answer)" if restored else "cold total (process -> 1st answer)"
        for label, samples in (
            (start, self.inits),
            ("first invocation (POST /payments)", self.firsts),
            (total, self.totals),
            ("warm invocation (POST /payments)", self.warms),
        ):
            for kind, index in (("wall", 0), ("CPU", 1)):
                values = [sample[index] for sample in samples]
                rows.append(figures(f"{prefix}{label}, {kind}", values, sum(values)))
        return rows


class RouterTemplate:
    """The running stack's router environment (command line, variables, code directory), to start copies
    of; optionally with the function and layer code taken from another checkout (``code_root``). The
    stack's router may run with SnapStart: its processes are then the snapshot and its forks, whose command
    line is ``python bootstrap.py --snapshot SOCK NONCE LAYERS``."""

    def __init__(self, stack: StackProcess, log: Path) -> None:
        assert stack._proc is not None
        argv, env, self.cwd = _router_worker(stack.pid)
        self.layers = argv[-1]
        self.head = argv[: argv.index("--snapshot")] if "--snapshot" in argv else argv[:-4]
        # On-demand copies get what Lambda gives an on-demand environment; the snapshot what SnapStart gives.
        group = f"/aws/lambda/{env['AWS_LAMBDA_FUNCTION_NAME']}"
        self.env = dict(env, AWS_LAMBDA_INITIALIZATION_TYPE="on-demand", AWS_LAMBDA_LOG_GROUP_NAME=group)
        self.snap_env = {k: v for k, v in env.items() if not k.startswith("AWS_LAMBDA_LOG_")}
        self.snap_env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        self.log = log

    def _code(self, code_root: Path | None) -> tuple[dict[str, str], str, str]:
        env, cwd, layers = dict(self.env), self.cwd, self.layers
        if code_root is not None:
            cwd = str(code_root / "functions" / "router")
            layers = json.dumps([str(code_root / "layers" / "payeasy")])
            env["LAMBDA_TASK_ROOT"] = cwd
        return env, cwd, layers

    def worker(self, code_root: Path | None = None) -> _Worker:
        env, cwd, layers = self._code(code_root)
        return _Worker(self.head, env, cwd, self.log, layers)

    def snapshot(self, code_root: Path | None = None) -> SnapshotProcess:
        """A snapshot process of the router (init + before-snapshot hooks done): ``restore()`` from it."""
        env, cwd, layers = self._code(code_root)
        snap_env = dict(self.snap_env, LAMBDA_TASK_ROOT=env["LAMBDA_TASK_ROOT"])
        out = self.log.open("a")

        def write(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        snapshot = SnapshotProcess(self.head, snap_env, cwd, layers, write)
        snapshot.start(30.0)
        if snapshot.failure is not None:
            raise RuntimeError(f"router snapshot failed: {snapshot.failure}")
        return snapshot


def sample(
    template: RouterTemplate,
    samples: ColdSamples,
    warm: int,
    code_root: Path | None = None,
    snapshot: SnapshotProcess | None = None,
) -> None:
    """One new environment (a fresh process, or a restore from ``snapshot``): ready, first answer, then
    ``warm`` more answers; added to ``samples``."""
    if snapshot is not None:
        worker = _Worker(template.head, {}, template.cwd, template.log, snapshot=snapshot)
    else:
        worker = template.worker(code_root)
    try:
        samples.inits.append(worker.ready())
        samples.firsts.append(worker.invoke())
        samples.warms += [worker.invoke() for _ in range(warm)]
    finally:
        worker.close()


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _p50_max(samples: list[tuple[float, float]], index: int) -> str:
    values = [sample[index] * 1000 for sample in samples]
    return f"p50 {statistics.median(values):.0f} / max {max(values):.0f} ms" if values else "n/a"


def cold_summary(on_demand: ColdSamples, snap_start: ColdSamples) -> dict[str, str]:
    """The two cold starts side by side (fresh process / restore -> first answer), wall and CPU."""
    return {
        "router cold start, on-demand (fresh process -> first answer)": (
            f"wall {_p50_max(on_demand.totals, 0)}, CPU {_p50_max(on_demand.totals, 1)} "
            f"(n={len(on_demand.totals)})"
        ),
        "router cold start, SnapStart (restore from snapshot -> first answer)": (
            f"wall {_p50_max(snap_start.totals, 0)}, CPU {_p50_max(snap_start.totals, 1)} "
            f"(n={len(snap_start.totals)}; target <= 300 ms)"
        ),
    }


def bench_router_cold(count: int, warm: int = 20, baseline: Path | None = None) -> None:
    """``baseline``: another checkout (e.g. ``git worktree add /tmp/base HEAD``) whose functions/router and
    layers/payeasy are measured too, alternating with this tree's in the same stack (paired A/B)."""
    load_before = _load()
    stack = StackProcess(acquirer_latency_ms=0).start()
    ours, theirs, restored = ColdSamples(), ColdSamples(), ColdSamples()
    snapshot: SnapshotProcess | None = None
    try:
        stack.wait_for_acquirer()
        api = PaymentsApi(stack.api_url, MERCHANT_A_KEY)
        for _ in range(5):  # everything downstream of the router warm
            assert api.create(payment_body(APPROVED), f"warm-{uuid.uuid4().hex}").status_code == 200
        api.close()
        template = RouterTemplate(stack, Path(os.environ.get("ROUTER_COLD_LOG", "/tmp/router-cold.log")))
        snapshot = template.snapshot()
        for _ in range(count):
            if baseline is not None:
                sample(template, theirs, warm, baseline)
            sample(template, ours, warm)
            sample(template, restored, warm, snapshot=snapshot)
    finally:
        if snapshot is not None:
            snapshot.close()
        stack.stop()
    rows = ours.rows("router on-demand ") + restored.rows("router SnapStart ", restored=True)
    extra = {
        "environments": f"{count} of each kind, one at a time on an idle stack, {warm} warm invocations each",
        "load average before / after": f"{load_before} / {_load()}",
        **cold_summary(ours, restored),
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
