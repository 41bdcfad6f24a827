"""The payment app on the local runtime, for the app's end-to-end tests and `python -m bench payments`.

Two ways to run it, both with the acquirer simulator beside the stack:
- ``running_app()``: LocalRuntime + AcquirerServer in this process (one LocalRuntime per process);
- ``StackProcess``: `python -m local start ... --sidecar "python -m simulators.acquirer ..."`, as `make run`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests

from local.clock import Clock, VirtualClock
from local.runtime import LocalRuntime, RuntimeConfig, client_environment
from simulators.acquirer.core import Acquirer
from simulators.acquirer.server import AcquirerServer
from simulators.merchant_webhooks.core import Receiver
from simulators.merchant_webhooks.server import ReceiverServer

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# The template's defaults (README's demo merchants and the acquirer key the local secret holds).
MERCHANT_A_KEY = "pk_test_merchant_a_4f8b2c71d9e6"
MERCHANT_B_KEY = "pk_test_merchant_b_93ad5e07c1f2"
ACQUIRER_KEY = "sk_test_acquirer_local"

APPROVED = "4242424242424242"
DECLINES = {
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
}
AUTHORIZE_SLOW_ONCE = "4000000000001018"
AUTHORIZE_SLOW_ALWAYS = "4000000000001075"
CAPTURE_FAILS = "4000000000001026"
THREE_DS_CHALLENGE = "4000000000003220"


def card(number: str, **overrides: Any) -> dict[str, Any]:
    return {
        "number": number,
        "exp_month": 12,
        "exp_year": 2034,
        "cvc": "123",
        "holder_name": "Hanako Yamada",
        **overrides,
    }


def payment_body(number: str = APPROVED, *, amount: int = 5000, **fields: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": "jpy", "card": card(number), **fields}


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields after the command name (state, ppid, ..., starttime at [19]); None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` → its start time (so a recycled pid is never taken for it)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, []) if child not in found]
        found.update((child, starts[child]) for child in frontier)
    return found


def _alive(pid: int, started: str) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == started


def wait_for[T](probe: Callable[[], T | None], *, timeout_s: float = 30.0, what: str = "condition") -> T:
    """Polls ``probe`` until it returns something truthy (eventual outcomes: workflows, streams, queues)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def execution_history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every history event of an execution (all pages)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def entered_states(events: list[dict[str, Any]]) -> list[str]:
    """The names of the states an execution entered, in order."""
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PaymentsApi:
    """The payment API over HTTP, as a merchant's integration calls it."""

    def __init__(self, base_url: str, api_key: str = MERCHANT_A_KEY) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = requests.Session()

    def headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"X-Api-Key": self.api_key, "Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def create(self, body: dict[str, Any], idempotency_key: str | None = None) -> requests.Response:
        key = idempotency_key or f"test-{uuid.uuid4().hex}"
        return self.session.post(
            f"{self.base_url}/payments", data=json.dumps(body), headers=self.headers(key), timeout=60
        )

    def get(self, payment_id: str) -> requests.Response:
        return self.session.get(f"{self.base_url}/payments/{payment_id}", headers=self.headers(), timeout=30)

    def act(self, payment_id: str, action: str, body: dict[str, Any] | None = None) -> requests.Response:
        """``action``: capture | cancel | refunds, each with a fresh Idempotency-Key."""
        return self.session.post(
            f"{self.base_url}/payments/{payment_id}/{action}",
            data=json.dumps(body or {}),
            headers=self.headers(f"{action}-{uuid.uuid4().hex}"),
            timeout=30,
        )

    def close(self) -> None:
        self.session.close()


def acquirer_ledger(acquirer_url: str) -> dict[str, Any]:
    """The simulator's own record (GET /v1/_admin/ledger): what it authorized, captured, voided, refunded."""
    reply = requests.get(
        f"{acquirer_url}/v1/_admin/ledger", headers={"Authorization": f"Bearer {ACQUIRER_KEY}"}, timeout=10
    )
    reply.raise_for_status()
    return dict(reply.json())


def authorizations_for(acquirer_url: str, payment_id: str) -> list[dict[str, Any]]:
    return [a for a in acquirer_ledger(acquirer_url)["authorizations"] if a["reference"] == payment_id]


@dataclass
class AppStack:
    runtime: LocalRuntime
    acquirer: AcquirerServer
    webhooks: ReceiverServer | None = None  # the merchant webhook receiver (MerchantWebhookBaseUrl)

    @property
    def api(self) -> PaymentsApi:
        return PaymentsApi(self.runtime.api_url)

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=self.runtime.endpoint_url, region_name=self.runtime.model.region
        )

    def function_name(self, logical_id: str) -> str:
        return next(
            f.function_name for f in self.runtime.model.functions.values() if f.logical_id == logical_id
        )

    @property
    def express_arn(self) -> str:
        return next(
            sm.arn
            for sm in self.runtime.model.state_machines.values()
            if sm.logical_id == "PaymentExpressStateMachine"
        )

    def table_name(self, logical_id: str) -> str:
        return next(t.table_name for t in self.runtime.model.tables.values() if t.logical_id == logical_id)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return execution_history(self.client("stepfunctions"), execution_arn)

    def ledger_for(self, payment_id: str) -> list[dict[str, Any]]:
        return authorizations_for(self.acquirer.url, payment_id)


@contextlib.contextmanager
def running_app(
    *,
    latency_ms: int = 0,
    slow_ms: int = 3000,
    acquirer_timeout_s: int = 2,
    clock: Clock | None = None,
    parameter_overrides: dict[str, str] | None = None,
) -> Iterator[AppStack]:
    """Simulator + the whole template on the local runtime, in this process; the client variables
    (endpoint, fake credentials) are set for this process while it runs and restored after."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's per-request access log
    own_clock = clock is None
    clock = clock or VirtualClock(auto=True)
    acquirer = AcquirerServer(
        Acquirer(api_keys={ACQUIRER_KEY}, latency_ms=latency_ms, slow_ms=slow_ms), port=0
    ).start()
    # Merchant webhooks reach a receiver, as under `make run` (else every webhook fails and is resent).
    webhooks = ReceiverServer(Receiver(), port=0).start()
    config = RuntimeConfig(
        template=TEMPLATE,
        parameter_overrides={
            "AcquirerBaseUrl": acquirer.url,
            "AcquirerApiKey": ACQUIRER_KEY,
            "AcquirerTimeoutSeconds": str(acquirer_timeout_s),
            "MerchantWebhookBaseUrl": f"{webhooks.url}/webhooks",
            **(parameter_overrides or {}),  # e.g. NotificationRetrySeconds
        },
        region="us-east-1",
        aws_port=0,
        api_port=0,
        xray_port=0,
        echo_logs=False,
    )
    runtime = LocalRuntime(config, clock=clock)
    saved: dict[str, str | None] = {}
    try:
        runtime.start()
        variables = client_environment(runtime.endpoint_url, runtime.model.region)
        saved = {key: os.environ.get(key) for key in variables}
        os.environ.update(variables)
        yield AppStack(runtime, acquirer, webhooks)
        assert_no_card_data(runtime)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        runtime.stop()
        acquirer.stop()
        webhooks.stop()
        if own_clock and isinstance(clock, VirtualClock):
            clock.close()


def assert_no_card_data(runtime: LocalRuntime) -> None:
    """PCI sweep after every in-process stack of the suite: no card number or CVC in any log line, table item,
    execution history or X-Ray segment the stack holds, whatever its tests did."""
    from local.moto_adapter import xray_traces

    from .pan_scan import find_card_data

    runtime.logs.flush()
    runtime.segments.flush()

    def client(service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=runtime.endpoint_url, region_name=runtime.model.region
        )

    logs, ddb, sfn = client("logs"), client("dynamodb"), client("stepfunctions")
    found: dict[str, list[str]] = {}
    for group in [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]]:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            hits = find_card_data("\n".join(event["message"] for event in page["events"]))
            found.setdefault(f"log group {group}", []).extend(hits)
    for table in runtime.model.tables.values():
        for page in ddb.get_paginator("scan").paginate(TableName=table.table_name):
            found.setdefault(f"table {table.logical_id}", []).extend(find_card_data(page["Items"]))
    for machine in runtime.model.state_machines.values():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine.arn):
            for execution in page["executions"]:
                hits = find_card_data(execution_history(sfn, execution["executionArn"]))
                found.setdefault(f"history of {machine.logical_id}", []).extend(hits)
    found["X-Ray segments"] = find_card_data(xray_traces(runtime.model.region))
    kept = {where: hits for where, hits in found.items() if hits}
    assert not kept, f"card data kept by the stack: {kept}"


# --- the stack as `make run` starts it ---------------------------------------------------------------------

_AWS_LINE = re.compile(r"AWS endpoint\s+(http://\S+)")
_API_LINE = re.compile(r"API Gateway\s+(http://\S+)")


@dataclass
class StackProcess:
    """`python -m local start` with the simulator as its sidecar; URLs parsed from the banner on stdout."""

    acquirer_latency_ms: int = 0
    acquirer_slow_ms: int = 3000
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    acquirer_url: str = ""
    webhooks_url: str = ""  # the merchant webhook receiver sidecar
    # 0: a free port chosen before start, so the simulator's 3-D Secure callbacks can be pointed at the API.
    api_port: int = 0
    clock_scale: float | None = None  # `--clock-scale`: virtual seconds per real second (None: real time)
    heartbeat_interval_s: float | None = None  # the challenge page's heartbeats (None: simulator's 20 s)
    orphans: list[int] = field(default_factory=list)  # descendants still alive after stop(), killed by it
    endpoint_url: str = ""
    api_url: str = ""
    banner: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> StackProcess:
        port = free_port()
        self.acquirer_url = f"http://127.0.0.1:{port}"
        sidecar = (
            f"{sys.executable} -m simulators.acquirer --port {port}"
            f" --latency-ms {self.acquirer_latency_ms} --slow-ms {self.acquirer_slow_ms}"
        )
        self.api_port = self.api_port or free_port()
        sidecar += f" --callback-base-url http://127.0.0.1:{self.api_port}"
        if self.heartbeat_interval_s is not None:
            sidecar += f" --heartbeat-interval {self.heartbeat_interval_s}"
        webhooks_port = free_port()  # the merchant webhook receiver, as `make run` starts it
        webhooks = f"{sys.executable} -m simulators.merchant_webhooks --port {webhooks_port}"
        self.webhooks_url = f"http://127.0.0.1:{webhooks_port}"
        overrides = {
            "AcquirerBaseUrl": self.acquirer_url,
            "MerchantWebhookBaseUrl": f"{self.webhooks_url}/webhooks",
            **self.parameter_overrides,
        }
        argv = [
            sys.executable, "-m", "local", "start", "--template", str(TEMPLATE),
            "--port", "0", "--api-port", str(self.api_port), "--xray-port", "0",
            "--sidecar", sidecar, "--sidecar", webhooks,
            "--parameter-overrides", *(f"{key}={value}" for key, value in overrides.items()),
        ]  # fmt: skip
        if self.clock_scale is not None:
            argv += ["--clock-scale", str(self.clock_scale)]
        # The CLI's clients must not inherit an endpoint from whoever runs the tests.
        env = {k: v for k, v in os.environ.items() if k not in client_environment("", "")}
        self._proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        ready = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(ready,), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        if not ready.wait(self.start_timeout_s) or not self.api_url:
            self.stop()
            raise RuntimeError("local stack did not start:\n" + "\n".join(self.stderr_tail[-30:]))
        return self

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.banner.append(line.rstrip())
            if match := _AWS_LINE.search(line):
                self.endpoint_url = match.group(1)
            elif match := _API_LINE.search(line):
                self.api_url = match.group(1)
            elif line.startswith("Ctrl-C stops."):
                ready.set()
        ready.set()  # stdout closed: the process ended

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.stderr_tail = [*self.stderr_tail[-199:], line.rstrip()]

    @property
    def pid(self) -> int:
        """The `local start` process (its Lambda workers and sidecars are below it)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT (Ctrl-C, as a user stops `make run`); the exit status."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            family = descendants(proc.pid)  # now: once the CLI is gone they are re-parented to init
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # `local start` dumps every thread's stack on SIGUSR1: the stderr tail says where it hung.
                proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                proc.kill()
                proc.wait()
            # The CLI stops its sidecars and Lambda workers; whatever a hung or killed stop left is killed.
            deadline = time.monotonic() + 5
            while (left := {p for p, t in family.items() if _alive(p, t)}) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.orphans = sorted(left)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for reader in self._readers:
            reader.join(5)
        return int(proc.returncode)

    def wait_for_acquirer(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                acquirer_ledger(self.acquirer_url)
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
