"""Load a SAM template as AWS would see it, offline, into a ``StackModel``.

Understood:
- YAML/JSON with CloudFormation short-form tags; the SAM transform (samtranslator, bundled managed-policy
  map, Globals) with local CodeUri / ContentUri / DefinitionUri (rewritten to fake S3 locations for the
  transform and mapped back to absolute local paths afterwards; a local Api DefinitionUri is inlined).
- Parameters (Default, overrides, AllowedValues, AllowedPattern, Number bounds, CommaDelimitedList), pseudo
  parameters, Conditions (resource-level, Outputs and Fn::If), Mappings, Ref / GetAtt / Sub / Join / Select /
  Split / FindInMap / GetAZs / Base64, with deterministic physical names ("<stack>-<LogicalId>") and
  AWS-shaped ARNs and ids.
- Lambda functions (zip, Python runtimes, local layers), Step Functions state machines, DynamoDB tables,
  SQS queues, SNS topics and subscriptions, Secrets Manager secrets, log groups, Scheduler schedules and
  Events rules with a ScheduleExpression, SQS event source mappings, REST APIs with Lambda proxy routes,
  stages, API keys and usage plans. Outputs.
Not understood (each reported as one ``Unsupported`` line, never silently dropped): other resource types,
image or inline-code functions, non-Python runtimes, layers that are not in the template, VpcConfig and
similar Lambda properties, non-SQS event sources, event-pattern rules, API integrations other than Lambda
proxy, authorizers, Fn::ImportValue (the resource needing it is skipped), SSM parameter types without an
override.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local.intrinsics import (
    NO_VALUE,
    IntrinsicResolver,
    ResourceTable,
    TemplateError,
    Unresolvable,
    scalar_text,
    stable_token,
)
from local.model import (
    AlarmSpec,
    ApiKeySpec,
    ApiSpec,
    EventSourceMappingSpec,
    FunctionSpec,
    LogGroupSpec,
    QueueSpec,
    RouteSpec,
    ScheduleSpec,
    SecretSpec,
    StackModel,
    StateMachineSpec,
    SubscriptionSpec,
    TableSpec,
    TopicSpec,
    Unsupported,
)

__all__ = ["TemplateError", "load_stack", "read_template", "translate_template"]

# Fake bucket the local artifact paths are parked in while samtranslator runs (it only accepts S3 locations).
LOCAL_BUCKET = "local-artifacts.invalid"

# Resource types that need no emulation: accepted without a word.
SILENTLY_SKIPPED_TYPES = frozenset(
    {
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::IAM::InstanceProfile",
        "AWS::Lambda::Permission",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::LayerVersionPermission",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::Account",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::CloudWatch::CompositeAlarm",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::Events::Rule",  # schedule rules become ScheduleSpecs; pattern rules are reported there
        "AWS::Scheduler::ScheduleGroup",
        "AWS::SecretsManager::ResourcePolicy",
        "AWS::CloudFormation::WaitConditionHandle",
        "AWS::XRay::SamplingRule",
        "AWS::XRay::Group",
    }
)

# Lambda properties the runtime does not emulate: reported, the function still runs without them.
_UNEMULATED_FUNCTION_PROPERTIES = (
    "VpcConfig",
    "FileSystemConfigs",
    "DeadLetterConfig",
    "ImageConfig",
    "CodeSigningConfigArn",
    "KmsKeyArn",
    "EphemeralStorage",
    "RuntimeManagementConfig",
)

_SQS_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
)

_STAGE = "AWS::ApiGateway::Stage"


def _py_version(runtime: str) -> tuple[int, ...]:
    """(3, 13) of "python3.13"."""
    return tuple(int(part) for part in runtime.removeprefix("python").split(".") if part.isdigit())


_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


# -- reading ------------------------------------------------------------------------------------------------


class _CfnYamlLoader(yaml.SafeLoader):
    """SafeLoader that understands !Ref, !GetAtt, !Sub ... without touching the global SafeLoader."""


def _intrinsic_constructor(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix in ("Ref", "Condition") else f"Fn::{tag_suffix}"
    value: Any
    if tag_suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node).split(".", 1)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnYamlLoader.add_multi_constructor("!", _intrinsic_constructor)


def read_template(path: Path) -> dict[str, Any]:
    """A YAML or JSON CloudFormation/SAM document as a dict (short-form tags expanded)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"template not found: {path}") from None
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.load(text, Loader=_CfnYamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(document, dict):
        raise TemplateError(f"{path}: a template must be a mapping, got {type(document).__name__}")
    return document


def default_stack_name(template_path: Path) -> str:
    """samconfig.toml's stack_name (default environment) beside the template, else "sam-app"."""
    config = template_path.parent / "samconfig.toml"
    if config.is_file():
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{config}: invalid TOML: {exc}") from None
        default = data.get("default", {})
        for section in ("global", "deploy"):
            name = default.get(section, {}).get("parameters", {}).get("stack_name")
            if name:
                return str(name)
    return "sam-app"


# -- parameters ---------------------------------------------------------------------------------------------


def _partition(region: str) -> tuple[str, str]:
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


def _parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    declared = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override for undeclared parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        ptype = str(spec.get("Type", "String"))
        if name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            if ptype.startswith("AWS::SSM::Parameter::Value"):
                raise TemplateError(
                    f"parameter {name} reads SSM parameter {spec['Default']!r}, unavailable offline: "
                    f"pass its value with --parameter-overrides {name}=..."
                )
            raw = scalar_text(spec["Default"])
        else:
            raise TemplateError(
                f"parameter {name} has no Default: pass it with --parameter-overrides {name}=..."
            )
        _check_parameter(name, spec, raw)
        is_list = ptype.startswith("List<") or ptype == "CommaDelimitedList"
        values[name] = [item.strip() for item in raw.split(",")] if is_list else raw
    return values


def _check_parameter(name: str, spec: dict[str, Any], raw: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and raw not in [scalar_text(v) for v in allowed]:
        choices = ", ".join(scalar_text(v) for v in allowed)
        raise TemplateError(f"parameter {name}={raw!r} is not one of its AllowedValues: {choices}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), raw):
        raise TemplateError(f"parameter {name}={raw!r} does not match its AllowedPattern {pattern}")
    if str(spec.get("Type", "String")) == "Number":
        try:
            number = float(raw)
        except ValueError:
            raise TemplateError(f"parameter {name}={raw!r} is not a Number") from None
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"parameter {name}={raw} is outside [{low}, {high}]")


# -- translation --------------------------------------------------------------------------------------------


@dataclass
class _Translated:
    template: dict[str, Any]  # the CloudFormation samtranslator produced
    artifacts: dict[str, Path]  # fake S3 key -> absolute local path
    parameters: dict[str, Any]  # template parameters + pseudo parameters
    stack_name: str
    partition: str
    url_suffix: str


class _ArtifactParker:
    """Rewrites local paths to S3 locations (what ``sam package`` would upload) and remembers the way back."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.artifacts: dict[str, Path] = {}

    def park(self, value: Any) -> Any:
        if not isinstance(value, str) or value.startswith("s3://"):
            return value
        path = (self.base_dir / value).resolve()
        key = f"{len(self.artifacts):04d}/{path.name or 'root'}"
        self.artifacts[key] = path
        return f"s3://{LOCAL_BUCKET}/{key}"

    def local_path(self, location: Any, bucket_key: str = "Bucket", key_key: str = "Key") -> Path | None:
        """The local path behind a translated S3 location, or a plain string path (cloudformation package)."""
        if isinstance(location, str) and not location.startswith("s3://"):
            return (self.base_dir / location).resolve()
        if isinstance(location, dict) and location.get(bucket_key) == LOCAL_BUCKET:
            return self.artifacts.get(str(location.get(key_key)))
        return None


def _park_local_artifacts(template: dict[str, Any], parker: _ArtifactParker) -> None:
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    if "CodeUri" in globals_function:
        globals_function["CodeUri"] = parker.park(globals_function["CodeUri"])
    for resource in (template.get("Resources") or {}).values():
        if not isinstance(resource, dict):
            continue
        props = resource.get("Properties")
        if not isinstance(props, dict):
            continue
        rtype = resource.get("Type")
        if rtype == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = parker.park(props["CodeUri"])
        elif rtype == "AWS::Serverless::LayerVersion" and "ContentUri" in props:
            props["ContentUri"] = parker.park(props["ContentUri"])
        elif rtype == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = parker.park(props["DefinitionUri"])
        elif rtype == "AWS::Serverless::Api" and _is_local_path(props.get("DefinitionUri")):
            # Inline a local OpenAPI file so the transform can merge the function events into it.
            props["DefinitionBody"] = read_template(parker.base_dir / props.pop("DefinitionUri"))


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("s3://")


def _translate(
    template_path: Path,
    *,
    parameter_overrides: dict[str, str] | None,
    region: str,
    account_id: str,
    stack_name: str | None,
) -> _Translated:
    # Imported here: samtranslator is heavy and only the loader needs it.
    import boto3
    from samtranslator.feature_toggle.feature_toggle import FeatureToggle, FeatureToggleDefaultConfigProvider
    from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template_path = template_path.resolve()
    template = read_template(template_path)
    stack = stack_name or default_stack_name(template_path)
    partition, url_suffix = _partition(region)
    parameters = _parameter_values(template, dict(parameter_overrides or {}))
    parameters.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack}/"
            + stable_token(stack, "stack-id", length=32, alphabet="0123456789abcdef"),
            "AWS::Partition": partition,
            "AWS::URLSuffix": url_suffix,
            "AWS::NotificationARNs": [],
        }
    )
    parker = _ArtifactParker(template_path.parent)
    translated = copy.deepcopy(template)
    _park_local_artifacts(translated, parker)
    if _is_sam(translated):
        managed = get_bundled_managed_policy_map(partition) or {}
        translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))

        class _DefaultFeatures(FeatureToggle):
            # The default toggles (all off), without the warning samtranslator logs for every lookup.
            def is_enabled(self, feature_name: str) -> bool:
                return False

        features = _DefaultFeatures(FeatureToggleDefaultConfigProvider(), None, account_id, region)
        try:
            translated = translator.translate(
                translated,
                parameter_values=dict(parameters),
                feature_toggle=features,
                get_managed_policy_map=lambda: managed,
            )
        except InvalidDocumentException as exc:
            messages = "; ".join(str(getattr(cause, "message", cause)) for cause in exc.causes)
            raise TemplateError(f"{template_path.name}: SAM transform failed: {messages}") from None
        finally:
            translator.metrics.publish()  # to its dummy publisher; otherwise it warns on stdout at exit
    return _Translated(translated, parker.artifacts, parameters, stack, partition, url_suffix)


def _is_sam(template: dict[str, Any]) -> bool:
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    return any(isinstance(t, str) and t.startswith("AWS::Serverless") for t in transforms)


def translate_template(
    template_path: Path,
    *,
    parameter_overrides: dict[str, str] | None = None,
    region: str = "us-east-1",
    account_id: str = "123456789012",
    stack_name: str | None = None,
) -> dict[str, Any]:
    """The CloudFormation the SAM transform produces (local artifacts appear as s3://local-artifacts.invalid)."""
    return _translate(
        template_path,
        parameter_overrides=parameter_overrides,
        region=region,
        account_id=account_id,
        stack_name=stack_name,
    ).template


# -- the model ----------------------------------------------------------------------------------------------


def load_stack(
    template_path: Path,
    *,
    parameter_overrides: dict[str, str] | None = None,
    region: str = "us-east-1",
    account_id: str = "123456789012",
    stack_name: str | None = None,
) -> StackModel:
    translated = _translate(
        Path(template_path),
        parameter_overrides=parameter_overrides,
        region=region,
        account_id=account_id,
        stack_name=stack_name,
    )
    return _StackBuilder(Path(template_path).resolve(), translated, region, account_id).build()


class _StackBuilder:
    def __init__(self, template_path: Path, translated: _Translated, region: str, account_id: str) -> None:
        self.template = translated.template
        self.parker = _ArtifactParker(template_path.parent)
        self.parker.artifacts = translated.artifacts
        all_resources: dict[str, dict[str, Any]] = {
            k: v for k, v in (self.template.get("Resources") or {}).items() if isinstance(v, dict)
        }
        self.table = ResourceTable(
            all_resources,
            stack_name=translated.stack_name,
            region=region,
            account_id=account_id,
            partition=translated.partition,
            url_suffix=translated.url_suffix,
        )
        self.resolver = IntrinsicResolver(
            parameters=translated.parameters,
            region=region,
            mappings=self.template.get("Mappings"),
            conditions=self.template.get("Conditions"),
            ref=self.table.ref,
            getatt=self.table.getatt,
        )
        self.table.resolver = self.resolver
        # Resources whose Condition is false do not exist: drop them before anything refers to them.
        self.resources = {
            logical_id: resource
            for logical_id, resource in all_resources.items()
            if "Condition" not in resource or self.resolver.condition(str(resource["Condition"]))
        }
        for logical_id in set(all_resources) - set(self.resources):
            del all_resources[logical_id]
        self.model = StackModel(
            stack_name=translated.stack_name,
            region=region,
            account_id=account_id,
            template_path=template_path,
            parameters={
                k: scalar_text(v) for k, v in translated.parameters.items() if not k.startswith("AWS::")
            },
        )

    def unsupported(self, logical_id: str, resource_type: str, detail: str) -> None:
        self.model.unsupported.append(Unsupported(logical_id, resource_type, detail))

    def props(self, logical_id: str) -> dict[str, Any]:
        resolved = self.resolver.resolve(self.resources[logical_id].get("Properties") or {})
        return resolved if isinstance(resolved, dict) else {}

    def build(self) -> StackModel:
        builders: dict[str, Callable[[str], None]] = {
            "AWS::Lambda::Function": self._function,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::DynamoDB::Table": self._table,
            "AWS::SQS::Queue": self._queue,
            "AWS::SNS::Topic": self._topic,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Scheduler::Schedule": self._scheduler_schedule,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::ApiGateway::RestApi": self._rest_api,
        }
        # Second pass: things that attach to what the first pass built.
        attachers: dict[str, Callable[[str], None]] = {
            "AWS::SNS::Subscription": self._subscription,
            "AWS::Events::Rule": self._events_rule,
        }
        for stage in (builders, attachers):
            for logical_id, resource in self.resources.items():
                rtype = str(resource.get("Type"))
                builder = stage.get(rtype)
                if builder is None:
                    if stage is builders and rtype not in attachers and rtype not in SILENTLY_SKIPPED_TYPES:
                        self.unsupported(logical_id, rtype, "resource type not emulated")
                    continue
                try:
                    builder(logical_id)
                except Unresolvable as exc:
                    self.unsupported(logical_id, rtype, f"skipped: {exc}")
        self._outputs()
        return self.model

    # -- Lambda --

    def _layer_dirs(self) -> dict[str, Path | None]:
        layers: dict[str, Path | None] = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::Lambda::LayerVersion":
                content = (resource.get("Properties") or {}).get("Content")
                layers[self.table.ref(logical_id)] = self.parker.local_path(content, "S3Bucket", "S3Key")
        return layers

    def _function(self, logical_id: str) -> None:
        rtype = "AWS::Lambda::Function"
        props = self.props(logical_id)
        if props.get("PackageType") == "Image":
            self.unsupported(logical_id, rtype, "skipped: container image functions need Docker")
            return
        code = props.get("Code") or {}
        if isinstance(code, dict) and "ZipFile" in code:
            self.unsupported(
                logical_id, rtype, "skipped: inline code (ZipFile/InlineCode) is not run locally"
            )
            return
        code_dir = self.parker.local_path(code, "S3Bucket", "S3Key")
        if code_dir is None:
            self.unsupported(logical_id, rtype, f"skipped: code is not a local path ({code})")
            return
        runtime = str(props.get("Runtime", ""))
        if not runtime.startswith("python"):
            self.unsupported(
                logical_id, rtype, f"skipped: runtime {runtime or '(none)'} is not a Python runtime"
            )
            return
        for prop in _UNEMULATED_FUNCTION_PROPERTIES:
            if prop in props:
                self.unsupported(logical_id, rtype, f"property {prop} is ignored")
        layer_index = self._layer_dirs()
        layer_dirs: list[Path] = []
        for arn in props.get("Layers") or []:
            layer_dir = layer_index.get(str(arn))
            if layer_dir is None:
                self.unsupported(
                    logical_id, rtype, f"layer {arn} is not a local layer of this template; ignored"
                )
            else:
                layer_dirs.append(layer_dir)
        name = self.table.physical_name(logical_id)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        logging_config = props.get("LoggingConfig") or {}
        reserved = props.get("ReservedConcurrentExecutions")
        published = self._published_version(logical_id, props, runtime)
        self.model.functions[name] = FunctionSpec(
            logical_id=logical_id,
            function_name=name,
            arn=self.table.getatt(logical_id, "Arn"),
            handler=str(props.get("Handler", "")),
            code_dir=code_dir,
            runtime=runtime,
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            environment={str(k): scalar_text(v) for k, v in variables.items()},
            layer_dirs=layer_dirs,
            reserved_concurrency=None if reserved is None else int(reserved),
            tracing=(props.get("TracingConfig") or {}).get("Mode") == "Active",
            architectures=[str(a) for a in props.get("Architectures") or ["x86_64"]],
            log_level=logging_config.get("ApplicationLogLevel"),
            **published,
        )

    def _published_version(self, logical_id: str, props: dict[str, Any], runtime: str) -> dict[str, Any]:
        """AutoPublishAlias: the AWS::Lambda::Version (locally always "1") and the aliases of this function,
        and whether that version runs with SnapStart. {} when the function publishes no version."""
        ref = {"Ref": logical_id}
        versions, aliases = [], []
        for other_id, resource in self.resources.items():
            other = resource.get("Properties") or {}
            if resource.get("Type") == "AWS::Lambda::Version" and other.get("FunctionName") == ref:
                versions.append(other_id)
            elif resource.get("Type") == "AWS::Lambda::Alias" and other.get("FunctionName") == ref:
                aliases.append((other_id, scalar_text(other.get("Name"))))
        if not versions:
            return {}
        snap_start = (props.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"
        if snap_start:
            # What Lambda refuses with SnapStart (the deployment fails there): reported, run without it.
            storage = int((props.get("EphemeralStorage") or {}).get("Size", 512))
            provisioned = [a for a, _ in aliases if "ProvisionedConcurrencyConfig" in self.props(a)]
            refusals = [
                *([f"runtime {runtime} (needs python3.12+)"] if _py_version(runtime) < (3, 12) else []),
                *(["FileSystemConfigs (EFS)"] if props.get("FileSystemConfigs") else []),
                *([f"EphemeralStorage {storage} MB > 512 MB"] if storage > 512 else []),
                *([f"provisioned concurrency on {', '.join(provisioned)}"] if provisioned else []),
            ]
            if refusals:
                self.unsupported(
                    logical_id,
                    "AWS::Lambda::Function",
                    f"SnapStart ignored: Lambda refuses it with {'; '.join(refusals)}",
                )
                snap_start = False
        names = tuple(name for _, name in aliases)
        return {"published_version": "1", "aliases": names, "snap_start": snap_start}

    # -- Step Functions --

    def _state_machine(self, logical_id: str) -> None:
        rtype = "AWS::StepFunctions::StateMachine"
        props = self.props(logical_id)
        if "DefinitionString" in props:
            definition = scalar_text(props["DefinitionString"])
        elif "Definition" in props:
            definition = json.dumps(props["Definition"], indent=2)
        elif "DefinitionS3Location" in props:
            path = self.parker.local_path(props["DefinitionS3Location"])
            if path is None:
                self.unsupported(logical_id, rtype, "skipped: DefinitionS3Location is not a local file")
                return
            try:
                definition = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"{logical_id}: cannot read definition {path}: {exc.strerror}") from None
        else:
            raise TemplateError(f"{logical_id}: state machine has no definition")
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + str(key) + "}", scalar_text(value))
        definition = _as_json_text(definition, logical_id)
        name = self.table.physical_name(logical_id)
        self.model.state_machines[name] = StateMachineSpec(
            logical_id=logical_id,
            name=name,
            arn=self.table.getatt(logical_id, "Arn"),
            type=str(props.get("StateMachineType", "STANDARD")),
            definition=definition,
            role_arn=scalar_text(props.get("RoleArn", "")),
            tracing=_truthy((props.get("TracingConfiguration") or {}).get("Enabled", False)),
            logging=props.get("LoggingConfiguration"),
        )

    # -- data and messaging --

    def _table(self, logical_id: str) -> None:
        name = self.table.physical_name(logical_id)
        props = self.props(logical_id)
        props["TableName"] = name
        self.model.tables[name] = TableSpec(logical_id, name, self.table.getatt(logical_id, "Arn"), props)

    def _queue(self, logical_id: str) -> None:
        props = self.props(logical_id)
        attributes = {key: scalar_text(props[key]) for key in _SQS_ATTRIBUTES if key in props}
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = (
                    value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
                )
        name = self.table.physical_name(logical_id)
        self.model.queues[name] = QueueSpec(
            logical_id=logical_id,
            queue_name=name,
            arn=self.table.getatt(logical_id, "Arn"),
            url=self.table.queue_url(name),
            attributes=attributes,
        )

    def _topic(self, logical_id: str) -> None:
        props = self.props(logical_id)
        name = self.table.physical_name(logical_id)
        subscriptions = [
            SubscriptionSpec(protocol=str(s["Protocol"]).lower(), endpoint=scalar_text(s["Endpoint"]))
            for s in props.get("Subscription") or []
        ]
        self.model.topics[name] = TopicSpec(
            logical_id, name, self.table.getatt(logical_id, "Arn"), subscriptions
        )

    def _alarm(self, logical_id: str) -> None:
        # Created so describe-alarms shows them; moto stores alarms but never evaluates them.
        name = self.table.physical_name(logical_id)
        self.model.alarms[name] = AlarmSpec(logical_id, name, self.props(logical_id))

    def _dashboard(self, logical_id: str) -> None:
        body = self.props(logical_id).get("DashboardBody")
        if body is None:
            self.unsupported(logical_id, "AWS::CloudWatch::Dashboard", "skipped: no DashboardBody")
            return
        self.model.dashboards[self.table.physical_name(logical_id)] = (
            body if isinstance(body, str) else json.dumps(body)
        )

    def _event_bus(self, logical_id: str) -> None:
        rtype = "AWS::Events::EventBus"
        for prop in ("EventSourceName", "KmsKeyIdentifier", "DeadLetterConfig"):
            if prop in self.props(logical_id):
                self.unsupported(logical_id, rtype, f"property {prop} is ignored")
        self.model.event_buses[self.table.physical_name(logical_id)] = logical_id

    def _subscription(self, logical_id: str) -> None:
        rtype = "AWS::SNS::Subscription"
        props = self.props(logical_id)
        topic_arn = scalar_text(props.get("TopicArn", ""))
        topic = next((t for t in self.model.topics.values() if t.arn == topic_arn), None)
        if topic is None:
            self.unsupported(logical_id, rtype, f"skipped: topic {topic_arn} is not a topic of this template")
            return
        filter_policy = props.get("FilterPolicy")
        if isinstance(filter_policy, str):
            filter_policy = json.loads(filter_policy)
        if props.get("FilterPolicyScope") == "MessageBody":
            self.unsupported(logical_id, rtype, "FilterPolicyScope MessageBody is not emulated")
        topic.subscriptions.append(
            SubscriptionSpec(
                protocol=str(props.get("Protocol", "")).lower(),
                endpoint=scalar_text(props.get("Endpoint", "")),
                raw_message_delivery=_truthy(props.get("RawMessageDelivery", False)),
                filter_policy=filter_policy,
            )
        )

    def _secret(self, logical_id: str) -> None:
        props = self.props(logical_id)
        name = self.table.physical_name(logical_id)
        if "SecretString" in props:
            secret = scalar_text(props["SecretString"])
        else:
            seed = f"{self.model.stack_name}/{logical_id}"
            secret = generate_secret_string(props.get("GenerateSecretString") or {}, seed)
        self.model.secrets[name] = SecretSpec(logical_id, name, self.table.getatt(logical_id, "Arn"), secret)

    def _log_group(self, logical_id: str) -> None:
        props = self.props(logical_id)
        name = self.table.physical_name(logical_id)
        retention = props.get("RetentionInDays")
        self.model.log_groups[name] = LogGroupSpec(
            logical_id, name, None if retention is None else int(retention)
        )

    # -- schedules and event sources --

    def _target_ok(self, logical_id: str, rtype: str, arn: str) -> bool:
        if arn.startswith(f"arn:{self.table.partition}:lambda:") or ":states:" in arn:
            return True
        self.unsupported(logical_id, rtype, f"skipped: target {arn} is neither a Lambda nor a state machine")
        return False

    def _scheduler_schedule(self, logical_id: str) -> None:
        rtype = "AWS::Scheduler::Schedule"
        props = self.props(logical_id)
        target = props.get("Target") or {}
        arn = scalar_text(target.get("Arn", ""))
        if not self._target_ok(logical_id, rtype, arn):
            return
        name = self.table.physical_name(logical_id)
        self.model.schedules[name] = ScheduleSpec(
            logical_id=logical_id,
            name=name,
            expression=str(props.get("ScheduleExpression", "")),
            target_arn=arn,
            input=_json_text(target.get("Input")),
            enabled=str(props.get("State", "ENABLED")) == "ENABLED",
            kind="scheduler",
            timezone=str(props.get("ScheduleExpressionTimezone", "UTC")),
        )

    def _events_rule(self, logical_id: str) -> None:
        rtype = "AWS::Events::Rule"
        props = self.props(logical_id)
        if "ScheduleExpression" not in props:
            self.unsupported(
                logical_id, rtype, "skipped: only schedule rules are emulated, not event patterns"
            )
            return
        name = self.table.physical_name(logical_id)
        targets = props.get("Targets") or []
        for target in targets:
            arn = scalar_text(target.get("Arn", ""))
            if not self._target_ok(logical_id, rtype, arn):
                continue
            for unsupported_key in ("InputPath", "InputTransformer"):
                if unsupported_key in target:
                    self.unsupported(logical_id, rtype, f"target {unsupported_key} is ignored")
            key = name if len(targets) == 1 else f"{name}/{target.get('Id', arn)}"
            self.model.schedules[key] = ScheduleSpec(
                logical_id=logical_id,
                name=key,
                expression=str(props["ScheduleExpression"]),
                target_arn=arn,
                input=_json_text(target.get("Input")),
                enabled=str(props.get("State", "ENABLED")) == "ENABLED",
                kind="events",
            )

    def _event_source_mapping(self, logical_id: str) -> None:
        rtype = "AWS::Lambda::EventSourceMapping"
        props = self.props(logical_id)
        source = scalar_text(props.get("EventSourceArn", ""))
        is_stream = source.startswith(f"arn:{self.table.partition}:dynamodb:") and "/stream/" in source
        if not (source.startswith(f"arn:{self.table.partition}:sqs:") or is_stream):
            self.unsupported(
                logical_id, rtype, f"skipped: event source {source} is not an SQS queue or DynamoDB stream"
            )
            return
        if "FilterCriteria" in props:
            self.unsupported(logical_id, rtype, "FilterCriteria is ignored")
        for ignored in ("BisectBatchOnFunctionError", "ParallelizationFactor", "TumblingWindowInSeconds"):
            if ignored in props:
                self.unsupported(logical_id, rtype, f"{ignored} is ignored")
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        function = scalar_text(props.get("FunctionName", ""))
        if function.startswith("arn:"):
            function = function.split(":")[6]
        self.model.event_source_mappings.append(
            EventSourceMappingSpec(
                logical_id=logical_id,
                function_name=function.split(":")[0],
                event_source_arn=source,
                batch_size=int(props.get("BatchSize", 10)),
                maximum_batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                maximum_concurrency=_optional_int(
                    (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
                ),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                enabled=_truthy(props.get("Enabled", True)),
                starting_position=scalar_text(props.get("StartingPosition", "LATEST")) if is_stream else None,
                maximum_retry_attempts=_optional_int(props.get("MaximumRetryAttempts")),
                on_failure_destination=scalar_text(on_failure) if on_failure else None,
            )
        )

    # -- API Gateway --

    def _rest_api(self, logical_id: str) -> None:
        rtype = "AWS::ApiGateway::RestApi"
        props = self.props(logical_id)
        body = props.get("Body")
        if body is None:
            detail = (
                "BodyS3Location is not local" if "BodyS3Location" in props else "no Body (routes unknown)"
            )
            self.unsupported(logical_id, rtype, f"skipped: {detail}")
            return
        rest_api_id = self.table.ref(logical_id)
        routes = self._routes(logical_id, body)
        binary = [
            str(t)
            for t in props.get("BinaryMediaTypes") or body.get("x-amazon-apigateway-binary-media-types") or []
        ]
        all_stages = [(sid, self.props(sid)) for sid, r in self.resources.items() if r.get("Type") == _STAGE]
        stages = [(sid, props) for sid, props in all_stages if props.get("RestApiId") == rest_api_id]
        if not stages:
            self.unsupported(logical_id, rtype, "skipped: no AWS::ApiGateway::Stage deploys this API")
            return
        for extra_id, _ in stages[1:]:
            self.unsupported(
                extra_id, "AWS::ApiGateway::Stage", f"only stage {stages[0][1].get('StageName')} is served"
            )
        stage_name = str(stages[0][1].get("StageName", ""))
        self.model.apis[logical_id] = ApiSpec(
            logical_id=logical_id,
            rest_api_id=rest_api_id,
            stage_name=stage_name,
            routes=routes,
            api_keys=self._api_keys(rest_api_id, stage_name),
            binary_media_types=[t.replace("~1", "/") for t in binary],
            tracing=_truthy(stages[0][1].get("TracingEnabled", False)),
        )

    def _routes(self, logical_id: str, body: dict[str, Any]) -> list[RouteSpec]:
        rtype = "AWS::ApiGateway::RestApi"
        global_security = body.get("security") or []
        routes: list[RouteSpec] = []
        for path, methods in (body.get("paths") or {}).items():
            for key, operation in (methods or {}).items():
                if key in ("x-amazon-apigateway-any-method", "any"):  # SAM writes "any" into OpenAPI 3 bodies
                    method = "ANY"
                elif key in _HTTP_METHODS:
                    method = key.upper()
                else:
                    continue
                integration = (operation or {}).get("x-amazon-apigateway-integration") or {}
                uri = str(integration.get("uri", ""))
                found = re.search(r"functions/(arn:[^/]+)/invocations", uri)
                if integration.get("type") != "aws_proxy" or found is None:
                    self.unsupported(
                        logical_id, rtype, f"route {method} {path}: only Lambda proxy integrations are served"
                    )
                    continue
                security = operation.get("security", global_security) or []
                for requirement in security:
                    for scheme in requirement:
                        if scheme != "api_key":
                            self.unsupported(
                                logical_id, rtype, f"route {method} {path}: authorizer {scheme} not enforced"
                            )
                function = ":".join(found.group(1).split(":")[6:8])  # name[:alias or version]
                api_key_required = any("api_key" in requirement for requirement in security)
                routes.append(RouteSpec(method, str(path), function, api_key_required))
        return routes

    def _api_keys(self, rest_api_id: str, stage_name: str) -> list[ApiKeySpec]:
        plan_ids = set()
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::ApiGateway::UsagePlan":
                for stage in self.props(logical_id).get("ApiStages") or []:
                    if stage.get("ApiId") == rest_api_id and stage.get("Stage") == stage_name:
                        plan_ids.add(self.table.ref(logical_id))
        key_ids = set()
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::ApiGateway::UsagePlanKey":
                props = self.props(logical_id)
                if props.get("UsagePlanId") in plan_ids:
                    key_ids.add(props.get("KeyId"))
        keys: list[ApiKeySpec] = []
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::ApiGateway::ApiKey":
                continue
            props = self.props(logical_id)
            key_id = self.table.ref(logical_id)
            by_stage_key = any(
                s.get("RestApiId") == rest_api_id and s.get("StageName") == stage_name
                for s in props.get("StageKeys") or []
            )
            if key_id not in key_ids and not by_stage_key:
                continue
            keys.append(
                ApiKeySpec(
                    logical_id=logical_id,
                    key_id=key_id,
                    name=self.table.physical_name(logical_id),
                    value=scalar_text(
                        props.get("Value")
                        or stable_token(
                            self.model.stack_name,
                            logical_id,
                            "apikey",
                            length=40,
                            alphabet=string.ascii_letters + string.digits,
                        )
                    ),
                    enabled=_truthy(
                        props.get("Enabled", False)
                    ),  # CloudFormation's default is a disabled key
                )
            )
        return keys

    def _outputs(self) -> None:
        for name, output in (self.template.get("Outputs") or {}).items():
            if "Condition" in output and not self.resolver.condition(str(output["Condition"])):
                continue
            try:
                value = self.resolver.resolve(output.get("Value"))
            except Unresolvable as exc:
                self.unsupported(name, "Output", f"skipped: {exc}")
                continue
            if value is not NO_VALUE:
                self.model.outputs[name] = value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _optional_int(value: Any) -> int | None:
    # A parameter-driven number arrives as text ("4"); the model wants an int.
    return None if value is None else int(value)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _as_json_text(definition: str, logical_id: str) -> str:
    """ASL may be written in YAML (DefinitionUri *.asl.yaml); the engine wants JSON text."""
    try:
        json.loads(definition)
        return definition
    except ValueError:
        pass
    try:
        document = yaml.load(definition, Loader=_CfnYamlLoader)
    except yaml.YAMLError:
        return definition  # left as-is: the ASL linter reports it
    return json.dumps(document, indent=2) if isinstance(document, dict) else definition


def generate_secret_string(spec: dict[str, Any], seed: str) -> str:
    """Render GenerateSecretString once, as Secrets Manager would; random per stack and secret, but stable
    across runs so a restarted runtime keeps its secrets."""
    rng = random.Random(seed)
    groups = []
    if not _truthy(spec.get("ExcludeLowercase", False)):
        groups.append(string.ascii_lowercase)
    if not _truthy(spec.get("ExcludeUppercase", False)):
        groups.append(string.ascii_uppercase)
    if not _truthy(spec.get("ExcludeNumbers", False)):
        groups.append(string.digits)
    if not _truthy(spec.get("ExcludePunctuation", False)):
        groups.append("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    if _truthy(spec.get("IncludeSpace", False)):
        groups.append(" ")
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    groups = [g for g in ("".join(c for c in group if c not in excluded) for group in groups) if g]
    alphabet = "".join(groups)
    if not alphabet:
        raise TemplateError("GenerateSecretString excludes every character")
    length = int(spec.get("PasswordLength", 32))
    chars = [rng.choice(alphabet) for _ in range(length)]
    if _truthy(spec.get("RequireEachIncludedType", True)) and length >= len(groups):
        # Put one character of each included type at distinct random positions.
        for position, group in zip(rng.sample(range(length), len(groups)), groups, strict=True):
            chars[position] = rng.choice(group)
    password = "".join(chars)
    template = spec.get("SecretStringTemplate")
    if template is None:
        return password
    key = spec.get("GenerateStringKey")
    document = json.loads(template) if isinstance(template, str) else dict(template)
    if key:
        document[str(key)] = password
    return json.dumps(document, separators=(",", ":"))
