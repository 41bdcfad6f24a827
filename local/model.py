"""What the local runtime understood of a SAM template: plain data, every intrinsic already resolved.

``local.template_loader.load_stack`` produces a ``StackModel``; every other part of the runtime (provisioning,
Lambda pool, Step Functions, API Gateway, event sources, schedules) reads only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FunctionSpec:
    logical_id: str
    function_name: str  # physical name (FunctionName, or "<stack>-<LogicalId>")
    arn: str
    handler: str  # "module.function" relative to code_dir
    code_dir: Path  # absolute path of CodeUri (LAMBDA_TASK_ROOT)
    runtime: str
    timeout: int  # seconds
    memory_size: int  # MB
    environment: dict[str, str]
    layer_dirs: list[Path]  # absolute ContentUri dirs of local layers, in template order (/opt)
    reserved_concurrency: int | None
    tracing: bool  # Tracing: Active
    architectures: list[str] = field(default_factory=lambda: ["x86_64"])
    log_level: str | None = None  # LoggingConfig.ApplicationLogLevel if given
    # AutoPublishAlias: the published version (SAM publishes one per deployment; locally always "1") and the
    # aliases pointing at it; None when the function publishes none. snap_start: SnapStart ApplyOn
    # PublishedVersions, for that version.
    published_version: str | None = None
    aliases: tuple[str, ...] = ()
    snap_start: bool = False


@dataclass
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    type: str  # "STANDARD" | "EXPRESS"
    definition: str  # ASL JSON text, DefinitionSubstitutions applied
    role_arn: str
    tracing: bool
    logging: dict[str, Any] | None = None  # LoggingConfiguration as CloudFormation has it (resolved)


@dataclass
class TableSpec:
    logical_id: str
    table_name: str
    arn: str
    properties: dict[str, Any]  # resolved AWS::DynamoDB::Table properties (KeySchema, GSIs, TTL, ...)


@dataclass
class QueueSpec:
    logical_id: str
    queue_name: str
    arn: str
    url: str
    attributes: dict[str, str]  # SQS attribute names: VisibilityTimeout, RedrivePolicy (JSON), FifoQueue, ...


@dataclass
class SubscriptionSpec:
    protocol: str  # sqs | lambda | email | https ...
    endpoint: str  # ARN or URL
    raw_message_delivery: bool = False
    filter_policy: dict[str, Any] | None = None


@dataclass
class TopicSpec:
    logical_id: str
    topic_name: str
    arn: str
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)


@dataclass
class SecretSpec:
    logical_id: str
    name: str
    arn: str
    secret_string: str  # SecretString, or GenerateSecretString rendered once at start


@dataclass
class AlarmSpec:
    logical_id: str
    name: str
    properties: dict[str, Any]  # resolved AWS::CloudWatch::Alarm properties (PutMetricAlarm's names)


@dataclass
class LogGroupSpec:
    logical_id: str
    name: str
    retention_days: int | None = None


@dataclass
class ScheduleSpec:
    logical_id: str
    name: str
    expression: str  # "rate(5 minutes)" | "cron(0/5 * * * ? *)" | "at(2026-01-01T00:00:00)"
    target_arn: str  # state machine or Lambda function ARN
    input: str | None  # JSON text passed to the target
    enabled: bool = True
    kind: str = "scheduler"  # "scheduler" (AWS::Scheduler::Schedule) | "events" (AWS::Events::Rule)
    timezone: str = "UTC"


@dataclass
class EventSourceMappingSpec:
    logical_id: str
    function_name: str
    event_source_arn: str  # SQS queue ARN or DynamoDB stream ARN
    batch_size: int = 10
    maximum_batching_window_seconds: int = 0
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency
    report_batch_item_failures: bool = False  # FunctionResponseTypes contains ReportBatchItemFailures
    enabled: bool = True
    # DynamoDB streams only:
    starting_position: str | None = None  # TRIM_HORIZON | LATEST
    maximum_retry_attempts: int | None = None  # None or -1: until the batch succeeds (Lambda's default)
    on_failure_destination: str | None = None  # DestinationConfig.OnFailure.Destination (SQS/SNS ARN)

    @property
    def is_stream(self) -> bool:
        return ":dynamodb:" in self.event_source_arn


@dataclass
class RouteSpec:
    method: str  # GET, POST, ... or ANY
    path: str  # "/payments/{id}" or "/{proxy+}"
    function_name: str  # physical name of the integration's Lambda
    api_key_required: bool = False


@dataclass
class ApiKeySpec:
    logical_id: str
    key_id: str
    name: str
    value: str
    enabled: bool = True


@dataclass
class ApiSpec:
    logical_id: str
    rest_api_id: str
    stage_name: str
    routes: list[RouteSpec]
    api_keys: list[ApiKeySpec] = field(default_factory=list)  # keys attached through usage plans
    binary_media_types: list[str] = field(default_factory=list)
    tracing: bool = False


@dataclass
class Unsupported:
    """A resource type or property the runtime does not emulate; printed in one line at start-up."""

    logical_id: str
    resource_type: str
    detail: str

    def line(self) -> str:
        return f"not emulated: {self.logical_id} ({self.resource_type}): {self.detail}"


@dataclass
class StackModel:
    stack_name: str
    region: str
    account_id: str
    template_path: Path
    parameters: dict[str, str]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # by physical name
    state_machines: dict[str, StateMachineSpec] = field(default_factory=dict)  # by name
    tables: dict[str, TableSpec] = field(default_factory=dict)
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    topics: dict[str, TopicSpec] = field(default_factory=dict)
    secrets: dict[str, SecretSpec] = field(default_factory=dict)
    log_groups: dict[str, LogGroupSpec] = field(default_factory=dict)
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)
    event_buses: dict[str, str] = field(default_factory=dict)  # name -> logical id (custom buses)
    alarms: dict[str, AlarmSpec] = field(default_factory=dict)  # by name
    dashboards: dict[str, str] = field(default_factory=dict)  # name -> DashboardBody (JSON text)
    event_source_mappings: list[EventSourceMappingSpec] = field(default_factory=list)
    apis: dict[str, ApiSpec] = field(default_factory=dict)  # by logical id
    outputs: dict[str, Any] = field(default_factory=dict)
    unsupported: list[Unsupported] = field(default_factory=list)

    def function_by_arn_or_name(self, ref: str) -> FunctionSpec | None:
        """Accepts a name, a full ARN, a partial ARN, or any of those with a :qualifier."""
        name = ref
        if ref.startswith("arn:"):
            parts = ref.split(":")
            name = parts[6] if len(parts) > 6 else ref
        elif ":" in ref:
            name = ref.split(":")[0]
        return self.functions.get(name)
