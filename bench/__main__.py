"""`make bench`: speed figures, printed side by side in one run. Not part of `make test`.

python -m bench            # local runtime: EXPRESS StartSyncExecution, ours vs stock moto
python -m bench --count 500
python -m bench payments   # payment API: sync POST /payments with the acquirer at 0 and 300 ms, cold start
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from bench.stats import Figures, children, cpu_seconds, figures, table
from local.cli import settle_garbage_collector
from local.clock import RealClock
from local.runtime import LocalRuntime, RuntimeConfig, client_environment

HERE = Path(__file__).parent


def _sync_runs(sfn: Any, arn: str, count: int, workers: int) -> tuple[list[float], float]:
    samples: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        out = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"i": i}))
        if out["status"] != "SUCCEEDED":
            raise RuntimeError(f"benchmark execution failed: {out}")
        with lock:
            samples.append(time.perf_counter() - t0)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    return samples, time.perf_counter() - start


_BANNER_ENDPOINT = re.compile(r"AWS endpoint\s+(http://\S+)")
_BANNER_MACHINE = re.compile(r"state machine\s+\S+\s+\((?:STANDARD|EXPRESS)\)\s+(arn:\S+)")


def _stack_process(template: Path) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    """`python -m local start` as users run it: its own process, so the client does not share its GIL."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "local", "start", "--template", str(template)),
            *("--port", "0", "--api-port", "0", "--xray-port", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    endpoint, arns = "", {}
    for line in proc.stdout:
        if m := _BANNER_ENDPOINT.search(line):
            endpoint = m.group(1)
        if m := _BANNER_MACHINE.search(line):
            arns[m.group(1).rsplit("-", 1)[-1]] = m.group(1)  # "<stack>-<LogicalId>" -> LogicalId
        if line.startswith("Ctrl-C"):
            break
    if not endpoint:
        proc.kill()
        raise RuntimeError("the local stack did not start")
    return proc, endpoint, arns


def _stack_cpu_seconds(pid: int) -> float:
    """CPU of the `local start` server and its Lambda workers so far: a figure that, unlike latency, does
    not move with what else the machine is doing."""
    total = cpu_seconds(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):  # a worker that ended meanwhile
            total += cpu_seconds(child)
    return total


def bench_local_process(count: int) -> tuple[list[Figures], float]:
    """Rows for 1, 2 and 4 concurrent clients, and the stack's CPU milliseconds per execution."""
    proc, endpoint, arns = _stack_process(HERE / "fixture" / "template.yaml")
    try:
        sfn = boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1")
        _sync_runs(sfn, arns["FiveTasks"], 30, 1)
        rows = []
        cpu_before, runs = _stack_cpu_seconds(proc.pid), 0
        for workers in (1, 2, 4):
            samples, wall = _sync_runs(sfn, arns["FiveTasks"], count, workers)
            runs += count
            label = f"`local start` process, 5 Lambda tasks, {workers} client{'s' if workers > 1 else ''}"
            rows.append(figures(label, samples, wall))
        return rows, 1000 * (_stack_cpu_seconds(proc.pid) - cpu_before) / runs
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


TARGET_PER_SECOND, TARGET_P99_MS = 150.0, 50.0


def verdict(rows: list[Figures]) -> str:
    """Which 5-task runs meet issue 3's target, computed from this run's figures."""
    tasks = [r for r in rows if "5 Lambda tasks" in r.label]
    met = [r for r in tasks if r.per_second >= TARGET_PER_SECOND and r.p99_ms <= TARGET_P99_MS]
    if met:
        return "met by " + "; ".join(f"{r.label} ({r.per_second:.0f}/s, p99 {r.p99_ms:.1f} ms)" for r in met)
    best = max(tasks, key=lambda r: r.per_second)
    return f"not met in this run (best: {best.label}, {best.per_second:.0f}/s, p99 {best.p99_ms:.1f} ms)"


def bench_local(count: int) -> None:
    config = RuntimeConfig(template=HERE / "fixture" / "template.yaml", aws_port=0, api_port=0, xray_port=0)
    config.echo_logs = False
    with LocalRuntime(config, clock=RealClock()) as rt:
        settle_garbage_collector()  # what `local start` does once started
        os.environ.update(client_environment(rt.endpoint_url, "us-east-1"))
        sfn = boto3.client("stepfunctions", endpoint_url=rt.endpoint_url, region_name="us-east-1")
        arns = {sm.logical_id: sm.arn for sm in rt.model.state_machines.values()}
        _sync_runs(sfn, arns["FiveTasks"], 30, 1)  # warm: environments started, definitions parsed
        _sync_runs(sfn, arns["FivePasses"], 30, 1)
        rows: list[Figures] = []
        samples, wall = _sync_runs(sfn, arns["FiveTasks"], count, 1)
        rows.append(figures("local runtime, 5 Lambda tasks, StartSyncExecution, 1 client", samples, wall))
        samples, wall = _sync_runs(sfn, arns["FiveTasks"], count, 4)
        rows.append(figures("local runtime, 5 Lambda tasks, StartSyncExecution, 4 clients", samples, wall))
        samples, wall = _sync_runs(sfn, arns["FivePasses"], count, 1)
        passes = figures("local runtime, 5 Pass states, StartSyncExecution, 1 client", samples, wall)
        rows.append(passes)
    process_rows, stack_cpu_ms = bench_local_process(count)
    rows[2:2] = process_rows
    clean_env = {k: v for k, v in os.environ.items() if k not in client_environment("", "")}
    stock = subprocess.run(
        [sys.executable, "-m", "bench.stock_moto", str(count)],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env,  # stock moto in-process: no endpoint variables of ours
    )
    stock_fig = Figures(**json.loads(stock.stdout.strip().splitlines()[-1]))
    rows.append(stock_fig)
    per_state_task = rows[0].p50_ms / 5
    per_state_pass = passes.p50_ms / 5
    print(
        table(
            rows,
            {
                "per-state overhead (p50 / 5 states)": (
                    f"Lambda task {per_state_task:.2f} ms, Pass {per_state_pass:.2f} ms (ours), "
                    f"Pass {stock_fig.p50_ms / 5:.2f} ms (stock moto)"
                ),
                "`local start` CPU per 5-task execution (server + Lambda workers, all clients)": (
                    f"{stack_cpu_ms:.2f} ms"
                ),
                "target (issue 3): 5-task workflow >= 150 exec/s and p99 <= 50 ms": verdict(rows),
            },
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suite", nargs="?", default="local", choices=["local", "payments"])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    if args.suite == "local":
        bench_local(args.count)
    elif args.suite == "payments":
        from bench.payments import bench_payments  # imports the test helpers only when asked

        bench_payments(args.count)


if __name__ == "__main__":
    main()
