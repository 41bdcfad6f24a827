"""The benchmarks' per-process CPU accounting: who a process of the stack is, and what it used."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.payments import cpu_summary
from bench.stats import cpu_by_role, role

_BURN_THEN_WAIT = (
    "import sys, time\n"
    "end = time.process_time() + 0.2\n"
    "while time.process_time() < end: pass\n"
    "print(1, flush=True)\n"
    "sys.stdin.read()"
)


@contextmanager
def _process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _BURN_THEN_WAIT, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "1\n"  # its 0.2 s of CPU are spent
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_lambda_worker_is_named_by_its_function_and_a_sidecar_by_its_module() -> None:
    with (
        _process(env={"AWS_LAMBDA_FUNCTION_NAME": "payeasy-dev-RouterFunction"}) as worker,
        _process("-m", "simulators.acquirer") as sidecar,
    ):
        assert role(worker.pid) == "Lambda payeasy-dev-RouterFunction"
        assert role(sidecar.pid) == "acquirer simulator"


def test_cpu_is_summed_per_role() -> None:
    env = {"AWS_LAMBDA_FUNCTION_NAME": "f"}
    with _process(env=env) as one, _process(env=env) as two, _process("simulators.merchant_webhooks") as hook:
        totals = cpu_by_role([one.pid, two.pid, hook.pid, 2**22 + 7])  # a pid that does not exist is skipped
    assert set(totals) == {"Lambda f", "webhook simulator"}
    assert totals["Lambda f"] >= 0.4 > totals["webhook simulator"] >= 0.2


def test_the_sync_path_counts_only_the_functions_a_payment_waits_for() -> None:
    summary = cpu_summary(
        {
            "server (local start)": 50.0,
            "Lambda payeasy-dev-RouterFunction": 12.0,
            "Lambda payeasy-dev-AuthorizeFunction": 4.0,
            "Lambda payeasy-dev-CaptureFunction": 4.0,
            "Lambda payeasy-dev-SendWebhookFunction": 5.0,
            "Lambda payeasy-dev-AuditTrailFunction": 6.0,
        }
    )
    assert list(summary.values()) == [
        "81.0: server (local start) 50.0, payeasy-dev-RouterFunction 12.0, "
        "payeasy-dev-AuditTrailFunction 6.0, payeasy-dev-SendWebhookFunction 5.0, "
        "payeasy-dev-AuthorizeFunction 4.0, payeasy-dev-CaptureFunction 4.0",
        "25.0 ms",
    ]
