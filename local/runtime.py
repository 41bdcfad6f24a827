"""Wires the parts of the local runtime into one running stack.

    template.yaml ──load_stack──▶ StackModel
                                   │
    AwsEndpoint (moto, :4566) ◀────┤ provision(): tables, queues, topics, secrets, state machines
      └ Lambda Invoke API ──▶ LambdaPool (worker processes) ◀── Step Functions tasks (moto_adapter)
    ApiGatewayServer (:3000) ───────▶ LambdaPool
    EventSourceRunner (SQS/SNS → Lambda), Scheduler (rate/cron → targets), XRayDaemon (UDP :2000)

Everything waits on one clock (``local.clock``). Tests build a ``LocalRuntime`` with a ``VirtualClock``
and port 0.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import moto_adapter
from local.apigateway import ApiGatewayServer
from local.aws_endpoint import AwsEndpoint
from local.clock import Clock, RealClock
from local.cloudwatch_logs import CloudWatchLogsSink
from local.errors import LocalRuntimeError
from local.event_sources import EventSourceRunner
from local.lambda_runtime import LambdaPool
from local.lambda_runtime.invoke_api import lambda_invoke_middleware
from local.lambda_runtime.pool import LAMBDA_ACCESS_KEY_ID
from local.model import StackModel
from local.ports import InvokeResult
from local.provision import provision
from local.schedules import Scheduler
from local.template_loader import load_stack
from local.xray import SegmentStore, XRayDaemon

log = logging.getLogger("local.runtime")
WSGIApp = Any  # werkzeug/WSGI callables

# moto's backends and the engine hooks are process-wide: one running stack per process.
_running = threading.Lock()
SLOW_STOP_STEP = 1.0  # seconds: a stop step slower than this is logged as a warning


def _step_name(stop: Callable[[], None]) -> str:
    owner = getattr(stop, "__self__", None)
    return f"{type(owner).__name__}.{stop.__name__}" if owner is not None else getattr(stop, "__name__", "?")


@dataclass
class RuntimeConfig:
    template: Path
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    stack_name: str | None = None
    account_id: str = "123456789012"
    host: str = "127.0.0.1"
    aws_port: int = 4566
    api_port: int = 3000
    xray_port: int = 2000
    echo_logs: bool = True  # function log lines to stderr as well as CloudWatch Logs


# Variables a client process (tests, the AWS CLI, a script) needs to talk to the local endpoint.
def client_environment(endpoint_url: str, region: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


class LocalRuntime:
    def __init__(self, config: RuntimeConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or RealClock()
        self._model: StackModel | None = None
        self._stops: list[Callable[[], None]] = []

    # Public handles, set by start()
    endpoint: AwsEndpoint
    pool: LambdaPool
    api: ApiGatewayServer
    segments: SegmentStore
    logs: CloudWatchLogsSink
    queue_urls: dict[str, str]

    @property
    def model(self) -> StackModel:
        if self._model is None:
            raise LocalRuntimeError("the local stack is not started")
        return self._model

    @property
    def endpoint_url(self) -> str:
        return self.endpoint.url

    @property
    def api_url(self) -> str:
        return self.api.url

    def start(self) -> LocalRuntime:
        if not _running.acquire(blocking=False):
            raise LocalRuntimeError("another local stack is already running in this process")
        self._stops.append(_running.release)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalRuntime:
        cfg = self.config
        region = (
            cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self._model = model = load_stack(
            cfg.template,
            parameter_overrides=cfg.parameter_overrides,
            region=region,
            account_id=cfg.account_id,
            stack_name=cfg.stack_name,
        )
        for item in model.unsupported:
            print(item.line(), file=sys.stderr)
        self._start_services(model)
        return self

    def _start_services(self, model: StackModel) -> None:
        cfg = self.config
        pool_box: list[LambdaPool] = []

        def invoke_middleware(app: WSGIApp) -> WSGIApp:  # the pool exists before the first request
            return lambda_invoke_middleware(app, _LazyInvoker(pool_box))

        def clock_middleware(app: WSGIApp) -> WSGIApp:
            return _function_calls_wait_on_runtime(app, self.clock)

        self.endpoint = AwsEndpoint(
            host=cfg.host, port=cfg.aws_port, middlewares=[clock_middleware, invoke_middleware]
        )
        self.endpoint.start()
        self._stops.append(self.endpoint.stop)
        reset_aws_state(
            self.endpoint.url
        )  # a fresh account: nothing left from an earlier stack in this process

        self.segments = SegmentStore(endpoint_url=self.endpoint.url, region=model.region)
        self._stops.append(self.segments.close)
        daemon = XRayDaemon(self.segments, host=cfg.host, port=cfg.xray_port)
        daemon.start()
        self._stops.append(daemon.stop)

        self.logs = logs = CloudWatchLogsSink(self.endpoint.url, model.region, self.clock, echo=cfg.echo_logs)
        self._stops.append(logs.close)

        self.pool = LambdaPool(
            model.functions,
            endpoint_url=self.endpoint.url,
            region=model.region,
            account_id=model.account_id,
            clock=self.clock,
            xray_daemon_address=f"{cfg.host}:{daemon.port}",
            segment_sink=self.segments,
            log_sink=logs.write,
        )
        pool_box.append(self.pool)
        self._stops.append(self.pool.close)

        moto_adapter.install(
            clock=self.clock,
            lambda_invoker=self.pool,
            endpoint_url=self.endpoint.url,
            segment_sink=self.segments,
            region=model.region,
        )
        result = provision(model, self.endpoint.url)
        self.queue_urls = result.queue_urls
        for secret in model.secrets.values():
            moto_adapter.pin_secret_arn(model.account_id, model.region, secret.name, secret.arn)

        runner = EventSourceRunner(
            model, self.pool, endpoint_url=self.endpoint.url, clock=self.clock, queue_urls=self.queue_urls
        )
        runner.start()
        self._stops.append(runner.stop)
        scheduler = Scheduler(model, clock=self.clock, endpoint_url=self.endpoint.url, invoker=self.pool)
        scheduler.start()
        self._stops.append(scheduler.stop)
        self._stops.append(_interrupt_work(runner, scheduler, self.pool))

        self.api = ApiGatewayServer(
            model.apis,
            self.pool,
            host=cfg.host,
            port=cfg.api_port,
            clock=self.clock,
            segment_sink=self.segments,
            region=model.region,
            account_id=model.account_id,
        )
        self.api.start()
        self._stops.append(self.api.stop)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            started = time.monotonic()
            try:
                stop()
            except Exception:  # keep stopping the rest; report what failed
                log.exception("error while stopping %s", stop)
            took = time.monotonic() - started
            log.log(
                logging.WARNING if took > SLOW_STOP_STEP else logging.DEBUG,
                "stop %s: %.2f s",
                _step_name(stop),
                took,
            )

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt_work(runner: EventSourceRunner, scheduler: Scheduler, pool: LambdaPool) -> Callable[[], None]:
    """The stop step that runs before the pollers and schedules are joined: it tells them to stop and kills
    the execution environments, so an in-flight invocation (an SQS batch, a stream batch, a scheduled run)
    ends now, as Lambda ends it on shutdown, instead of holding up the join for as long as it runs."""

    def interrupt_work() -> None:
        runner.stopping.set()
        scheduler.signal_stop()
        pool.close()

    return interrupt_work


def _function_calls_wait_on_runtime(app: WSGIApp, clock: Clock) -> WSGIApp:
    """A Lambda invocation keeps an auto clock still (``clock.busy``); while its code waits on this endpoint
    (a StartSyncExecution whose workflow sits in a retry backoff) it must not, or neither could go on.
    Function code is recognised by the access key every execution environment signs with."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if f"Credential={LAMBDA_ACCESS_KEY_ID}/" not in environ.get("HTTP_AUTHORIZATION", ""):
            return app(environ, start_response)
        with clock.waiting():
            return list(app(environ, start_response))

    return wrapped


def samconfig_region(template: Path) -> str | None:
    """The region `sam deploy` would use: samconfig.toml beside the template, default environment."""
    import tomllib

    path = template.parent / "samconfig.toml"
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    default = config.get("default", {})
    for section in ("deploy", "global"):
        region = default.get(section, {}).get("parameters", {}).get("region")
        if region:
            return str(region)
    return None


def reset_aws_state(endpoint_url: str) -> None:
    """moto's documented reset: every backend (tables, queues, executions ...) back to empty."""
    import requests

    requests.post(f"{endpoint_url}/moto-api/reset", timeout=10).raise_for_status()


class _LazyInvoker:
    """Lets the endpoint's Invoke middleware exist before the pool (the pool needs the endpoint's URL)."""

    def __init__(self, box: list[LambdaPool]) -> None:
        self._box = box

    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> InvokeResult:
        return self._box[0].invoke(function, payload, **kwargs)
