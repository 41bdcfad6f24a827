"""Create every resource of a ``StackModel`` in the local AWS endpoint (moto), through boto3 as a user would.

Provisioning is idempotent (running it twice against the same endpoint updates instead of failing), and a
resource the endpoint refuses stops provisioning with one ``ProvisionError`` line naming its logical id.
ARNs and queue URLs are taken from the endpoint's answers, never from the model: moto's queue URLs differ
from the AWS-shaped ones the template loader computes, and its account may differ too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local.aws_endpoint import serve_in_process
from local.errors import LocalRuntimeError
from local.model import AlarmSpec, QueueSpec, ScheduleSpec, StackModel, StateMachineSpec, TableSpec, TopicSpec

FAKE_ACCESS_KEY = "local"
_CLIENT_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)


class ProvisionError(LocalRuntimeError):
    """The endpoint refused a resource of the template."""


@dataclass
class ProvisionResult:
    queue_urls: dict[str, str] = field(default_factory=dict)  # queue name -> URL the endpoint answers to
    queue_arns: dict[str, str] = field(default_factory=dict)  # queue name -> ARN
    topic_arns: dict[str, str] = field(default_factory=dict)  # topic name -> ARN
    subscription_arns: dict[str, list[str]] = field(default_factory=dict)  # topic name -> created subs
    table_arns: dict[str, str] = field(default_factory=dict)
    secret_arns: dict[str, str] = field(default_factory=dict)
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    log_groups: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)  # names of Scheduler schedules / Events rules
    skipped: list[str] = field(default_factory=list)  # one line per item deliberately not created


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local endpoint with fake credentials (the runners use it too); in the process
    that serves the endpoint it calls it without HTTP."""
    return serve_in_process(
        boto3.client(
            service,  # type: ignore[call-overload]  # service is a runtime string, not a Literal
            endpoint_url=endpoint_url,
            region_name=region,
            config=_CLIENT_CONFIG,
            aws_access_key_id=FAKE_ACCESS_KEY,
            aws_secret_access_key=FAKE_ACCESS_KEY,
        )
    )


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _resource(logical_id: str, kind: str) -> Iterator[None]:
    """Turns any endpoint refusal into one line that names the template resource."""
    try:
        yield
    except ClientError as error:
        info = error.response.get("Error", {})
        detail = f"{info.get('Code', 'Error')}: {info.get('Message', '')}".strip()
        raise ProvisionError(f"cannot create {kind} {logical_id}: {detail}") from None
    except BotoCoreError as error:
        raise ProvisionError(f"cannot create {kind} {logical_id}: {error}") from None
    except KeyError as error:
        raise ProvisionError(f"cannot create {kind} {logical_id}: missing property {error}") from None


def provision(model: StackModel, endpoint_url: str) -> ProvisionResult:
    return _Provisioner(model, endpoint_url).run()


class _Provisioner:
    def __init__(self, model: StackModel, endpoint_url: str) -> None:
        self.model = model
        self.endpoint_url = endpoint_url
        self.result = ProvisionResult()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.endpoint_url, self.model.region)
        return self._clients[service]

    def run(self) -> ProvisionResult:
        model = self.model
        for group in model.log_groups.values():
            self.log_group(group.logical_id, group.name, group.retention_days)
        for table in model.tables.values():
            self.table(table)
        for queue in _dlq_first(list(model.queues.values())):
            self.queue(queue)
        for topic in model.topics.values():
            self.topic(topic)
        for bus, logical_id in model.event_buses.items():
            self.event_bus(logical_id, bus)
        for alarm in model.alarms.values():
            self.alarm(alarm)
        for dashboard, body in model.dashboards.items():
            with _resource(dashboard, "dashboard"):
                self.client("cloudwatch").put_dashboard(DashboardName=dashboard, DashboardBody=body)
        for secret in model.secrets.values():
            self.secret(secret.logical_id, secret.name, secret.secret_string)
        for machine in model.state_machines.values():
            self.state_machine(machine)
        for schedule in model.schedules.values():
            self.schedule(schedule)
        return self.result

    # -- CloudWatch Logs --

    def log_group(self, logical_id: str, name: str, retention_days: int | None) -> None:
        logs = self.client("logs")
        with _resource(logical_id, "log group"):
            try:
                logs.create_log_group(logGroupName=name)
            except ClientError as error:
                if error_code(error) != "ResourceAlreadyExistsException":
                    raise
            if retention_days:
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        self.result.log_groups.append(name)

    # -- DynamoDB --

    def table(self, spec: TableSpec) -> None:
        ddb = self.client("dynamodb")
        with _resource(spec.logical_id, "DynamoDB table"):
            request = _table_request(spec)
            try:
                answer = ddb.create_table(**request)["TableDescription"]
            except ClientError as error:
                if error_code(error) != "ResourceInUseException":
                    raise
                answer = ddb.describe_table(TableName=spec.table_name)["Table"]
            ttl = spec.properties.get("TimeToLiveSpecification")
            if ttl and _truthy(ttl.get("Enabled")):
                ddb.update_time_to_live(
                    TableName=spec.table_name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        self.result.table_arns[spec.table_name] = answer["TableArn"]

    # -- SQS --

    def queue(self, spec: QueueSpec) -> None:
        sqs = self.client("sqs")
        attributes = dict(spec.attributes)
        if spec.queue_name.endswith(".fifo"):
            attributes.setdefault("FifoQueue", "true")
        policy = attributes.get("RedrivePolicy")
        if policy:
            attributes["RedrivePolicy"] = self._real_redrive_policy(policy)
        with _resource(spec.logical_id, "SQS queue"):
            try:
                url = sqs.create_queue(QueueName=spec.queue_name, Attributes=attributes)["QueueUrl"]
            except ClientError as error:
                if error_code(error) not in ("QueueAlreadyExists", "QueueNameExists"):
                    raise
                url = sqs.get_queue_url(QueueName=spec.queue_name)["QueueUrl"]
                settable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
                if settable:
                    sqs.set_queue_attributes(QueueUrl=url, Attributes=settable)
            answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arn = answer["Attributes"]["QueueArn"]
        self.result.queue_urls[spec.queue_name] = url
        self.result.queue_arns[spec.queue_name] = arn

    def _real_redrive_policy(self, text: str) -> str:
        """Points the redrive policy at the DLQ's ARN as the endpoint knows it (DLQs are created first)."""
        policy = json.loads(text)
        target = str(policy.get("deadLetterTargetArn", ""))
        name = target.rsplit(":", 1)[-1]
        if name in self.result.queue_arns:
            policy["deadLetterTargetArn"] = self.result.queue_arns[name]
        return json.dumps(policy, separators=(",", ":"))

    def queue_arn(self, model_arn: str) -> str:
        return self.result.queue_arns.get(model_arn.rsplit(":", 1)[-1], model_arn)

    # -- SNS --

    # -- CloudWatch --

    def alarm(self, spec: AlarmSpec) -> None:
        props = dict(spec.properties)
        props["AlarmName"] = spec.name
        for key in ("EvaluationPeriods", "Period", "DatapointsToAlarm"):
            if key in props:
                props[key] = int(props[key])
        if "Threshold" in props:
            props["Threshold"] = float(props["Threshold"])
        if "ActionsEnabled" in props:
            props["ActionsEnabled"] = _truthy(props["ActionsEnabled"])
        for metric in props.get("Metrics") or []:
            if "Period" in metric:
                metric["Period"] = int(metric["Period"])
            stat = metric.get("MetricStat")
            if stat and "Period" in stat:
                stat["Period"] = int(stat["Period"])
        with _resource(spec.logical_id, "CloudWatch alarm"):
            self.client("cloudwatch").put_metric_alarm(**props)

    # -- EventBridge --

    def event_bus(self, logical_id: str, name: str) -> None:
        # PutEvents to it is stored by moto (rules with event patterns are not emulated: see README).
        with _resource(logical_id, "event bus"):
            try:
                self.client("events").create_event_bus(Name=name)
            except ClientError as error:
                if error_code(error) != "ResourceAlreadyExistsException":
                    raise

    def topic(self, spec: TopicSpec) -> None:
        sns = self.client("sns")
        attributes = {"FifoTopic": "true"} if spec.topic_name.endswith(".fifo") else {}
        created: list[str] = []
        with _resource(spec.logical_id, "SNS topic"):
            topic_arn = sns.create_topic(Name=spec.topic_name, Attributes=attributes)["TopicArn"]
            for sub in spec.subscriptions:
                if sub.protocol == "lambda":  # delivered by local.event_sources (moto would need Docker)
                    continue
                if sub.protocol != "sqs":
                    self.result.skipped.append(
                        f"not subscribed: {spec.logical_id} {sub.protocol} {sub.endpoint} (not offline)"
                    )
                    continue
                sub_attributes = {}
                if sub.raw_message_delivery:
                    sub_attributes["RawMessageDelivery"] = "true"
                if sub.filter_policy:
                    sub_attributes["FilterPolicy"] = json.dumps(sub.filter_policy)
                answer = sns.subscribe(
                    TopicArn=topic_arn,
                    Protocol="sqs",
                    Endpoint=self.queue_arn(sub.endpoint),
                    Attributes=sub_attributes,
                    ReturnSubscriptionArn=True,
                )
                created.append(answer["SubscriptionArn"])
        self.result.topic_arns[spec.topic_name] = topic_arn
        self.result.subscription_arns[spec.topic_name] = created

    # -- Secrets Manager --

    def secret(self, logical_id: str, name: str, secret_string: str) -> None:
        secrets = self.client("secretsmanager")
        with _resource(logical_id, "secret"):
            try:
                arn = secrets.create_secret(Name=name, SecretString=secret_string)["ARN"]
            except ClientError as error:
                if error_code(error) != "ResourceExistsException":
                    raise
                current = secrets.get_secret_value(SecretId=name)
                if current.get("SecretString") != secret_string:
                    secrets.put_secret_value(SecretId=name, SecretString=secret_string)
                arn = current["ARN"]
        self.result.secret_arns[name] = arn

    # -- Step Functions --

    def state_machine(self, spec: StateMachineSpec) -> None:
        sfn = self.client("stepfunctions")
        role = spec.role_arn or f"arn:aws:iam::{self.model.account_id}:role/{spec.name}-role"
        common: dict[str, Any] = {
            "definition": spec.definition,
            "roleArn": role,
            "tracingConfiguration": {"enabled": spec.tracing},
        }
        if spec.logging:
            common["loggingConfiguration"] = _logging_configuration(spec.logging)
        with _resource(spec.logical_id, "state machine"):
            try:
                arn = sfn.create_state_machine(name=spec.name, type=spec.type, **common)["stateMachineArn"]
            except ClientError as error:
                if error_code(error) not in ("StateMachineAlreadyExists", "ConflictException"):
                    raise
                arn = self._state_machine_arn(spec.name)
                sfn.update_state_machine(stateMachineArn=arn, **common)
        self.result.state_machine_arns[spec.name] = arn

    def _state_machine_arn(self, name: str) -> str:
        pages = self.client("stepfunctions").get_paginator("list_state_machines").paginate()
        for page in pages:
            for machine in page["stateMachines"]:
                if machine["name"] == name:
                    return str(machine["stateMachineArn"])
        missing = {"Error": {"Code": "StateMachineDoesNotExist", "Message": name}}
        raise ClientError(missing, "ListStateMachines")  # type: ignore[arg-type]

    # -- schedules (the firing is local.schedules) --

    def schedule(self, spec: ScheduleSpec) -> None:
        if spec.kind == "events":
            self._events_rule(spec)
        else:
            self._scheduler_schedule(spec)
        self.result.schedules.append(spec.name)

    def _scheduler_schedule(self, spec: ScheduleSpec) -> None:
        scheduler = self.client("scheduler")
        target: dict[str, Any] = {
            "Arn": spec.target_arn,
            "RoleArn": f"arn:aws:iam::{self.model.account_id}:role/{spec.name}-scheduler-role",
        }
        if spec.input is not None:
            target["Input"] = spec.input
        request = {
            "Name": spec.name,
            "ScheduleExpression": spec.expression,
            "ScheduleExpressionTimezone": spec.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": target,
            "State": "ENABLED" if spec.enabled else "DISABLED",
        }
        with _resource(spec.logical_id, "schedule"):
            try:
                scheduler.create_schedule(**request)
            except ClientError as error:
                if error_code(error) != "ConflictException":
                    raise
                scheduler.update_schedule(**request)

    def _events_rule(self, spec: ScheduleSpec) -> None:
        events = self.client("events")
        rule, _, target_id = spec.name.partition("/")
        target: dict[str, Any] = {"Id": _target_id(target_id or "1"), "Arn": spec.target_arn}
        if spec.input is not None:
            target["Input"] = spec.input
        with _resource(spec.logical_id, "events rule"):
            events.put_rule(
                Name=rule,
                ScheduleExpression=spec.expression,
                State="ENABLED" if spec.enabled else "DISABLED",
            )
            events.put_targets(Rule=rule, Targets=[target])


def _dlq_first(queues: list[QueueSpec]) -> list[QueueSpec]:
    """Orders queues so every dead-letter queue exists before a queue whose RedrivePolicy names it."""
    by_name = {q.queue_name: q for q in queues}
    ordered: list[QueueSpec] = []
    placed: set[str] = set()

    def place(queue: QueueSpec, chain: tuple[str, ...]) -> None:
        if queue.queue_name in placed or queue.queue_name in chain:  # a redrive cycle: AWS would refuse too
            return
        policy = queue.attributes.get("RedrivePolicy")
        if policy:
            target = str(json.loads(policy).get("deadLetterTargetArn", "")).rsplit(":", 1)[-1]
            if target in by_name:
                place(by_name[target], (*chain, queue.queue_name))
        placed.add(queue.queue_name)
        ordered.append(queue)

    for queue in queues:
        place(queue, ())
    return ordered


def _table_request(spec: TableSpec) -> dict[str, Any]:
    """CloudFormation AWS::DynamoDB::Table properties -> the CreateTable request."""
    props = spec.properties
    billing = props.get("BillingMode") or ("PROVISIONED" if props.get("ProvisionedThroughput") else None)
    billing = billing or "PAY_PER_REQUEST"
    request: dict[str, Any] = {
        "TableName": spec.table_name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(props.get("ProvisionedThroughput"))
    gsis = []
    for gsi in props.get("GlobalSecondaryIndexes") or []:
        index = {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection") if k in gsi}
        if billing == "PROVISIONED":
            index["ProvisionedThroughput"] = _throughput(gsi.get("ProvisionedThroughput"))
        gsis.append(index)
    if gsis:
        request["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {k: lsi[k] for k in ("IndexName", "KeySchema", "Projection") if k in lsi}
        for lsi in props.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        request["LocalSecondaryIndexes"] = lsis
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse and _truthy(sse.get("SSEEnabled")):
        request["SSESpecification"] = {"Enabled": True}
    if props.get("Tags"):
        request["Tags"] = props["Tags"]
    if "DeletionProtectionEnabled" in props:
        request["DeletionProtectionEnabled"] = _truthy(props["DeletionProtectionEnabled"])
    return request


def _throughput(value: dict[str, Any] | None) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _logging_configuration(cfn: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's LoggingConfiguration (PascalCase) -> the Step Functions API's (camelCase)."""
    out: dict[str, Any] = {}
    if "Level" in cfn:
        out["level"] = cfn["Level"]
    if "IncludeExecutionData" in cfn:
        out["includeExecutionData"] = _truthy(cfn["IncludeExecutionData"])
    destinations = []
    for destination in cfn.get("Destinations") or []:
        group = (destination.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn")
        if group:
            destinations.append({"cloudWatchLogsLogGroup": {"logGroupArn": group}})
    if destinations:
        out["destinations"] = destinations
    return out


def _target_id(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "-", value)[:64]


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"
