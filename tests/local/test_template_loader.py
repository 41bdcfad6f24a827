import json
from pathlib import Path

import pytest

from local.intrinsics import IntrinsicResolver, ResourceTable, TemplateError, Unresolvable
from local.model import StackModel
from local.template_loader import load_stack, translate_template

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
FULL = TEMPLATES / "full" / "template.yaml"
ACCOUNT = "123456789012"
PREFIX = "arn:aws:lambda:us-east-1:123456789012:function:"


@pytest.fixture(scope="module")
def stack() -> StackModel:
    return load_stack(FULL)


@pytest.fixture(scope="module")
def prod_stack() -> StackModel:
    return load_stack(FULL, parameter_overrides={"Stage": "prod"}, stack_name="pay", region="eu-west-1")


def test_stack_name_comes_from_samconfig_and_parameters_from_defaults(stack):
    assert stack.stack_name == "loader-fixture"
    assert stack.region == "us-east-1"
    assert stack.account_id == ACCOUNT
    assert stack.template_path == FULL.resolve()
    assert stack.parameters == {"Stage": "dev", "CreateAudit": "false", "LogLevel": "INFO"}


def test_functions_from_translated_template_with_globals_layers_and_defaults(stack):
    assert sorted(stack.functions) == [
        "loader-fixture-HourlyFunction",
        "loader-fixture-WorkerFunction",
        "loader-fixture-api",
    ]
    api = stack.functions["loader-fixture-api"]
    assert api.logical_id == "ApiFunction"
    assert api.arn == PREFIX + "loader-fixture-api"
    assert api.handler == "app.api_handler"
    assert api.code_dir == (FULL.parent / "src").resolve()
    assert api.runtime == "python3.13"
    assert (api.timeout, api.memory_size, api.reserved_concurrency, api.tracing) == (10, 256, 2, True)
    assert api.layer_dirs == [(FULL.parent / "layer").resolve()]
    assert api.environment == {
        "STAGE": "dev",
        "LOG_LEVEL": "INFO",
        "TABLE_NAME": "loader-fixture-PaymentsTable",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/loader-fixture-WorkQueue",
        "SECRET_ARN": stack.secrets["loader-fixture-ApiSecret"].arn,
        "FLOW_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:loader-fixture-PaymentFlow",
    }
    worker = stack.functions["loader-fixture-WorkerFunction"]
    assert (worker.timeout, worker.memory_size, worker.reserved_concurrency) == (30, 128, None)
    assert worker.log_level == "DEBUG"
    assert worker.layer_dirs == []
    assert stack.function_by_arn_or_name(worker.arn + ":$LATEST") is worker


def test_state_machine_from_definition_uri_with_substitutions(stack):
    flow = stack.state_machines["loader-fixture-PaymentFlow"]
    assert flow.arn == "arn:aws:states:us-east-1:123456789012:stateMachine:loader-fixture-PaymentFlow"
    assert flow.type == "EXPRESS"
    assert flow.tracing is True
    assert flow.role_arn == "arn:aws:iam::123456789012:role/loader-fixture-PaymentFlowRole"
    states = json.loads(flow.definition)["States"]
    assert states["Work"]["Parameters"]["FunctionName"] == PREFIX + "loader-fixture-WorkerFunction"
    assert states["Save"]["Parameters"]["TableName"] == "loader-fixture-PaymentsTable"


def test_table_queue_and_dlq_redrive(stack):
    table = stack.tables["loader-fixture-PaymentsTable"]
    assert table.arn == "arn:aws:dynamodb:us-east-1:123456789012:table/loader-fixture-PaymentsTable"
    assert table.properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table.properties["TableName"] == "loader-fixture-PaymentsTable"
    work = stack.queues["loader-fixture-WorkQueue"]
    assert work.arn == "arn:aws:sqs:us-east-1:123456789012:loader-fixture-WorkQueue"
    assert work.url == "https://sqs.us-east-1.amazonaws.com/123456789012/loader-fixture-WorkQueue"
    assert work.attributes == {
        "VisibilityTimeout": "60",
        "RedrivePolicy": '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:loader-fixture-dlq",'
        '"maxReceiveCount":3}',
    }
    assert stack.queues["loader-fixture-dlq"].attributes == {"MessageRetentionPeriod": "1209600"}


def test_topic_with_sqs_subscription(stack):
    topic = stack.topics["loader-fixture-EventsTopic"]
    assert topic.arn == "arn:aws:sns:us-east-1:123456789012:loader-fixture-EventsTopic"
    assert len(topic.subscriptions) == 1
    sub = topic.subscriptions[0]
    assert (sub.protocol, sub.endpoint) == ("sqs", stack.queues["loader-fixture-WorkQueue"].arn)
    assert sub.raw_message_delivery is True
    assert sub.filter_policy == {"kind": ["payment"]}


def test_secrets_generated_once_and_deterministic(stack):
    generated = stack.secrets["loader-fixture-ApiSecret"]
    assert generated.arn.startswith(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:loader-fixture-ApiSecret-"
    )
    assert len(generated.arn.rsplit("-", 1)[1]) == 6
    document = json.loads(generated.secret_string)
    assert document["username"] == "svc"
    assert len(document["password"]) == 20 and document["password"].isalnum()
    again = load_stack(FULL)
    assert again.secrets["loader-fixture-ApiSecret"].secret_string == generated.secret_string
    static = stack.secrets["static/secret"]
    assert static.secret_string == '{"token": "abc"}'


def test_log_group_uses_find_in_map(stack, prod_stack):
    assert stack.log_groups["/app/dev"].retention_days == 7
    assert prod_stack.log_groups["/app/prod"].retention_days == 30


def test_schedules_from_schedule_and_schedule_v2_events(stack):
    nightly = stack.schedules["PaymentFlowNightly"]
    assert (nightly.kind, nightly.expression, nightly.enabled) == ("scheduler", "rate(1 day)", True)
    assert nightly.target_arn == stack.state_machines["loader-fixture-PaymentFlow"].arn
    assert nightly.input == '{"source": "schedule"}'
    hourly = stack.schedules["loader-fixture-HourlyFunctionHourly"]
    assert (hourly.kind, hourly.expression) == ("events", "cron(0 * * * ? *)")
    assert hourly.target_arn == PREFIX + "loader-fixture-HourlyFunction"
    assert hourly.input == '{"hourly": true}'


def test_sqs_event_source_mapping(stack):
    (mapping,) = stack.event_source_mappings
    assert mapping.function_name == "loader-fixture-WorkerFunction"
    assert mapping.event_source_arn == stack.queues["loader-fixture-WorkQueue"].arn
    assert (mapping.batch_size, mapping.maximum_batching_window_seconds, mapping.maximum_concurrency) == (
        5,
        2,
        4,
    )
    assert mapping.report_batch_item_failures is True
    assert mapping.enabled is True


def test_rest_api_routes_stage_and_api_keys(stack):
    api = stack.apis["ServerlessRestApi"]
    assert api.stage_name == "Prod"
    assert len(api.rest_api_id) == 10
    routes = {(r.method, r.path): r for r in api.routes}
    assert set(routes) == {("GET", "/payments/{id}"), ("POST", "/payments")}
    assert routes["GET", "/payments/{id}"].function_name == "loader-fixture-api"
    assert routes["GET", "/payments/{id}"].api_key_required is False
    assert routes["POST", "/payments"].api_key_required is True
    (key,) = api.api_keys
    assert (key.logical_id, key.value, key.enabled) == ("ApiKey", "local-test-key-0123456789", True)
    assert stack.outputs["ApiUrl"] == f"https://{api.rest_api_id}.execute-api.us-east-1.amazonaws.com/Prod/"


def test_outputs_resolved(stack):
    assert stack.outputs == {
        "ApiUrl": stack.outputs["ApiUrl"],
        "FlowArn": "arn:aws:states:us-east-1:123456789012:stateMachine:loader-fixture-PaymentFlow",
        "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/loader-fixture-WorkQueue",
        "Zones": "us-east-1a,us-east-1b,us-east-1c",
        "FirstPart": "b",
        "Encoded": "aGk=",
    }


def test_conditions_drop_resources_and_unsupported_types_are_reported(stack):
    assert [u.line() for u in stack.unsupported] == [
        "not emulated: Notifier (AWS::Kinesis::Stream): resource type not emulated"
    ]
    assert "loader-fixture-ProdOnlyQueue" not in stack.queues


def test_parameter_override_flips_conditions(prod_stack):
    assert prod_stack.parameters["Stage"] == "prod"
    assert "pay-ProdOnlyQueue" in prod_stack.queues
    assert (
        prod_stack.outputs["ProdQueue"]
        == "https://sqs.eu-west-1.amazonaws.com/123456789012/pay-ProdOnlyQueue"
    )
    assert prod_stack.outputs["StageOrDefault"] == "production"
    assert prod_stack.functions["pay-api"].environment["STAGE"] == "prod"


def test_condition_with_and_not_creates_unsupported_bucket():
    model = load_stack(FULL, parameter_overrides={"CreateAudit": "true"})
    assert "not emulated: AuditBucket (AWS::S3::Bucket): resource type not emulated" in [
        u.line() for u in model.unsupported
    ]


def test_translate_template_returns_cloudformation():
    template = translate_template(FULL)
    resources = template["Resources"]
    assert resources["ApiFunction"]["Type"] == "AWS::Lambda::Function"
    assert resources["PaymentFlow"]["Type"] == "AWS::StepFunctions::StateMachine"
    assert "Transform" not in template


# -- errors --


@pytest.mark.parametrize(
    ("path", "overrides", "message"),
    [
        (TEMPLATES / "nope.yaml", None, "template not found: "),
        (TEMPLATES / "bad_yaml.yaml", None, "bad_yaml.yaml: invalid YAML at line 6, column 1: expected ','"),
        (
            TEMPLATES / "missing_parameter.yaml",
            None,
            "parameter ApiToken has no Default: pass it with --parameter-overrides ApiToken=...",
        ),
        (
            TEMPLATES / "bad_transform.yaml",
            None,
            "bad_transform.yaml: SAM transform failed: Resource with id [Fn] is invalid. "
            "Event with id [Broken] is invalid. Property 'Path' is required.",
        ),
        (FULL, {"Stage": "qa"}, "parameter Stage='qa' is not one of its AllowedValues: dev, prod"),
        (FULL, {"Nope": "1"}, "parameter override for undeclared parameter(s): Nope"),
    ],
)
def test_clear_one_line_errors(path, overrides, message):
    with pytest.raises(TemplateError) as caught:
        load_stack(path, parameter_overrides=overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_import_value_and_unemulated_properties_are_reported(tmp_path):
    (tmp_path / "src").mkdir()
    path = _write(
        tmp_path,
        """
Transform: AWS::Serverless-2016-10-31
Resources:
  Imported:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !ImportValue other-stack-queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Runtime: python3.13
      CodeUri: src/
      VpcConfig: {SubnetIds: [subnet-1], SecurityGroupIds: [sg-1]}
  NodeFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Runtime: nodejs22.x
      CodeUri: src/
  Fifo:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
""",
    )
    model = load_stack(path)
    lines = [u.line() for u in model.unsupported]
    assert (
        "not emulated: Imported (AWS::SQS::Queue): skipped: Fn::ImportValue 'other-stack-queue' needs "
        "another deployed stack" in lines
    )
    assert "not emulated: Fn (AWS::Lambda::Function): property VpcConfig is ignored" in lines
    assert (
        "not emulated: NodeFn (AWS::Lambda::Function): skipped: runtime nodejs22.x is not a Python runtime"
        in lines
    )
    assert list(model.functions) == ["sam-app-Fn"]
    assert list(model.queues) == ["sam-app-Fifo.fifo"]
    assert model.queues["sam-app-Fifo.fifo"].attributes == {"FifoQueue": "true"}


# -- intrinsics --


def _resolver(resources: dict | None = None, stack_name: str = "s") -> IntrinsicResolver:
    table = ResourceTable(resources or {}, stack_name=stack_name, region="us-east-1", account_id=ACCOUNT)
    resolver = IntrinsicResolver(
        parameters={
            "Env": "dev",
            "Subnets": ["a", "b"],
            "AWS::Region": "us-east-1",
            "AWS::AccountId": ACCOUNT,
        },
        region="us-east-1",
        mappings={"M": {"dev": {"Size": 3}}},
        conditions={"IsDev": {"Fn::Equals": [{"Ref": "Env"}, "dev"]}},
        ref=table.ref,
        getatt=table.getatt,
    )
    table.resolver = resolver
    return resolver


def test_sub_forms_literal_escape_and_no_value_removal():
    r = _resolver({"Q": {"Type": "AWS::SQS::Queue"}})
    assert (
        r.resolve({"Fn::Sub": "${Env}-${AWS::Region}-${!Literal}-${Q.QueueName}"})
        == "dev-us-east-1-${Literal}-s-Q"
    )
    assert r.resolve({"Fn::Sub": ["${A}/${Env}", {"A": {"Ref": "Q"}}]}) == (
        "https://sqs.us-east-1.amazonaws.com/123456789012/s-Q/dev"
    )
    assert r.resolve(["x", {"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, "y"]}]) == ["x"]
    assert r.resolve({"K": {"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, 1]}, "L": 2}) == {"L": 2}
    assert r.resolve({"Fn::FindInMap": ["M", {"Ref": "Env"}, "Size"]}) == 3
    assert r.resolve({"Fn::Join": ["|", {"Ref": "Subnets"}]}) == "a|b"
    assert r.resolve({"Fn::Select": ["1", {"Ref": "Subnets"}]}) == "b"
    assert r.resolve({"Fn::ToJsonString": {"a": [1, {"Ref": "Env"}]}}) == '{"a":[1,"dev"]}'
    assert r.resolve({"Fn::Length": {"Ref": "Subnets"}}) == 2
    assert r.resolve({"Fn::GetAZs": ""}) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert r.resolve({"Fn::Base64": {"Fn::Sub": "${Env}"}}) == "ZGV2"
    with pytest.raises(TemplateError, match="intrinsic function Fn::Nope is not supported"):
        r.resolve({"Fn::Nope": 1})
    with pytest.raises(Unresolvable, match=r"Fn::Transform .* is not run offline"):
        r.resolve({"Fn::Transform": {"Name": "AWS::Include"}})


def test_getatt_errors_and_unresolvable_types():
    r = _resolver({"T": {"Type": "AWS::DynamoDB::Table"}, "K": {"Type": "AWS::Kinesis::Stream"}})
    with pytest.raises(TemplateError, match=r"Fn::GetAtt T.StreamArn: AWS::DynamoDB::Table has no attribute"):
        r.resolve({"Fn::GetAtt": ["T", "StreamArn"]})
    with pytest.raises(Unresolvable, match="AWS::Kinesis::Stream is not emulated"):
        r.resolve({"Fn::GetAtt": "K.Arn"})
    with pytest.raises(TemplateError, match="'Missing' is not a resource of the template"):
        r.resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="condition 'Nope' is not defined"):
        r.resolve({"Fn::If": ["Nope", 1, 2]})


def test_default_arns_and_refs_per_type():
    resources = {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"Path": "/svc/"}},
        "Logs": {"Type": "AWS::Logs::LogGroup"},
        "Rule": {"Type": "AWS::Events::Rule"},
        "Sched": {"Type": "AWS::Scheduler::Schedule"},
        "Layer": {"Type": "AWS::Lambda::LayerVersion"},
        "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"StageName": "v1"}},
    }
    r = _resolver(resources)
    assert r.resolve({"Fn::GetAtt": ["Role", "Arn"]}) == "arn:aws:iam::123456789012:role/svc/s-Role"
    assert r.resolve({"Ref": "Role"}) == "s-Role"
    assert (
        r.resolve({"Fn::GetAtt": ["Logs", "Arn"]}) == "arn:aws:logs:us-east-1:123456789012:log-group:s-Logs:*"
    )
    assert r.resolve({"Fn::GetAtt": ["Rule", "Arn"]}) == "arn:aws:events:us-east-1:123456789012:rule/s-Rule"
    assert r.resolve({"Fn::GetAtt": ["Sched", "Arn"]}) == (
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/s-Sched"
    )
    assert r.resolve({"Ref": "Layer"}) == "arn:aws:lambda:us-east-1:123456789012:layer:s-Layer:1"
    assert r.resolve({"Ref": "Stage"}) == "v1"


def test_generated_names_respect_length_limits_deterministically():
    long_stack = "a-very-long-stack-name-used-for-testing-limits"
    resources = {"AnExtremelyLongLogicalIdForAFunction": {"Type": "AWS::Lambda::Function"}}
    table = ResourceTable(resources, stack_name=long_stack, region="us-east-1", account_id=ACCOUNT)
    name = table.physical_name("AnExtremelyLongLogicalIdForAFunction")
    assert len(name) == 64
    assert name.startswith(long_stack)
    again = ResourceTable(resources, stack_name=long_stack, region="us-east-1", account_id=ACCOUNT)
    assert again.physical_name("AnExtremelyLongLogicalIdForAFunction") == name


# -- explicit API with an OpenAPI file --

API = TEMPLATES / "api" / "template.yaml"


def test_explicit_api_with_local_openapi_usage_plan_and_binary_types():
    model = load_stack(API)
    api = model.apis["PublicApi"]
    assert (api.stage_name, api.tracing, api.binary_media_types) == ("v1", True, ["image/png"])
    assert sorted((r.method, r.path, r.function_name, r.api_key_required) for r in api.routes) == [
        ("ANY", "/items/{proxy+}", "sam-app-Handler", True),
        ("GET", "/health", "sam-app-Handler", False),
        ("POST", "/orders", "sam-app-Handler", True),
    ]
    (key,) = api.api_keys
    assert key.logical_id == "PublicApiApiKey"
    assert key.enabled is True
    assert len(key.value) == 40 and key.value.isalnum()
    assert load_stack(API).apis["PublicApi"].api_keys[0].value == key.value  # generated, but stable
    assert [u.line() for u in model.unsupported] == [
        "not emulated: Handler (AWS::Lambda::Function): layer arn:aws:lambda:us-east-1:017000801446:layer:"
        "AWSLambdaPowertoolsPythonV3-python313-x86_64:7 is not a local layer of this template; ignored",
        "not emulated: Inline (AWS::Lambda::Function): skipped: inline code (ZipFile/InlineCode) is not run "
        "locally",
        "not emulated: PublicApi (AWS::ApiGateway::RestApi): route GET /static: only Lambda proxy "
        "integrations are served",
        "not emulated: PublicApi (AWS::ApiGateway::RestApi): route POST /orders: authorizer CognitoAuth not "
        "enforced",
    ]


def test_inline_and_sns_event_subscriptions():
    model = load_stack(API)
    topic = model.topics["alerts"]
    assert [(s.protocol, s.endpoint) for s in topic.subscriptions] == [
        ("email", "ops@example.com"),
        ("lambda", "arn:aws:lambda:us-east-1:123456789012:function:sam-app-Handler"),
    ]
    assert model.functions["sam-app-Handler"].runtime == "python3.12"


def test_plain_cloudformation_without_transform(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "flow.yaml").write_text(
        "StartAt: A\nStates:\n  A: {Type: Pass, Result: '${Greeting}', End: true}\n"
    )
    path = _write(
        tmp_path,
        r"""
Parameters:
  Names: {Type: CommaDelimitedList, Default: "one,two"}
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Code: code
      Handler: app.handler
      Runtime: python3.13
      Role: arn:aws:iam::123456789012:role/x
  Flow:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      StateMachineName: !Select [0, !Ref Names]
      DefinitionS3Location: flow.yaml
      DefinitionSubstitutions: {Greeting: !Sub "hello ${AWS::AccountId}"}
      RoleArn: arn:aws:iam::123456789012:role/x
  Rest:
    Type: AWS::ApiGateway::RestApi
    Properties:
      Body:
        swagger: "2.0"
        paths:
          /:
            get:
              x-amazon-apigateway-integration:
                type: aws_proxy
                uri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/\
                  invocations"
  Live:
    Type: AWS::ApiGateway::Stage
    Properties: {RestApiId: !Ref Rest, StageName: live}
  Key:
    Type: AWS::ApiGateway::ApiKey
    Properties:
      Value: kkkkkkkkkkkkkkkkkkkk
      StageKeys: [{RestApiId: !Ref Rest, StageName: !Ref Live}]
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [app]}
      Targets: [{Arn: !GetAtt Fn.Arn, Id: fn}]
""",
    )
    model = load_stack(path, stack_name="cfn", account_id="111122223333")
    fn = model.functions["cfn-Fn"]
    assert (fn.code_dir, fn.timeout, fn.memory_size) == ((tmp_path / "code").resolve(), 3, 128)
    flow = model.state_machines["one"]
    assert json.loads(flow.definition) == {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Result": "hello 111122223333", "End": True}},
    }
    assert flow.type == "STANDARD"
    assert model.parameters == {"Names": "one,two"}
    assert [u.line() for u in model.unsupported] == [
        "not emulated: Rule (AWS::Events::Rule): skipped: only schedule rules are emulated, not event "
        "patterns"
    ]
    api = model.apis["Rest"]
    assert api.stage_name == "live"
    assert [(r.method, r.path, r.function_name, r.api_key_required) for r in api.routes] == [
        ("GET", "/", "cfn-Fn", False)
    ]
    (key,) = api.api_keys
    assert (key.logical_id, key.enabled, key.value) == ("Key", False, "k" * 20)  # CloudFormation: disabled


def test_ssm_parameter_needs_override(tmp_path):
    path = _write(
        tmp_path,
        """
Parameters:
  Vpc: {Type: "AWS::SSM::Parameter::Value<String>", Default: /infra/vpc}
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Ref Vpc}}
""",
    )
    with pytest.raises(
        TemplateError, match=r"parameter Vpc reads SSM parameter '/infra/vpc', unavailable offline"
    ):
        load_stack(path)
    assert list(load_stack(path, parameter_overrides={"Vpc": "vpc-1"}).queues) == ["vpc-1"]


# The lead's end-to-end fixture (read, never edited here): the runtime relies on every value below.
E2E = Path(__file__).parent / "fixtures" / "stack" / "template.yaml"


def test_end_to_end_fixture_stack_loads_fully():
    model = load_stack(E2E)
    base = E2E.parent.resolve()
    assert model.unsupported == []
    assert sorted(f.logical_id for f in model.functions.values()) == [
        "ApiFunction",
        "LimitedFunction",
        "SlowFunction",
        "StepFunction",
        "WorkerFunction",
    ]
    api_fn = model.functions["sam-app-ApiFunction"]
    assert api_fn.layer_dirs == [base / "layers" / "shared"]
    assert api_fn.code_dir == base / "functions" / "api"
    assert (api_fn.timeout, api_fn.memory_size, api_fn.tracing) == (5, 256, True)
    assert api_fn.environment == {
        "TABLE_NAME": "sam-app-OrdersTable",
        "GREETING": "hello",
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:sam-app-ExpressMachine",
    }
    assert model.functions["sam-app-SlowFunction"].timeout == 1
    assert model.functions["sam-app-LimitedFunction"].reserved_concurrency == 1

    express = model.state_machines["sam-app-ExpressMachine"]
    assert (express.type, express.tracing) == ("EXPRESS", True)
    assert "${" not in express.definition
    assert json.loads(express.definition)["States"]["Validate"]["Resource"] == PREFIX + "sam-app-StepFunction"
    nightly = json.loads(model.state_machines["sam-app-NightlyMachine"].definition)
    assert nightly["States"]["RunChild"]["Parameters"]["StateMachineArn"] == express.arn
    tick = model.state_machines["sam-app-TickMachine"]
    assert json.loads(tick.definition) == {
        "StartAt": "Tick",
        "States": {"Tick": {"Type": "Pass", "End": True}},
    }

    (schedule,) = model.schedules.values()
    assert (schedule.name, schedule.expression, schedule.target_arn, schedule.input, schedule.kind) == (
        "TickMachineEveryFiveMinutes",
        "rate(5 minutes)",
        tick.arn,
        '{"source": "schedule"}',
        "scheduler",
    )
    (mapping,) = model.event_source_mappings
    assert (mapping.function_name, mapping.event_source_arn, mapping.batch_size) == (
        "sam-app-WorkerFunction",
        "arn:aws:sqs:us-east-1:123456789012:sam-app-WorkQueue",
        5,
    )
    assert mapping.report_batch_item_failures is True
    assert sorted(model.queues) == ["sam-app-EventsQueue", "sam-app-WorkDLQ", "sam-app-WorkQueue"]
    assert json.loads(model.queues["sam-app-WorkQueue"].attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:sam-app-WorkDLQ",
        "maxReceiveCount": 2,
    }
    assert [s.endpoint for s in model.topics["sam-app-EventsTopic"].subscriptions] == [
        model.queues["sam-app-EventsQueue"].arn
    ]

    api = model.apis["OrdersApi"]
    assert (api.stage_name, api.tracing) == ("dev", True)
    assert {(r.method, r.path, r.api_key_required) for r in api.routes} == {
        ("POST", "/orders", True),
        ("GET", "/orders/{id}", True),
        ("GET", "/health", False),
    }
    assert [(k.name, k.value, k.enabled) for k in api.api_keys] == [
        ("fixture-key", "fixture-key-0123456789abcdef", True)
    ]
    assert model.outputs == {"ApiUrl": f"https://{api.rest_api_id}.execute-api.us-east-1.amazonaws.com/dev/"}


def test_end_to_end_fixture_prod_condition_adds_queue_and_moves_the_stage():
    model = load_stack(E2E, parameter_overrides={"Stage": "prod"})
    assert "sam-app-ProdOnlyQueue" in model.queues
    api = model.apis["OrdersApi"]
    # The usage plan follows the stage parameter, so the key stays attached.
    assert api.stage_name == "prod" and [k.value for k in api.api_keys] == ["fixture-key-0123456789abcdef"]


def test_parameter_driven_flags_and_numbers_are_typed(tmp_path):
    # Parameters are text: "false" and "3" must become a bool and an int in the model.
    path = _write(
        tmp_path,
        """
Parameters:
  Trace: {Type: String, Default: "false"}
  Concurrency: {Type: Number, Default: 3}
Resources:
  Q: {Type: AWS::SQS::Queue}
  Flow:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionString: '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'
      RoleArn: arn:aws:iam::123456789012:role/x
      TracingConfiguration: {Enabled: !Ref Trace}
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt Q.Arn
      FunctionName: some-function
      ScalingConfig: {MaximumConcurrency: !Ref Concurrency}
""",
    )
    model = load_stack(path, stack_name="typed")
    assert model.state_machines["typed-Flow"].tracing is False
    (mapping,) = model.event_source_mappings
    assert (mapping.function_name, mapping.maximum_concurrency) == ("some-function", 3)
