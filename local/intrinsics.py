"""CloudFormation intrinsic functions and condition evaluation, resolved offline.

The resolver knows nothing about resource types: ``Ref`` and ``Fn::GetAtt`` of a resource are answered by the
callbacks it is given (the loader's physical-id table). Parameters and pseudo parameters are plain values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from local.errors import TemplateError

__all__ = ["NO_VALUE", "IntrinsicResolver", "ResourceTable", "TemplateError", "Unresolvable", "stable_token"]


class Unresolvable(Exception):
    """A value that exists only in a deployed account (Fn::ImportValue, an unknown resource attribute...).

    The loader turns it into an ``Unsupported`` entry for the resource that needs it."""


class _NoValue:
    """``Ref: AWS::NoValue``: the enclosing property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

RefLookup = Callable[[str], Any]
GetAttLookup = Callable[[str, str], Any]

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class IntrinsicResolver:
    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        region: str,
        mappings: Mapping[str, Any] | None = None,
        conditions: Mapping[str, Any] | None = None,
        ref: RefLookup,
        getatt: GetAttLookup,
    ) -> None:
        self._parameters = parameters  # template parameters and pseudo parameters, already typed
        self._region = region
        self._mappings = mappings or {}
        self._conditions = conditions or {}
        self._condition_values: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._ref = ref
        self._getatt = getatt

    # -- conditions --

    def condition(self, name: str) -> bool:
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self._conditions:
            raise TemplateError(f"condition {name!r} is not defined in Conditions")
        if name in self._evaluating:
            raise TemplateError(f"condition {name!r} refers to itself")
        self._evaluating.add(name)
        try:
            value = self._truth(self._conditions[name], f"condition {name}")
        finally:
            self._evaluating.discard(name)
        self._condition_values[name] = value
        return value

    def _truth(self, expr: Any, where: str) -> bool:
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, str) and expr.lower() in ("true", "false"):
            return expr.lower() == "true"
        if isinstance(expr, dict) and len(expr) == 1:
            ((fn, arg),) = expr.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                left, right = (self.resolve(v) for v in _args(arg, 2, fn))
                return _scalar_text(left) == _scalar_text(right)
            if fn == "Fn::Not":
                (inner,) = _args(arg, 1, fn)
                return not self._truth(inner, where)
            if fn == "Fn::And":
                return all(self._truth(v, where) for v in _args(arg, None, fn))
            if fn == "Fn::Or":
                return any(self._truth(v, where) for v in _args(arg, None, fn))
        raise TemplateError(f"{where}: not a condition expression: {expr!r}")

    # -- values --

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside ``value``; ``AWS::NoValue`` removes keys and list items."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key,) = value
            handler = _FUNCTIONS.get(key)
            # {"Condition": {...}} is an IAM policy block, not the condition function
            if handler is not None and not (key == "Condition" and not isinstance(value[key], str)):
                return handler(self, value[key])
            if key == "Fn::Transform":  # macros such as AWS::Include run in CloudFormation only
                raise Unresolvable(f"Fn::Transform {value[key]!r} is not run offline")
            if handler is None and key.startswith("Fn::"):
                raise TemplateError(f"intrinsic function {key} is not supported")
        out: dict[str, Any] = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _fn_ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"Ref needs a name, got {name!r}")
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        if name.startswith("AWS::"):
            raise TemplateError(f"Ref {name}: unknown pseudo parameter")
        return self._ref(name)

    def _fn_getatt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical_id, attribute = _args(arg, 2, "Fn::GetAtt")
        return self._getatt(self.resolve(logical_id), self.resolve(attribute))

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = _args(arg, 2, "Fn::Sub")
            variables = {k: self.resolve(v) for k, v in dict(variables).items()}
        if not isinstance(text, str):
            raise TemplateError(f"Fn::Sub needs a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} stays as ${Literal}
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in variables:
                return _scalar_text(variables[name])
            if name in self._parameters or name.startswith("AWS::") or "." not in name:
                return _scalar_text(self._fn_ref(name))
            logical_id, attribute = name.split(".", 1)
            return _scalar_text(self._getatt(logical_id, attribute))

        return _SUB_VAR.sub(substitute, text)

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = _args(arg, 2, "Fn::Join")
        items = self.resolve(items)
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Join needs a list, got {items!r}")
        return str(self.resolve(delimiter)).join(_scalar_text(i) for i in items)

    def _fn_select(self, arg: Any) -> Any:
        index, items = (self.resolve(v) for v in _args(arg, 2, "Fn::Select"))
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Select needs a list, got {items!r}")
        i = int(index)
        if not 0 <= i < len(items):
            raise TemplateError(f"Fn::Select index {i} is out of range for {len(items)} items")
        return items[i]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, source = (self.resolve(v) for v in _args(arg, 2, "Fn::Split"))
        return str(source).split(str(delimiter))

    def _fn_find_in_map(self, arg: Any) -> Any:
        if not isinstance(arg, list) or len(arg) not in (3, 4):
            raise TemplateError(f"Fn::FindInMap needs [map, key, key], got {arg!r}")
        name, top, second = (_scalar_text(self.resolve(v)) for v in arg[:3])
        try:
            return self.resolve(self._mappings[name][top][second])
        except (KeyError, TypeError):
            if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self.resolve(arg[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap: {name}/{top}/{second} is not in Mappings") from None

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = _args(arg, 3, "Fn::If")
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_get_azs(self, arg: Any) -> list[str]:
        region = self.resolve(arg) or self._region
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(_scalar_text(self.resolve(arg)).encode()).decode()

    def _fn_import_value(self, arg: Any) -> Any:
        raise Unresolvable(f"Fn::ImportValue {self.resolve(arg)!r} needs another deployed stack")

    def _fn_to_json_string(self, arg: Any) -> str:
        # AWS::LanguageExtensions: compact JSON, as CloudFormation renders it
        return json.dumps(self.resolve(arg), separators=(",", ":"))

    def _fn_length(self, arg: Any) -> int:
        items = self.resolve(arg)
        if not isinstance(items, list):
            raise TemplateError(f"Fn::Length needs a list, got {items!r}")
        return len(items)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(arg)

    def _fn_equals_value(self, arg: Any) -> bool:
        return self._truth({"Fn::Equals": arg}, "Fn::Equals")


def _args(arg: Any, count: int | None, fn: str) -> list[Any]:
    if not isinstance(arg, list) or (count is not None and len(arg) != count):
        wanted = "a list" if count is None else f"a list of {count}"
        raise TemplateError(f"{fn} needs {wanted}, got {arg!r}")
    return arg


def _scalar_text(value: Any) -> str:
    """How CloudFormation renders a scalar inside a string (booleans lower-case, as in YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar_text(v) for v in value)
    if isinstance(value, dict):
        raise TemplateError(f"expected a string, got an object {value!r}")
    return str(value)


scalar_text = _scalar_text

_FUNCTIONS: dict[str, Callable[[IntrinsicResolver, Any], Any]] = {
    "Ref": IntrinsicResolver._fn_ref,
    "Fn::GetAtt": IntrinsicResolver._fn_getatt,
    "Fn::Sub": IntrinsicResolver._fn_sub,
    "Fn::Join": IntrinsicResolver._fn_join,
    "Fn::Select": IntrinsicResolver._fn_select,
    "Fn::Split": IntrinsicResolver._fn_split,
    "Fn::FindInMap": IntrinsicResolver._fn_find_in_map,
    "Fn::If": IntrinsicResolver._fn_if,
    "Fn::GetAZs": IntrinsicResolver._fn_get_azs,
    "Fn::Base64": IntrinsicResolver._fn_base64,
    "Fn::ImportValue": IntrinsicResolver._fn_import_value,
    "Fn::ToJsonString": IntrinsicResolver._fn_to_json_string,
    "Fn::Length": IntrinsicResolver._fn_length,
    "Condition": IntrinsicResolver._fn_condition,
    "Fn::Equals": IntrinsicResolver._fn_equals_value,
}


# -- physical ids --

# Resource type -> (property holding an explicit physical name, maximum length of a generated one).
NAME_PROPERTIES: dict[str, tuple[str, int]] = {
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::Lambda::LayerVersion": ("LayerName", 140),
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::DynamoDB::Table": ("TableName", 255),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", 80),
    "AWS::SecretsManager::Secret": ("Name", 512),
    "AWS::Logs::LogGroup": ("LogGroupName", 512),
    "AWS::IAM::Role": ("RoleName", 64),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128),
    "AWS::IAM::Policy": ("PolicyName", 128),
    "AWS::Events::Rule": ("Name", 64),
    "AWS::Events::EventBus": ("Name", 256),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255),
    "AWS::CloudWatch::Dashboard": ("DashboardName", 255),
    "AWS::Scheduler::Schedule": ("Name", 64),
    "AWS::ApiGateway::RestApi": ("Name", 1024),
    "AWS::ApiGateway::ApiKey": ("Name", 1024),
    "AWS::ApiGateway::UsagePlan": ("UsagePlanName", 1024),
    "AWS::S3::Bucket": ("BucketName", 63),
}


_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def stable_token(*parts: str, length: int = 10, alphabet: str = _LOWER_ALNUM) -> str:
    """A deterministic id (same stack + logical id -> same value on every start)."""
    number = int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


class ResourceTable:
    """What ``Ref`` and ``Fn::GetAtt`` return for each resource, as CloudFormation would after a deploy,
    with deterministic names ("<stack>-<LogicalId>") instead of CloudFormation's random suffixes."""

    def __init__(
        self,
        resources: Mapping[str, dict[str, Any]],
        *,
        stack_name: str,
        region: str,
        account_id: str,
        partition: str = "aws",
        url_suffix: str = "amazonaws.com",
    ) -> None:
        self._resources = resources
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.partition = partition
        self.url_suffix = url_suffix
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()
        self.resolver: IntrinsicResolver | None = None  # set by the loader once the resolver exists

    def resource_type(self, logical_id: str) -> str:
        resource = self._resources.get(logical_id)
        if resource is None:
            raise TemplateError(
                f"{logical_id!r} is not a resource of the template (or its Condition is false)"
            )
        return str(resource.get("Type", ""))

    def _property(self, logical_id: str, name: str) -> Any:
        value = self._resources[logical_id].get("Properties", {}).get(name)
        if value is None or self.resolver is None:
            return value
        resolved = self.resolver.resolve(value)
        return None if resolved is NO_VALUE else resolved

    def physical_name(self, logical_id: str) -> str:
        if logical_id in self._names:
            return self._names[logical_id]
        resource_type = self.resource_type(logical_id)
        if logical_id in self._naming:
            raise TemplateError(f"the name of {logical_id} refers to itself")
        self._naming.add(logical_id)
        try:
            name = self._explicit_name(logical_id, resource_type) or self._generated_name(
                logical_id, resource_type
            )
        finally:
            self._naming.discard(logical_id)
        self._names[logical_id] = name
        return name

    def _explicit_name(self, logical_id: str, resource_type: str) -> str | None:
        prop = NAME_PROPERTIES.get(resource_type)
        if prop is None:
            return None
        value = self._property(logical_id, prop[0])
        return None if value is None else scalar_text(value)

    def _generated_name(self, logical_id: str, resource_type: str) -> str:
        limit = NAME_PROPERTIES.get(resource_type, ("", 255))[1]
        suffix = ""
        fifo_flag = {"AWS::SQS::Queue": "FifoQueue", "AWS::SNS::Topic": "FifoTopic"}.get(resource_type)
        if fifo_flag and _true(self._property(logical_id, fifo_flag)):
            suffix = ".fifo"
        name = f"{self.stack_name}-{logical_id}"
        if resource_type == "AWS::S3::Bucket":
            name = name.lower()
        room = limit - len(suffix)
        if len(name) > room:
            # Keep the readable start, and a hash of the whole so two long ids cannot collide.
            name = name[: room - 9] + "-" + stable_token(self.stack_name, logical_id, length=8)
        return name + suffix

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def _id(self, logical_id: str, salt: str = "id", length: int = 10) -> str:
        return stable_token(self.stack_name, logical_id, salt, length=length)

    def _secret_arn(self, name: str, logical_id: str) -> str:
        # Secrets Manager appends "-" and six random characters to every secret ARN.
        suffix = stable_token(
            self.stack_name,
            logical_id,
            "secret",
            length=6,
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        )
        return self._arn("secretsmanager", f"secret:{name}-{suffix}")

    def ref(self, logical_id: str) -> Any:
        resource_type = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        match resource_type:
            case "AWS::SQS::Queue":
                return self.queue_url(name)
            case (
                "AWS::SNS::Topic"
                | "AWS::StepFunctions::StateMachine"
                | "AWS::SecretsManager::Secret"
                | "AWS::Lambda::LayerVersion"
                | "AWS::IAM::ManagedPolicy"
                | "AWS::Lambda::Version"
                | "AWS::Lambda::Alias"
                | "AWS::SNS::Subscription"
            ):
                return self.getatt(logical_id, "Arn")
            case type_ if type_ in _ID_REF_TYPES:
                return self._id(logical_id)
            case "AWS::ApiGateway::Stage":
                stage = self._property(logical_id, "StageName")
                return scalar_text(stage) if stage is not None else name
            case "AWS::Lambda::EventSourceMapping" | "AWS::Lambda::Permission":
                return self._uuid(logical_id)
            case _:
                return name

    def _function_arn(self, logical_id: str) -> str:
        function = scalar_text(self._property(logical_id, "FunctionName"))
        return function if function.startswith("arn:") else self._arn("lambda", f"function:{function}")

    def _uuid(self, logical_id: str) -> str:
        hex_id = stable_token(self.stack_name, logical_id, "uuid", length=32, alphabet="0123456789abcdef")
        return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"

    def queue_url(self, name: str) -> str:
        return f"https://sqs.{self.region}.{self.url_suffix}/{self.account_id}/{name}"

    def getatt(self, logical_id: str, attribute: str) -> Any:
        resource_type = self.resource_type(logical_id)
        attributes = self._attributes(logical_id, resource_type)
        if attributes is None:
            raise Unresolvable(f"Fn::GetAtt {logical_id}.{attribute}: {resource_type} is not emulated")
        if attribute not in attributes:
            known = ", ".join(sorted(attributes)) or "none"
            raise TemplateError(
                f"Fn::GetAtt {logical_id}.{attribute}: {resource_type} has no attribute {attribute!r} "
                f"(known: {known})"
            )
        return attributes[attribute]

    def _attributes(self, logical_id: str, resource_type: str) -> dict[str, Any] | None:
        name = self.physical_name(logical_id)
        match resource_type:
            case "AWS::Lambda::Function":
                return {"Arn": self._arn("lambda", f"function:{name}")}
            case "AWS::Lambda::LayerVersion":
                arn = self._arn("lambda", f"layer:{name}:1")
                return {"Arn": arn, "LayerVersionArn": arn}
            case "AWS::Lambda::Version":
                base = self._function_arn(logical_id)
                return {"Arn": f"{base}:1", "Version": "1", "FunctionArn": base}
            case "AWS::Lambda::Alias":
                base = self._function_arn(logical_id)
                alias = scalar_text(self._property(logical_id, "Name"))
                return {"Arn": f"{base}:{alias}", "AliasArn": f"{base}:{alias}"}
            case "AWS::Lambda::EventSourceMapping":
                uuid = self._uuid(logical_id)
                arn = self._arn("lambda", f"event-source-mapping:{uuid}")
                return {"Id": uuid, "EventSourceMappingArn": arn}
            case "AWS::SQS::Queue":
                return {"Arn": self._arn("sqs", name), "QueueName": name, "QueueUrl": self.queue_url(name)}
            case "AWS::SNS::Topic":
                arn = self._arn("sns", name)
                return {"Arn": arn, "TopicArn": arn, "TopicName": name}
            case "AWS::SNS::Subscription":
                topic = scalar_text(self._property(logical_id, "TopicArn"))
                return {"Arn": f"{topic}:{self._uuid(logical_id)}"}
            case "AWS::DynamoDB::Table":
                arn = self._arn("dynamodb", f"table/{name}")
                attrs = {"Arn": arn}
                if self._property(logical_id, "StreamSpecification") is not None:
                    attrs["StreamArn"] = f"{arn}/stream/1970-01-01T00:00:00.000"
                return attrs
            case "AWS::StepFunctions::StateMachine":
                return {"Arn": self._arn("states", f"stateMachine:{name}"), "Name": name}
            case "AWS::SecretsManager::Secret":
                arn = self._secret_arn(name, logical_id)
                return {"Arn": arn, "Id": arn}
            case "AWS::Logs::LogGroup":
                return {"Arn": self._arn("logs", f"log-group:{name}:*")}
            case "AWS::IAM::Role":
                path = scalar_text(self._property(logical_id, "Path") or "/")
                return {
                    "Arn": self._arn("iam", f"role{path}{name}", region=False),
                    "RoleId": "AROA" + self._id(logical_id, "role", 17).upper(),
                }
            case "AWS::IAM::ManagedPolicy":
                arn = self._arn("iam", f"policy/{name}", region=False)
                return {"Arn": arn, "PolicyArn": arn}
            case "AWS::Events::Rule":
                bus = self._property(logical_id, "EventBusName")
                prefix = "" if bus in (None, "default") else f"{scalar_text(bus).split('/')[-1]}/"
                return {"Arn": self._arn("events", f"rule/{prefix}{name}")}
            case "AWS::CloudWatch::Alarm":
                return {"Arn": self._arn("cloudwatch", f"alarm:{name}")}
            case "AWS::Events::EventBus":
                return {"Arn": self._arn("events", f"event-bus/{name}"), "Name": name}
            case "AWS::Scheduler::Schedule":
                group = scalar_text(self._property(logical_id, "GroupName") or "default")
                return {"Arn": self._arn("scheduler", f"schedule/{group}/{name}")}
            case "AWS::ApiGateway::RestApi":
                return {"RestApiId": self._id(logical_id), "RootResourceId": self._id(logical_id, "root")}
            case "AWS::ApiGateway::ApiKey":
                return {"APIKeyId": self._id(logical_id)}
            case "AWS::ApiGateway::UsagePlan":
                return {"Id": self._id(logical_id)}
            case "AWS::S3::Bucket":
                return {
                    "Arn": self._arn("s3", name, region=False, account=False),
                    "DomainName": f"{name}.s3.{self.url_suffix}",
                    "RegionalDomainName": f"{name}.s3.{self.region}.{self.url_suffix}",
                    "WebsiteURL": f"http://{name}.s3-website-{self.region}.{self.url_suffix}",
                }
            case _:
                return None


_ID_REF_TYPES = frozenset(
    {
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Deployment",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::ApiGateway::Resource",
        "AWS::ApiGateway::Authorizer",
    }
)


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
