"""provision(): every resource of a model is created in a stock moto server, idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.model import (
    LogGroupSpec,
    QueueSpec,
    ScheduleSpec,
    SecretSpec,
    StackModel,
    StateMachineSpec,
    SubscriptionSpec,
    TableSpec,
    TopicSpec,
)
from local.provision import ProvisionError, client, provision

REGION = "eu-west-1"
ACCOUNT = "123456789012"
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def _model(**kwargs: Any) -> StackModel:
    return StackModel(
        stack_name="pay",
        region=REGION,
        account_id=ACCOUNT,
        template_path=Path("t.yaml"),
        parameters={},
        **kwargs,
    )


def _queue(logical_id: str, name: str, **attributes: str) -> QueueSpec:
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
    return QueueSpec(logical_id, name, _arn("sqs", name), url, attributes)


def full_model() -> StackModel:
    table = TableSpec(
        "PaymentsTable",
        "payments",
        _arn("dynamodb", "table/payments"),
        {
            "TableName": "payments",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
                {"AttributeName": "created", "AttributeType": "N"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "byStatus",
                    "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "LocalSecondaryIndexes": [
                {
                    "IndexName": "byCreated",
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "created", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
    )
    # The main queue is listed before its DLQ: provisioning must create the DLQ first.
    redrive = json.dumps({"deadLetterTargetArn": _arn("sqs", "work-dlq"), "maxReceiveCount": 3})
    queues = [
        _queue("WorkQueue", "work", VisibilityTimeout="45", RedrivePolicy=redrive),
        _queue("WorkDlq", "work-dlq", MessageRetentionPeriod="1209600"),
        _queue("OrderedQueue", "ordered.fifo", FifoQueue="true", ContentBasedDeduplication="true"),
    ]
    topic = TopicSpec(
        "EventsTopic",
        "events",
        _arn("sns", "events"),
        [
            SubscriptionSpec(
                "sqs", _arn("sqs", "work"), raw_message_delivery=True, filter_policy={"kind": ["paid"]}
            ),
            SubscriptionSpec("lambda", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:notify"),
            SubscriptionSpec("email", "ops@example.com"),
        ],
    )
    machine = StateMachineSpec(
        "PaymentFlow",
        "payment-flow",
        _arn("states", "stateMachine:payment-flow"),
        "STANDARD",
        PASS_DEFINITION,
        f"arn:aws:iam::{ACCOUNT}:role/flow-role",
        tracing=True,
        logging={
            "Level": "ALL",
            "IncludeExecutionData": True,
            "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": _arn("logs", "log-group:/flow:*")}}],
        },
    )
    return _model(
        tables={"payments": table},
        queues={q.queue_name: q for q in queues},
        topics={"events": topic},
        secrets={
            "api-key": SecretSpec(
                "ApiKeySecret", "api-key", _arn("secretsmanager", "secret:api-key"), "s3cr3t"
            )
        },
        log_groups={"/flow": LogGroupSpec("FlowLogs", "/flow", retention_days=14)},
        state_machines={"payment-flow": machine},
        schedules={
            "nightly": ScheduleSpec("Nightly", "nightly", "cron(0 2 * * ? *)", machine.arn, '{"a": 1}'),
            "sweep": ScheduleSpec(
                "SweepRule", "sweep", "rate(5 minutes)", machine.arn, None, enabled=False, kind="events"
            ),
        },
    )


def test_provision_creates_every_resource(endpoint: str) -> None:
    result = provision(full_model(), endpoint)

    ddb = client("dynamodb", endpoint, REGION)
    table = ddb.describe_table(TableName="payments")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["byStatus"]
    assert [i["IndexName"] for i in table["LocalSecondaryIndexes"]] == ["byCreated"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ttl = ddb.describe_time_to_live(TableName="payments")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    assert result.table_arns["payments"] == table["TableArn"]

    sqs = client("sqs", endpoint, REGION)
    assert set(result.queue_urls) == {"work", "work-dlq", "ordered.fifo"}
    assert result.queue_urls["work"] == sqs.get_queue_url(QueueName="work")["QueueUrl"]
    assert result.queue_urls["work"].startswith(endpoint)  # the endpoint's URL, not the AWS-shaped one
    work = sqs.get_queue_attributes(QueueUrl=result.queue_urls["work"], AttributeNames=["All"])["Attributes"]
    assert work["VisibilityTimeout"] == "45"
    assert json.loads(work["RedrivePolicy"]) == {
        "deadLetterTargetArn": result.queue_arns["work-dlq"],
        "maxReceiveCount": 3,
    }
    fifo = sqs.get_queue_attributes(QueueUrl=result.queue_urls["ordered.fifo"], AttributeNames=["All"])
    assert fifo["Attributes"]["FifoQueue"] == "true"
    assert fifo["Attributes"]["ContentBasedDeduplication"] == "true"

    sns = client("sns", endpoint, REGION)
    subs = sns.list_subscriptions_by_topic(TopicArn=result.topic_arns["events"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", result.queue_arns["work"])]
    sub_attributes = sns.get_subscription_attributes(SubscriptionArn=subs[0]["SubscriptionArn"])["Attributes"]
    assert sub_attributes["RawMessageDelivery"] == "true"
    assert json.loads(sub_attributes["FilterPolicy"]) == {"kind": ["paid"]}
    assert result.skipped == ["not subscribed: EventsTopic email ops@example.com (not offline)"]

    secrets = client("secretsmanager", endpoint, REGION)
    assert secrets.get_secret_value(SecretId="api-key")["SecretString"] == "s3cr3t"

    logs = client("logs", endpoint, REGION)
    groups = logs.describe_log_groups(logGroupNamePrefix="/flow")["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [("/flow", 14)]

    sfn = client("stepfunctions", endpoint, REGION)
    described = sfn.describe_state_machine(stateMachineArn=result.state_machine_arns["payment-flow"])
    assert described["type"] == "STANDARD"
    assert json.loads(described["definition"]) == json.loads(PASS_DEFINITION)
    assert described["tracingConfiguration"] == {"enabled": True}
    assert described["loggingConfiguration"]["level"] == "ALL"

    scheduler = client("scheduler", endpoint, REGION)
    nightly = scheduler.get_schedule(Name="nightly")
    assert nightly["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert nightly["Target"]["Input"] == '{"a": 1}'
    assert nightly["State"] == "ENABLED"
    events = client("events", endpoint, REGION)
    rule = events.describe_rule(Name="sweep")
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(5 minutes)", "DISABLED")
    targets = events.list_targets_by_rule(Rule="sweep")["Targets"]
    assert [t["Arn"] for t in targets] == [result.state_machine_arns["payment-flow"]]


def test_raw_filtered_subscription_delivers_to_queue(endpoint: str) -> None:
    result = provision(full_model(), endpoint)
    sns = client("sns", endpoint, REGION)
    sqs = client("sqs", endpoint, REGION)
    topic = result.topic_arns["events"]
    sns.publish(TopicArn=topic, Message="ignored", MessageAttributes=_kind("refunded"))
    sns.publish(TopicArn=topic, Message="hello", MessageAttributes=_kind("paid"))
    got = sqs.receive_message(QueueUrl=result.queue_urls["work"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [m["Body"] for m in got["Messages"]] == ["hello"]  # raw body, filtered by the policy


def _kind(value: str) -> dict[str, Any]:
    return {"kind": {"DataType": "String", "StringValue": value}}


def test_provision_twice_is_idempotent(endpoint: str) -> None:
    first = provision(full_model(), endpoint)
    model = full_model()
    model.secrets["api-key"].secret_string = "rotated"
    second = provision(model, endpoint)
    assert second.queue_urls == first.queue_urls
    assert second.state_machine_arns == first.state_machine_arns
    assert second.topic_arns == first.topic_arns
    secrets = client("secretsmanager", endpoint, REGION)
    assert secrets.get_secret_value(SecretId="api-key")["SecretString"] == "rotated"
    sns = client("sns", endpoint, REGION)
    assert len(sns.list_subscriptions_by_topic(TopicArn=first.topic_arns["events"])["Subscriptions"]) == 1
    assert len(client("scheduler", endpoint, REGION).list_schedules()["Schedules"]) == 1


def test_refused_resource_is_one_line_naming_the_logical_id(endpoint: str) -> None:
    bad = TableSpec(
        "BrokenTable",
        "broken",
        _arn("dynamodb", "table/broken"),
        {  # the key attribute is not defined: DynamoDB (and moto) refuse it
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "other", "AttributeType": "S"}],
        },
    )
    with pytest.raises(ProvisionError) as caught:
        provision(_model(tables={"broken": bad}), endpoint)
    message = str(caught.value)
    assert message.startswith("cannot create DynamoDB table BrokenTable: ")
    assert "\n" not in message


def test_missing_required_property_names_the_logical_id(endpoint: str) -> None:
    keyless = TableSpec(
        "KeylessTable", "keyless", _arn("dynamodb", "table/keyless"), {"BillingMode": "PROVISIONED"}
    )
    with pytest.raises(
        ProvisionError, match=r"^cannot create DynamoDB table KeylessTable: missing property 'KeySchema'$"
    ):
        provision(_model(tables={"keyless": keyless}), endpoint)


def test_custom_event_bus_is_created_and_receives_events(endpoint: str) -> None:
    model = _model(event_buses={"payeasy-events": "PaymentEventsBus"})
    provision(model, endpoint)
    provision(model, endpoint)  # idempotent
    events = client("events", endpoint, REGION)
    names = [bus["Name"] for bus in events.list_event_buses()["EventBuses"]]
    assert "payeasy-events" in names
    answer = events.put_events(
        Entries=[{"EventBusName": "payeasy-events", "Source": "t", "DetailType": "d", "Detail": "{}"}]
    )
    assert answer["FailedEntryCount"] == 0


def test_event_bus_in_a_template_resolves_ref_and_arn(tmp_path: Path) -> None:
    from local.template_loader import load_stack

    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Bus:\n    Type: AWS::Events::EventBus\n    Properties:\n      Name: payeasy-events\n"
        "  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n"
        "      Tags: [{Key: bus, Value: !Ref Bus}, {Key: arn, Value: !GetAtt Bus.Arn}]\n"
    )
    model = load_stack(template, region=REGION, account_id=ACCOUNT)
    assert model.event_buses == {"payeasy-events": "Bus"}
    assert not model.unsupported


def test_alarms_and_dashboards_of_a_template_are_created(endpoint: str, tmp_path: Path) -> None:
    from local.template_loader import load_stack

    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Alerts:\n    Type: AWS::SNS::Topic\n"
        "  Dlq:\n    Type: AWS::SQS::Queue\n"
        "  DlqDepth:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n"
        "      AlarmDescription: messages in the DLQ\n"
        "      Namespace: AWS/SQS\n      MetricName: ApproximateNumberOfMessagesVisible\n"
        "      Dimensions: [{Name: QueueName, Value: !GetAtt Dlq.QueueName}]\n"
        "      Statistic: Maximum\n      Period: 60\n      EvaluationPeriods: 1\n      Threshold: 0\n"
        "      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n"
        "      AlarmActions: [!Ref Alerts]\n"
        "  Board:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n"
        "      DashboardName: payeasy-board\n"
        "      DashboardBody: !Sub '{\"widgets\": [{\"type\": \"text\",\n"
        "        \"properties\": {\"markdown\": \"${Dlq}\"}}]}'\n"
    )
    model = load_stack(template, region=REGION, account_id=ACCOUNT, stack_name="pay")
    assert not model.unsupported
    provision(model, endpoint)
    cloudwatch = client("cloudwatch", endpoint, REGION)
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=["pay-DlqDepth"])["MetricAlarms"]
    assert alarm["Period"] == 60 and alarm["Threshold"] == 0.0
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "pay-Dlq"}]
    assert alarm["AlarmActions"] == [_arn("sns", "pay-Alerts")]
    body = json.loads(cloudwatch.get_dashboard(DashboardName="payeasy-board")["DashboardBody"])
    assert body["widgets"][0]["properties"]["markdown"].endswith("/pay-Dlq")
