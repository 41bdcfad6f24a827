"""Every change the local runtime makes to moto's internals (Step Functions engine, moto 5.2.5 exactly).

``install()`` applies the patches once per process and (re)binds them to a configuration: the clock, the
Lambda invoker, the endpoint URL, the segment sink. Calling it again swaps that configuration, so tests can
reinstall with other invokers/clocks. ``HOOKS`` names each patched symbol;
``tests/local/test_moto_contract.py`` checks every one still exists with the shape these patches assume,
so a moto upgrade fails loudly.

What the hooks change, and why:
- Lambda tasks call ``LambdaInvoker`` (moto's Lambda backend would need Docker to run code).
- Integrations (``boto_client_for``) target our endpoint, not ``localhost:$MOTO_PORT``; served in process,
  their JSON/query-protocol calls skip botocore's signing, endpoints and retries (``_EngineClient``).
- JSONata evaluates with jsonata-python (moto's evaluator is never wired).
- StartSyncExecution exists; StartExecution fixes names, EXPRESS ARNs, trace headers; SendTaskFailure keeps
  its cause; heartbeat timeouts are ``States.HeartbeatTimeout``.
- Parsed definitions are cached; the engine's thread list is pruned.
- DynamoDB: UpdateExpression / ConditionExpression syntax trees are cached per text (values still go in per
  call), ASTs are copied without copy.deepcopy, AST walks build their dispatch once, and TransactWriteItems
  snapshots only what a cancellation must put back instead of deep-copying whole tables.
- Every wait and timestamp goes through the runtime's ``Clock``.
- X-Ray GetTraceSummaries / GetServiceGraph / GetTraceGraph are answered from the segments
  (``local.xray_api``), and ``/_local/xray/`` serves the service map (``local.xray_map``).
"""

from __future__ import annotations

import base64
import calendar
import copy
import datetime
import functools
import importlib
import json
import logging
import math
import re
import secrets
import sys
import threading
import time
import types
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from local.clock import Clock, utcnow
from local.ports import LambdaInvoker, LambdaServiceError, NullSegmentSink, SegmentSink

MOTO_VERSION = "5.2.5"
_LOG = logging.getLogger(__name__)
_P = "moto.stepfunctions.parser"
_TASK = f"{_P}.asl.component.state.exec.state_task"
_DDB = "moto.dynamodb"

# (name, target qualname): every symbol of moto that install() replaces or extends.
HOOKS: list[tuple[str, str]] = [
    (
        "lambda_invoke",
        f"{_P}.asl.component.state.exec.state_task.lambda_eval_utils.execute_lambda_function_integration",
    ),
    (
        "lambda_client_error",
        f"{_P}.asl.component.state.exec.state_task.state_task_lambda.StateTaskLambda._from_error",
    ),
    ("boto_client_for", f"{_P}.asl.utils.boto_client.boto_client_for"),
    (
        "sync_poll_delay",
        f"{_P}.asl.component.state.exec.state_task.service.state_task_service_callback"
        "._DELAY_SECONDS_SYNC_CONDITION_CHECK",
    ),
    ("jsonata_eval", f"{_P}.asl.jsonata.jsonata._eval_jsonata"),
    ("jsonata_declarations", f"{_P}.asl.jsonata.jsonata.encode_jsonata_variable_declarations"),
    ("start_execution", f"{_P}.models.StepFunctionsParserBackend.start_execution"),
    ("start_sync_execution", f"{_P}.models.StepFunctionsParserBackend.start_sync_execution"),
    ("execution_arn_format", "moto.stepfunctions.models.StepFunctionBackend.accepted_exec_arn_format"),
    ("response_start_execution", "moto.stepfunctions.responses.StepFunctionResponse.start_execution"),
    (
        "response_start_sync_execution",
        "moto.stepfunctions.responses.StepFunctionResponse.start_sync_execution",
    ),
    ("response_send_task_failure", "moto.stepfunctions.responses.StepFunctionResponse.send_task_failure"),
    ("definition_cache", f"{_P}.backend.execution_worker.ExecutionWorker._get_evaluation_entrypoint"),
    ("stop_date", f"{_P}.backend.execution.BaseExecutionWorkerCommunication._reflect_execution_status"),
    ("heartbeat_error", f"{_P}.asl.component.state.exec.state_task.state_task.StateTask._from_error"),
    ("thread_list", f"{_P}.utils.TMP_THREADS"),
    ("environment_stop_event", f"{_P}.asl.eval.environment.Environment.__init__"),
    ("wait_state", f"{_P}.asl.component.state.wait.wait_function.wait_function.WaitFunction._wait_interval"),
    ("retry_backoff", f"{_P}.asl.component.common.retry.retrier_decl.RetrierDecl._eval_body"),
    ("state_timeout", f"{_P}.asl.component.state.exec.execute_state.ExecutionState._evaluate_with_timeout"),
    ("callback_wait", f"{_P}.asl.eval.callback.callback.CallbackEndpoint.wait"),
    ("heartbeat_wait", f"{_P}.asl.eval.callback.callback.HeartbeatEndpoint.clear_and_wait"),
    ("activity_start_wait", f"{_P}.asl.eval.callback.callback.ActivityTaskStartEndpoint.wait"),
    ("program_timeout", f"{_P}.asl.component.program.program.Program.eval"),
    ("history_timestamp", f"{_P}.asl.eval.event.event_manager.EventManager._get_current_timestamp"),
    # every level of the engine logged each failure (a Fail state, a caught task error) at ERROR with the repr
    # of its component tree: noise in `make run` on every declined card, and CPU on every failure path
    ("engine_failure_log", f"{_P}.asl.component.eval_component.EvalComponent._log_failure_event_exception"),
    ("engine_exception_log", f"{_P}.asl.component.eval_component.EvalComponent._log_exception"),
    # ~35 history events per 5-task EXPRESS run, each stamped with strftime (~5 % of the endpoint's CPU)
    ("history_timestamp_format", f"{_P}.asl.eval.event.event_manager.iso_8601_datetime_with_milliseconds"),
    # state input/output, Lambda payloads and size quotas encoded with a JSONEncoder subclass built per call
    ("to_json_str", f"{_P}.asl.utils.encoding.to_json_str"),
    ("error_codes", f"{_P}.api.ServiceException"),
    ("parser_scope", f"{_P}.asl.parse.preprocessor.Preprocessor._query_language_per_scope"),
    ("integration_request", f"{_TASK}.service.state_task_service.StateTaskService._normalise_parameters"),
    ("integration_response", f"{_TASK}.service.state_task_service.StateTaskService._normalise_response"),
    ("jsonpath_parse_result_path", f"{_P}.asl.component.common.path.result_path.parse"),
    ("jsonpath_parse_extract", f"{_P}.asl.utils.json_path.parse"),
    ("moto_module_list", "moto.backends.list_of_moto_modules"),
    ("response_method_names", "moto.core.responses.method_names_from_class"),
    # the engine deep-copies every state's input, result and context (~20% of an EXPRESS run's CPU)
    ("json_deepcopy", f"{_P}.asl.eval.states.copy"),
    # X-Ray queries moto answers empty/approximately + the service-map page (see _local_dispatch)
    ("xray_local_dispatch", "moto.moto_server.werkzeug_app.DomainDispatcherApplication.__call__"),
    # DynamoDB expressions, parsed in pure Python on every call (~20% of the server's CPU per payment)
    ("ddb_update_parse", f"{_DDB}.parsing.expressions.UpdateExpressionParser.make"),
    ("ddb_validator_copy", f"{_DDB}.parsing.validators.deepcopy"),
    ("ddb_condition_parse", f"{_DDB}.comparisons.ConditionExpressionParser.parse"),
    ("ddb_traverse", f"{_DDB}.parsing.ast_nodes.DepthFirstTraverser.traverse"),
    # TransactWriteItems deep-copied each table it writes, whole, per call (O(table): 55% of the CPU)
    ("ddb_transact", f"{_DDB}.models.DynamoDBBackend.transact_write_items"),
    ("ddb_transact_copy", f"{_DDB}.models.copy"),
    # an Item re-measured all its attributes for each one added (O(n^2) per PutItem)
    ("ddb_item_size", f"{_DDB}.models.dynamo_type.Item.__init__"),
    # a Parallel branch's thread name was str() of the whole branch program (~2% of a payment's CPU)
    ("branch_thread_name", f"{_P}.asl.component.state.exec.state_parallel.branch_worker.BranchWorker.start"),
]

# Modules that imported TMP_THREADS by name: each gets the pruned list.
_THREAD_LIST_MODULES = [
    f"{_P}.utils",
    f"{_P}.asl.component.program.program",
    f"{_P}.asl.component.test_state.program.test_state_program",
    f"{_P}.asl.component.state.exec.state_map.iteration.inline_iteration_component",
    f"{_P}.asl.component.state.exec.state_task.service.state_task_service_callback",
    f"{_P}.asl.component.state.exec.state_parallel.branch_worker",
    f"{_P}.asl.component.state.exec.execute_state",
    f"{_P}.backend.execution_worker",
]

# How often a .sync / .sync:2 task polls its child execution (moto: 0.5 s real time).
_SYNC_POLL_SECONDS = 0.02
_DEFINITION_CACHE_SIZE = 256
_EXEC_ARN_FORMAT = re.compile(
    r"^arn:(?P<partition>[^:]+):states:[-0-9a-zA-Z]+:(?P<account_id>[0-9]{12}):(execution|express):.+"
)


@dataclass
class _Config:
    clock: Clock
    lambda_invoker: LambdaInvoker
    endpoint_url: str
    segment_sink: SegmentSink
    region: str
    clients: dict[tuple[str, str], Any] = field(default_factory=dict)


_config: _Config | None = None
_install_lock = threading.Lock()
_installed = False
_clients_lock = threading.Lock()


def install(
    *,
    clock: Clock,
    lambda_invoker: LambdaInvoker,
    endpoint_url: str,
    segment_sink: SegmentSink | None = None,
    region: str = "us-east-1",
) -> None:
    """Patch moto (once per process) and bind the patches to this configuration."""
    global _config, _installed
    from local.aws_endpoint import enable_step_functions_execution

    enable_step_functions_execution()
    _config = _Config(
        clock=clock,
        lambda_invoker=lambda_invoker,
        endpoint_url=endpoint_url.rstrip("/"),
        # not `or`: an empty SegmentStore is falsy (it has __len__)
        segment_sink=segment_sink if segment_sink is not None else NullSegmentSink(),
        region=region,
    )
    with _install_lock:
        if not _installed:
            _check_moto_version()
            _apply_patches()
            _installed = True


def is_installed() -> bool:
    return _installed


def _cfg() -> _Config:
    if _config is None:
        raise RuntimeError("local.moto_adapter.install() has not been called")
    return _config


def _check_moto_version() -> None:
    from importlib.metadata import version

    found = version("moto")
    if found != MOTO_VERSION:
        raise RuntimeError(f"local.moto_adapter is written against moto {MOTO_VERSION}, found {found}")


def resolve(qualname: str) -> tuple[Any, str]:
    """(owner, attribute name) of a dotted target: the longest importable module prefix, then attributes."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1]
    raise ImportError(qualname)


# ---------------------------------------------------------------------------------------------------------
# a. Lambda tasks
# ---------------------------------------------------------------------------------------------------------
def _client_error(exc: LambdaServiceError) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": exc.error_type, "Message": exc.message},
        "ResponseMetadata": {"HTTPStatusCode": exc.status_code, "RequestId": str(uuid.uuid4())},
    }
    return ClientError(response, "Invoke")


def _decode_payload(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _execute_lambda_function_integration(
    env: Any, parameters: dict, region: str, state_credentials: Any
) -> None:
    from moto.stepfunctions.parser.api import InvocationResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.utilities.collections import select_from_typed_dict

    if env.is_mocked_mode():  # mock-config test cases keep moto's own behaviour
        _ORIGINALS["lambda_invoke"](env, parameters, region, state_credentials)
        return
    cfg = _cfg()
    payload = lambda_eval_utils.to_payload_type(parameters.get("Payload"))
    invocation_type = parameters.get("InvocationType") or "RequestResponse"
    function = str(parameters["FunctionName"])
    qualifier = parameters.get("Qualifier")
    if qualifier and function.count(":") in (0, 6):
        function = f"{function}:{qualifier}"
    trace = _execution_trace(env)
    subsegment_id = secrets.token_hex(8)
    header = None if trace is None else f"Root={trace.root};Parent={subsegment_id};Sampled=1"
    started = cfg.clock.now()
    try:
        with cfg.clock.busy():
            result = cfg.lambda_invoker.invoke(
                function,
                payload or b"{}",
                invocation_type=invocation_type,
                trace_header=header,
                client_context=parameters.get("ClientContext"),
            )
    except LambdaServiceError as exc:
        if trace is not None:
            _record_task(trace, env, subsegment_id, started, function, error=True)
        raise _client_error(exc) from exc
    if trace is not None:
        _record_task(trace, env, subsegment_id, started, function, error=bool(result.function_error))

    payload_json = _decode_payload(result.payload) if result.payload else ""
    if result.function_error:
        # AWS: the error name is the payload's errorType, the cause the whole error payload as JSON text.
        payload_str = json.dumps(payload_json, separators=(",", ":"))
        raise lambda_eval_utils.LambdaFunctionErrorException(result.function_error, payload_str)
    response: dict[str, Any] = {
        "StatusCode": result.status_code,
        "Payload": payload_json,
        "ExecutedVersion": result.executed_version,
    }
    if parameters.get("LogType") == "Tail":
        response["LogResult"] = base64.b64encode(result.log_tail.encode()[-4096:]).decode()
    env.stack.append(select_from_typed_dict(typed_dict=InvocationResponse, obj=response))


def _state_task_lambda_from_error(self: Any, env: Any, ex: Exception) -> Any:
    """A plain-ARN Lambda task reports service errors as AWS does (Lambda.<Code>), not as 'Exception'."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent

    if not isinstance(ex, ClientError):
        return _ORIGINALS["lambda_client_error"](self, env, ex)
    meta = ex.response.get("ResponseMetadata", {})
    code = ex.response["Error"]["Code"]
    error = f"Lambda.{code}"
    cause = (
        f"{ex.response['Error']['Message']} (Service: AWSLambda; Status Code: {meta.get('HTTPStatusCode')}; "
        f"Error Code: {code}; Request ID: {meta.get('RequestId')}; Proxy: null)"
    )
    details: Any = {"lambdaFunctionFailedEventDetails": {"error": error, "cause": cause}}
    return FailureEvent(
        env=env,
        error_name=CustomErrorName(error),
        event_type=HistoryEventType.LambdaFunctionFailed,
        event_details=details,
    )


# ---------------------------------------------------------------------------------------------------------
# b. Integrations: boto clients against our endpoint
# ---------------------------------------------------------------------------------------------------------
def _boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    from local.aws_endpoint import _IN_PROCESS

    cfg = _cfg()
    key = (region, service)
    client = cfg.clients.get(key)
    if client is not None:
        return client
    with _clients_lock:  # creating boto3 clients is not thread-safe; using them is
        client = cfg.clients.get(key)
        if client is None:
            client = stock_engine_client(region, service, cfg.endpoint_url)
            app = _IN_PROCESS.get(cfg.endpoint_url)
            if app is not None and DIRECT_SDK_CALLS:  # served by this process: skip botocore's transport
                client = _EngineClient(client, app)
            cfg.clients[key] = client
    return client


def stock_engine_client(region: str, service: str, endpoint_url: str) -> Any:
    """The engine's boto3 client for ``service`` with botocore's whole call path (answered in process when
    this process serves ``endpoint_url``)."""
    import boto3
    from botocore.config import Config
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    from local.aws_endpoint import serve_in_process

    session: Any = boto3.session.Session()
    client = session.client(
        service_name=service,
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(
            parameter_validation=False,
            inject_host_prefix=False,
            retries={"max_attempts": 0, "total_max_attempts": 1},
            connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
            max_pool_connections=64,
        ),
    )
    return serve_in_process(client)


# The engine's integrations (dynamodb:updateItem, sns:publish, events:putEvents, sqs:sendMessage, ...) ran
# botocore's whole call per Task: endpoint ruleset, SigV4 signing, user-agent rebuild, retry bookkeeping,
# request preparation and ~10 event emits cost ~1 ms a call, about a third of the server's CPU in those calls.
# For the protocols below, _EngineClient keeps what decides the answer (botocore's own serializer, the events
# whose handlers can change parameters or errors, botocore's own parser and exception classes) and hands the
# request to the in-process endpoint directly. Anything else takes the stock client.
_DIRECT_PROTOCOLS = frozenset({"json", "query"})
DIRECT_SDK_CALLS = True  # False: the engine's clients take botocore's whole path (tests compare the two)
_ONE_ATTEMPT = {"total_max_attempts": 1, "mode": "standard"}
# The botocore handlers the direct path does not run, per event (tests/local/test_moto_contract.py pins them):
# signing, user agent and retry headers, retries, auth-scheme choice. Each is a no-op for an in-process moto.
SKIPPED_EVENT_HANDLERS: dict[str, frozenset[str]] = {
    "before-endpoint-resolution": frozenset(),
    "request-created": frozenset(
        {
            "RequestSigner.handler",
            "MaxAttemptsSeeder.seed_max_attempts",
            "UserAgentString.rebuild_and_replace_user_agent_handler",
            "add_retry_headers",
        }
    ),
    "choose-signer": frozenset({"set_operation_specific_signer", "_set_auth_scheme_preference_signer"}),
    "before-sign": frozenset(),
    "needs-retry": frozenset({"RetryHandler.needs_retry"}),
    "before-parse": frozenset(),
    "response-received": frozenset(),
}


class _Prepared:
    """What ``_dispatch_in_process`` reads of a botocore request."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, Any], body: bytes) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body


class _EngineClient:
    """A boto3 client of the in-process endpoint whose JSON/query-protocol operations skip botocore's
    transport (same parameters, body, answer, parsed result and exception classes); every other attribute,
    and every operation it cannot send that way, is the wrapped client's."""

    def __init__(self, client: Any, app: Any) -> None:
        meta = client.meta
        self._client, self._app = client, app
        self._service_id = meta.service_model.service_id.hyphenize()
        self._serializer = client._serializer
        self._parser = client._endpoint._response_parser_factory.create_parser(
            meta.service_model.resolved_protocol
        )
        self._user_agent = client._user_agent_creator.to_string()
        self._scope = f"{meta.region_name}/{meta.service_model.signing_name}/aws4_request"
        self._access_key = client._request_signer._credentials.access_key
        # one attempt in standard mode: botocore's retry handler then only marks MaxAttemptsReached (below)
        retries = meta.config.retries or {}
        self._direct = meta.service_model.resolved_protocol in _DIRECT_PROTOCOLS and retries == _ONE_ATTEMPT

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        op_name = self._client.meta.method_to_api_mapping.get(name)
        if op_name is None or not self._direct:
            return attr
        op = self._client.meta.service_model.operation_model(op_name)
        if not _sendable_directly(op):
            return attr
        method = functools.partial(self._call, op)
        setattr(self, name, method)  # found once; later calls skip __getattr__
        return method

    def _call(self, op: Any, **params: Any) -> Any:
        """botocore's ``_make_api_call`` for one operation of a served-in-process endpoint."""
        from botocore.awsrequest import prepare_request_dict
        from botocore.hooks import first_non_none_response

        meta = self._client.meta
        events, event_suffix = meta.events, f"{self._service_id}.{op.name}"
        context: dict[str, Any] = {  # what botocore's handlers may read of its request context
            "client_region": meta.region_name,
            "client_config": meta.config,
            "has_streaming_input": op.has_streaming_input,
            "auth_type": op.resolved_auth_type,
            "unsigned_payload": op.unsigned_payload,
            "auth_options": meta.service_model.metadata.get("auth"),
        }
        responses = events.emit(
            f"provide-client-params.{event_suffix}", params=params, model=op, context=context
        )
        params = first_non_none_response(responses, default=params)
        events.emit(f"before-parameter-build.{event_suffix}", params=params, model=op, context=context)
        request = self._serializer.serialize_to_request(params, op)
        request.pop("host_prefix", None)  # the engine's clients never inject host prefixes
        prepare_request_dict(
            request, endpoint_url=meta.endpoint_url, user_agent=self._user_agent, context=context
        )
        _, answer = events.emit_until_response(
            f"before-call.{event_suffix}",
            model=op,
            params=request,
            request_signer=self._client._request_signer,
            context=context,
        )
        if answer is not None:  # a stubber's canned answer, as botocore honours it
            http, parsed = answer
        else:
            http, parsed = self._send(op, request)
        events.emit(
            f"after-call.{event_suffix}", http_response=http, parsed=parsed, model=op, context=context
        )
        if http.status_code >= 300:
            code = context.get("error_code_override") or parsed.get("Error", {}).get("Code")
            raise self._client.exceptions.from_code(code)(parsed, op.name)
        return parsed

    def _send(self, op: Any, request: dict[str, Any]) -> tuple[Any, Any]:
        from botocore.endpoint import convert_to_response_dict

        from local.aws_endpoint import _dispatch_in_process

        body = request["body"]
        if isinstance(body, dict):  # query protocol: form-encoded as AWSPreparedRequest does
            from urllib.parse import urlencode

            body = urlencode(
                [
                    (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
                    for k, v in body.items()
                ],
                doseq=True,
            )
        data = body.encode() if isinstance(body, str) else bytes(body or b"")
        now = time.gmtime()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
        headers = dict(request["headers"])
        headers["X-Amz-Date"] = amz_date
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{amz_date[:8]}/{self._scope}, "
            f"SignedHeaders={';'.join(sorted(h.lower() for h in headers if h != 'User-Agent'))}, "
            "Signature=in-process"
        )
        headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
        headers["amz-sdk-request"] = "attempt=1; max=1"
        http = _dispatch_in_process(self._app, _Prepared(request["method"], request["url"], headers, data))
        response = convert_to_response_dict(http, op)
        parsed = self._parser.parse(response, op.output_shape)
        if http.status_code >= 300:
            self._client._endpoint._add_modeled_error_fields(response, parsed, op, self._parser)
        parsed.setdefault("ResponseMetadata", {})["MaxAttemptsReached"] = True  # the retry handler's mark
        parsed["ResponseMetadata"]["RetryAttempts"] = 0
        return http, parsed


def _sendable_directly(op: Any) -> bool:
    """An operation whose request is all in its serialized body: no streams, checksums, compression."""
    return not (
        op.has_streaming_input
        or op.has_streaming_output
        or op.has_event_stream_input
        or op.has_event_stream_output
        or op.http_checksum
        or op.http_checksum_required
        or op.request_compression
        or op.endpoint
    )


# ---------------------------------------------------------------------------------------------------------
# c. JSONata
# ---------------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """jsonata-python returns list subclasses and ints-as-floats; give the engine plain JSON values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _eval_jsonata(expression: str) -> Any:
    import jsonata
    from moto.stepfunctions.parser.asl.jsonata.jsonata import JSONataException

    try:
        return _plain(jsonata.Jsonata(expression).evaluate(None))
    except Exception as exc:  # jsonata-python raises JException; the engine expects JSONataException
        code = getattr(exc, "error", None) or "UNKNOWN"
        raise JSONataException(str(code), str(exc)) from exc


def _encode_jsonata_variable_declarations(bindings: dict[str, Any]) -> str:
    # moto writes strings as '"' + value + '"' unescaped: a quote or backslash in data broke the expression.
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str  # datetimes as ISO strings

    return "".join(
        f"{name}:={to_json_str(value, separators=(',', ':'))};" for name, value in bindings.items()
    )


# ---------------------------------------------------------------------------------------------------------
# e. Integration request/response casing (moto left both as `pass`)
# ---------------------------------------------------------------------------------------------------------
_operations: dict[str, dict[str, Any]] = {}


def _operation_model(service: str, action: str) -> Any:
    """botocore's model of ``service``'s snake_case ``action`` (None if unknown)."""
    import botocore.session
    from botocore import xform_name

    ops = _operations.get(service)
    if ops is None:
        try:
            model = botocore.session.get_session().get_service_model(service)
        except Exception:  # an unknown service: leave its parameters as the state wrote them
            return None
        ops = {xform_name(name): model.operation_model(name) for name in model.operation_names}
        _operations[service] = ops
    return ops.get(action)


# The Task state being evaluated on this thread (set by _evaluate_with_timeout): moto's integration hooks
# get no env, but a nested execution must know its parent's trace.
_evaluating = threading.local()


def _normalise_parameters(
    self: Any, parameters: dict, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    """SFN writes API parameters PascalCase (StateMachineArn); boto wants the model's (stateMachineArn).
    A nested StartExecution of a traced execution carries its trace header, as in AWS: one trace."""
    service = self._get_boto_service_name(boto_service_name)
    action = self._get_boto_service_action(service_action_name)
    op = _operation_model(service, action)
    if op is not None and op.input_shape is not None:
        self._to_boto_request(parameters, op.input_shape)
    env = getattr(_evaluating, "env", None)
    starts = ("start_execution", "start_sync_execution")
    if service == "stepfunctions" and action in starts and env is not None:
        trace = _execution_trace(env)
        if trace is not None and not parameters.get("traceHeader"):
            parameters["traceHeader"] = f"Root={trace.root};Parent={trace.segment_id};Sampled=1"


def _normalise_response(
    self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    """And results come back PascalCase as AWS shows them (ExecutionArn, Output, Status)."""
    op = _operation_model(
        self._get_boto_service_name(boto_service_name), self._get_boto_service_action(service_action_name)
    )
    if op is not None and op.output_shape is not None:
        self._from_boto_response(response, op.output_shape)


# ---------------------------------------------------------------------------------------------------------
# d/g. StartExecution, StartSyncExecution, SendTaskFailure
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Trace:
    """X-Ray state of one traced execution: its segment id and the Task subsegments recorded so far."""

    root: str
    segment_id: str
    start: float
    parent_id: str | None = None
    subsegments: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_traces: dict[str, _Trace] = {}


def _new_trace_root(clock: Clock) -> str:
    return f"1-{int(clock.now()):08x}-{secrets.token_hex(12)}"


def _trace_root(header: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


def _execution_trace(env: Any) -> _Trace | None:
    return _traces.get(env.states.context_object.context_object_data["Execution"]["Id"])


def _record_task(
    trace: _Trace, env: Any, subsegment_id: str, start: float, resource: str, error: bool
) -> None:
    subsegment: dict[str, Any] = {
        "id": subsegment_id,
        "name": str(env.next_state_name),
        "start_time": start,
        "end_time": _cfg().clock.now(),
        "aws": {"function_name": resource.rsplit(":", 1)[-1], "resource_arn": resource},
    }
    if error:
        subsegment["error"] = True
    with trace.lock:
        trace.subsegments.append(subsegment)


def _emit_execution_segment(execution: Any) -> None:
    trace = _traces.pop(execution.exec_arn, None)
    if trace is None:
        return
    status = str(getattr(execution.exec_status, "value", execution.exec_status))
    segment: dict[str, Any] = {
        "name": execution.state_machine.name,
        "id": trace.segment_id,
        "trace_id": trace.root,
        "start_time": trace.start,
        "end_time": _cfg().clock.now(),
        "origin": "AWS::StepFunctions::StateMachine",
        "aws": {
            "stepfunctions": {
                "execution_arn": execution.exec_arn,
                "state_machine_arn": execution.state_machine.arn,
                "status": status,
            }
        },
        "subsegments": list(trace.subsegments),
    }
    if trace.parent_id:
        segment["parent_id"] = trace.parent_id
    if status in ("FAILED", "TIMED_OUT", "ABORTED"):
        segment["error"] = True
    _cfg().segment_sink.emit(segment)


def _start_execution(
    self: Any,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
    *,
    sync: bool = False,
) -> Any:
    """moto's start_execution, plus: a UUID name when none is given (moto: ':None'), EXPRESS execution ARNs
    and type, clock-based start date, trace header recorded, and the synchronous variant."""
    from moto.stepfunctions.parser.api import InvalidExecutionInput, StateMachineTypeNotSupported
    from moto.stepfunctions.parser.backend.execution import Execution, SyncExecution

    cfg = _cfg()
    state_machine = self.describe_state_machine(state_machine_arn)
    sm_type: Any = getattr(state_machine, "type", "STANDARD") or "STANDARD"
    if sync and sm_type != "EXPRESS":
        raise StateMachineTypeNotSupported("This operation is not supported by this type of state machine")
    if name:
        existing = state_machine._handle_name_input_idempotency(name, execution_input)
        if existing is not None:
            return existing
    else:
        name = str(uuid.uuid4())
    # Snapshot the machine without its executions (live threads). moto deep-copies it; a shallow copy is
    # enough: updates replace the machine's attributes (definition, role, ...), never mutate them in place.
    clone = copy.copy(state_machine)
    clone.executions = []
    clone.sm_type = sm_type  # moto hard-codes STANDARD on every machine
    input_data = "{}" if execution_input is None else execution_input
    try:
        json.loads(input_data)
    except ValueError as exc:
        raise InvalidExecutionInput(f"Invalid State Machine Execution Input: '{exc}'") from None
    prefix = f"arn:{self.partition}:states:{self.region_name}:{self.account_id}"
    if sm_type == "EXPRESS":
        arn = f"{prefix}:express:{state_machine.name}:{name}:{uuid.uuid4()}"
    else:
        arn = f"{prefix}:execution:{state_machine.name}:{name}"
    tracing = bool((getattr(state_machine, "tracingConfiguration", None) or {}).get("enabled"))
    if trace_header or tracing:
        root = _trace_root(trace_header or "") or _new_trace_root(cfg.clock)
        parent = re.search(r"Parent=([0-9a-f]{16})", trace_header or "")
        _traces[arn] = _Trace(
            root=root,
            segment_id=secrets.token_hex(8),
            start=cfg.clock.now(),
            parent_id=parent.group(1) if parent else None,
        )
    execution_class = SyncExecution if sync else Execution
    execution = execution_class(
        name=name,
        sm_type=sm_type,
        role_arn=clone.roleArn,
        exec_arn=arn,
        account_id=self.account_id,
        region_name=self.region_name,
        state_machine=clone,
        start_date=utcnow(cfg.clock),
        cloud_watch_logging_session=None,
        input_data=input_data,
        trace_header=trace_header,
        activity_store={},
    )
    state_machine.executions.append(execution)
    execution.start()
    return execution


def _start_sync_execution(
    self: Any,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    return _start_execution(self, state_machine_arn, name, execution_input, trace_header, sync=True)


def _request_trace_header(self: Any) -> str | None:
    """The body's traceHeader, else the X-Amzn-Trace-Id the X-Ray SDK puts on the HTTP call (AWS takes both):
    a traced Lambda that starts a workflow continues its own trace without passing traceHeader itself."""
    header = self._get_param("traceHeader")
    if header:
        return str(header)
    http_header = self.headers.get("X-Amzn-Trace-Id") if self.headers is not None else None
    return str(http_header) if http_header else None


def _response_start_execution(self: Any) -> Any:
    from moto.core.responses import ActionResult

    execution = self.stepfunction_backend.start_execution(
        self._get_param("stateMachineArn"),
        self._get_param("name"),
        self._get_param("input", if_none="{}"),
        _request_trace_header(self),
    )
    return ActionResult({"executionArn": execution.execution_arn, "startDate": execution.start_date})


def _response_start_sync_execution(self: Any) -> Any:
    execution = self.stepfunction_backend.start_sync_execution(
        self._get_param("stateMachineArn"),
        self._get_param("name"),
        self._get_param("input", if_none="{}"),
        _request_trace_header(self),
    )
    output = dict(execution.to_start_sync_execution_output())
    output["status"] = str(getattr(output["status"], "value", output["status"]))
    elapsed_ms = max(0.0, (execution.stop_date - execution.start_date).total_seconds() * 1000)
    output["billingDetails"] = {
        "billedMemoryUsedInMB": 64,
        "billedDurationInMilliseconds": max(100, math.ceil(elapsed_ms / 100.0) * 100),
    }
    # Serialized here rather than by moto's model-driven serializer (~0.8 ms per call, a tenth of a 5-task
    # EXPRESS run): a flat structure of strings, two timestamps and two small maps. Same JSON (contract test).
    body = json.dumps(
        {key: value for key, value in output.items() if value is not None}, default=_epoch_seconds
    )
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, body


def _epoch_seconds(value: Any) -> int | float:
    """A timestamp as moto's JSON serializer writes it (epoch seconds, truncated to milliseconds)."""
    if not isinstance(value, datetime.datetime):
        raise TypeError(f"not JSON serializable: {type(value).__name__}")
    seconds = calendar.timegm(value.utctimetuple())
    return seconds + (value.microsecond // 1000) / 1000.0 if value.microsecond else seconds


def _response_send_task_failure(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


def _fix_error_codes() -> None:
    """The parser's exceptions keep their AWS code in ``code`` but moto's serializer reads ``TYPE``, so every
    one went out with an empty error code (boto3: 'An error occurred ()')."""
    from moto.stepfunctions.parser import api

    for value in vars(api).values():
        if isinstance(value, type) and issubclass(value, api.ServiceException):
            code = value.__dict__.get("code")
            if isinstance(code, str) and value.__dict__.get("TYPE") is None:
                value.TYPE = code
                value.STATUS = int(value.__dict__.get("status_code", 400))


def _reflect_execution_status(self: Any) -> None:
    _ORIGINALS["stop_date"](self)
    self.execution.stop_date = utcnow(_cfg().clock)
    _emit_execution_segment(self.execution)


def _heartbeat_from_error(self: Any, env: Any, ex: Exception) -> Any:
    """AWS reports a missed heartbeat as States.HeartbeatTimeout; moto says States.Timeout."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError

    event = _ORIGINALS["heartbeat_error"](self, env, ex)
    if not isinstance(ex, HeartbeatTimeoutError):
        return event
    name = StatesErrorNameType.StatesHeartbeatTimeout.to_name()
    details: Any = copy.deepcopy(event.event_details) or {}
    for spec in details.values():
        if isinstance(spec, dict) and "error" in spec:
            spec["error"] = name
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout),
        event_type=event.event_type,
        event_details=details,
    )


class _PerInstanceList:
    """moto keeps the parser's QueryLanguage scope stack in a class attribute shared by every parse: one
    failed parse (or two concurrent ones) left it dirty and later valid definitions were rejected."""

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        return obj.__dict__.setdefault("_query_language_per_scope", [])


# ---------------------------------------------------------------------------------------------------------
# f. Parsed-definition cache
# ---------------------------------------------------------------------------------------------------------
_programs: OrderedDict[str, Any] = OrderedDict()
_programs_lock = threading.Lock()


def _cached_entrypoint(self: Any) -> Any:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definition = self._evaluation_details.state_machine_details.definition
    with _programs_lock:
        program = _programs.get(definition)
        if program is not None:
            _programs.move_to_end(definition)
            return program
    # Parse outside the lock (ANTLR is slow); a concurrent duplicate parse is harmless.
    program = AmazonStateLanguageParser.parse(definition)[0]
    with _programs_lock:
        _programs[definition] = program
        while len(_programs) > _DEFINITION_CACHE_SIZE:
            _programs.popitem(last=False)
    return program


# ---------------------------------------------------------------------------------------------------------
# h. Thread list
# ---------------------------------------------------------------------------------------------------------
class PrunedThreadList(list):
    """moto appends every engine thread to a global list and never removes one; drop finished ones."""

    _lock = threading.Lock()

    def append(self, thread: Any) -> None:
        with self._lock:
            self[:] = [t for t in self if t.is_alive()]
            super().append(thread)


_thread_list = PrunedThreadList()


# ---------------------------------------------------------------------------------------------------------
# i. Clock
# ---------------------------------------------------------------------------------------------------------
class _StopEvent(threading.Event):
    """moto pulses ``program_state_event`` (set then clear) on stop/error/timeout; a clock wait polling for
    cancellation would miss the pulse, so each pulse also latches ``latched``."""

    def __init__(self) -> None:
        super().__init__()
        self.latched = threading.Event()

    def set(self) -> None:
        self.latched.set()
        super().set()


def _environment_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _ORIGINALS["environment_stop_event"](self, *args, **kwargs)
    self.program_state_event = _StopEvent()


def _interruptible_sleep(env: Any, seconds: float) -> None:
    """Sleep ``seconds`` of clock time (auto-jumpable), returning early when the execution stops."""
    clock = _cfg().clock
    deadline = clock.now() + max(0.0, seconds)
    stop = getattr(env.program_state_event, "latched", None)
    while env.is_running():
        remaining = deadline - clock.now()
        if remaining <= 0:
            return
        if clock.sleep(remaining, auto=True, cancel=stop) and stop is not None:
            stop.clear()  # a state change: re-check whether the execution is still running


def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
    _interruptible_sleep(env, float(wait_seconds))


def _retrier_eval_body(self: Any, env: Any) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry.max_attempts_decl import MaxAttemptsOutcome
    from moto.stepfunctions.parser.asl.component.common.retry.retrier_outcome import RetrierOutcome

    self.error_equals.eval(env)
    if not env.stack.pop():
        env.stack.append(RetrierOutcome.Skipped)
        return
    self.max_attempts.eval(env=env)
    if env.stack.pop() == MaxAttemptsOutcome.EXHAUSTED:
        env.stack.append(RetrierOutcome.Failed)
        return
    # IntervalSeconds x BackoffRate^n, capped by MaxDelaySeconds, then FULL jitter: uniform(0, interval).
    self.interval_seconds.eval(env=env)
    self.backoff_rate.eval(env=env)
    self.max_delay_seconds.eval(env=env)
    self.jitter_strategy.eval(env=env)
    _interruptible_sleep(env, float(env.stack.pop()))
    env.stack.append(RetrierOutcome.Executed)


def _evaluate_with_timeout(self: Any, env: Any) -> None:
    """moto's ExecutionState._evaluate_with_timeout with the TimeoutSeconds wait on the clock."""
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError

    self.timeout.eval(env=env)
    timeout_seconds = env.stack.pop()
    frame = env.open_frame()
    frame.states.reset(input_value=env.states.get_input())
    frame.stack = json_deepcopy(env.stack)
    outputs: list[Any] = []
    errors: list[Exception | None] = [None]
    done = threading.Event()

    def run() -> None:
        _evaluating.env = frame  # for the integration hooks below, which moto calls without the env
        try:
            self._eval_execution(frame)
            outputs.extend(frame.stack)
        except Exception as ex:
            errors.append(ex)
        finally:
            _evaluating.env = None
        done.set()

    if self.timeout.is_default_value():
        # No TimeoutSeconds declared: the only deadline is the ASL default (99,999,999 s, ~3 years), which
        # no clock reaches while a task runs, so the watchdog thread would only wait. Running the task on
        # this thread saves a thread start and two GIL hand-offs per Task state (~20% of an EXPRESS run).
        run()
        finished = True
    else:
        thread = threading.Thread(target=run, daemon=True)
        _thread_list.append(thread)
        thread.start()
        finished = _cfg().clock.wait_event(done, timeout_seconds)
    frame.set_ended()
    env.close_frame(frame)

    error = errors.pop()
    if error:
        raise error
    if not finished:
        raise EvalTimeoutError()
    output = outputs.pop()
    env.stack.append(output)
    if not self._is_language_query_jsonpath():
        env.states.set_result(output)
    if self.assign_decl:
        self.assign_decl.eval(env=env)
    if self.result_selector:
        self.result_selector.eval(env=env)
    if self.result_path:
        self.result_path.eval(env)
    else:
        env.states.reset(input_value=env.stack.pop())


def _callback_wait(self: Any, timeout: float | None = None) -> Any:
    _cfg().clock.wait_event(self._notify_event, timeout)
    return self._outcome


def _heartbeat_clear_and_wait(self: Any) -> bool:
    with self._mutex:
        if self._next_heartbeat_event.is_set():
            self._next_heartbeat_event.clear()
            return True
    return bool(_cfg().clock.wait_event(self._next_heartbeat_event, self._heartbeat_seconds))


def _activity_start_wait(self: Any, timeout_seconds: float) -> Any:
    _cfg().clock.wait_event(self._next_activity_task_start_event, timeout_seconds)
    return self._outcome


def _program_eval(self: Any, env: Any) -> None:
    """moto's Program.eval with the state machine's TimeoutSeconds measured on the clock."""
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    timeout = self.timeout_seconds.timeout_seconds if self.timeout_seconds else None
    env.next_state_name = self.start_at.start_at_name
    if timeout is None:
        # No deadline to watch: evaluate on this thread (moto's worker thread would only be joined).
        try:
            EvalComponent.eval(self, env)
        except Exception:  # what the thread's excepthook would have reported; the execution ends as moto's
            _LOG.exception("Step Functions program evaluation raised")
        return
    done = threading.Event()

    def run() -> None:
        try:
            EvalComponent.eval(self, env)
        finally:
            done.set()

    worker = threading.Thread(target=run, daemon=True)
    _thread_list.append(worker)
    worker.start()
    if not _cfg().clock.wait_event(done, timeout):
        env.set_timed_out()


def _current_timestamp() -> datetime.datetime:
    return utcnow(_cfg().clock)


def _engine_failure_log(self: Any, failure_event_exception: Any) -> None:
    """moto's failure log, at DEBUG: an execution's failures are in its history (and its state machine's
    CloudWatch log group when logging is on), where Step Functions reports them."""
    if logging.getLogger(_P + ".asl.component.eval_component").isEnabledFor(logging.DEBUG):
        _ORIGINALS["engine_failure_log"](self, failure_event_exception)


def _engine_exception_log(self: Any, exception: Exception) -> None:
    if logging.getLogger(_P + ".asl.component.eval_component").isEnabledFor(logging.DEBUG):
        _ORIGINALS["engine_exception_log"](self, exception)


def _history_timestamp_format(value: datetime.datetime | None = None) -> str:
    """moto's iso_8601_datetime_with_milliseconds (``strftime(...)[:-3] + "Z"``, ~6 us) via isoformat (~2 us):
    the same text for the timestamps the engine stamps its history events with."""
    from moto.core.utils import utcnow as moto_utcnow

    stamp = (value or moto_utcnow()).replace(tzinfo=None)
    return stamp.isoformat(timespec="milliseconds") + "Z"


def _to_json_str(obj: Any, separators: tuple[str, str] | None = None) -> str:
    """moto's to_json_str for the engine's JSON values through json's own encoder (moto builds a JSONEncoder
    subclass per call, whose only addition is a default for dates and other objects); anything JSON cannot
    encode still goes to moto's."""
    try:
        return json.dumps(obj, separators=separators)
    except (TypeError, ValueError):
        return str(_ORIGINALS["to_json_str"](obj, separators))


# ---------------------------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------------------------
_ORIGINALS: dict[str, Any] = {}

_REPLACEMENTS: dict[str, Any] = {
    "lambda_invoke": _execute_lambda_function_integration,
    "lambda_client_error": _state_task_lambda_from_error,
    "sync_poll_delay": _SYNC_POLL_SECONDS,
    "jsonata_eval": _eval_jsonata,
    "start_execution": _start_execution,
    "start_sync_execution": _start_sync_execution,
    "execution_arn_format": _EXEC_ARN_FORMAT,
    "response_start_execution": _response_start_execution,
    "response_start_sync_execution": _response_start_sync_execution,
    "response_send_task_failure": _response_send_task_failure,
    "definition_cache": _cached_entrypoint,
    "stop_date": _reflect_execution_status,
    "heartbeat_error": _heartbeat_from_error,
    "environment_stop_event": _environment_init,
    "wait_state": _wait_interval,
    "retry_backoff": _retrier_eval_body,
    "state_timeout": _evaluate_with_timeout,
    "callback_wait": _callback_wait,
    "heartbeat_wait": _heartbeat_clear_and_wait,
    "activity_start_wait": _activity_start_wait,
    "program_timeout": _program_eval,
    "history_timestamp": staticmethod(_current_timestamp),
    "history_timestamp_format": _history_timestamp_format,
    "engine_failure_log": _engine_failure_log,
    "engine_exception_log": _engine_exception_log,
    "parser_scope": _PerInstanceList(),
    "integration_request": _normalise_parameters,
    "integration_response": _normalise_response,
}


def _rebind_by_name(original: Any, replacement: Any, attr: str) -> None:
    """Functions imported with ``from x import f`` live on in each importer; replace every copy."""
    for name, module in list(sys.modules.items()):
        if name.startswith(_P) and getattr(module, attr, None) is original:
            setattr(module, attr, replacement)


def _apply_patches() -> None:
    # Import the whole engine first so every module that copies a patched name exists.
    importlib.import_module(f"{_P}.models")
    importlib.import_module(f"{_P}.asl.component.state.exec.state_task.service.state_task_service_factory")
    importlib.import_module(f"{_P}.asl.component.common.string.string_expression")
    importlib.import_module(f"{_P}.asl.jsonata.validations")
    for hook, qualname in HOOKS:
        owner, attr = resolve(qualname)
        _ORIGINALS[hook] = owner.__dict__.get(attr, getattr(owner, attr, None))
        if hook == "boto_client_for":
            _rebind_by_name(_ORIGINALS[hook], _boto_client_for, attr)
            setattr(owner, attr, _boto_client_for)
        elif hook == "to_json_str":
            _rebind_by_name(_ORIGINALS[hook], _to_json_str, attr)
            setattr(owner, attr, _to_json_str)
        elif hook == "jsonata_declarations":
            _rebind_by_name(_ORIGINALS[hook], _encode_jsonata_variable_declarations, attr)
            setattr(owner, attr, _encode_jsonata_variable_declarations)
        elif hook == "error_codes":
            _fix_error_codes()
        elif hook == "json_deepcopy":
            for name, user in list(sys.modules.items()):
                if name.startswith(_P) and getattr(user, "copy", None) is copy:
                    user.copy = _JSON_COPY  # type: ignore[attr-defined]
        elif hook == "thread_list":
            for module_name in _THREAD_LIST_MODULES:
                module: Any = importlib.import_module(module_name)
                _thread_list.extend(t for t in module.TMP_THREADS if t.is_alive())
                module.TMP_THREADS = _thread_list
        else:
            setattr(owner, attr, _REPLACEMENTS[hook])


@functools.lru_cache(maxsize=4096)
def _parse_jsonpath(path: str) -> Any:
    """jsonpath_ng builds a yacc parser on every parse (~0.8 ms, the biggest per-state cost measured);
    ResultPath/InputPath/... strings come from a handful of definitions, so parse each once."""
    from jsonpath_ng import parse

    return parse(path)


@functools.lru_cache(maxsize=4096)
def _parse_jsonpath_ext(path: str) -> Any:
    from jsonpath_ng.ext import parse

    return parse(path)


@functools.cache
def _moto_modules() -> tuple[str, ...]:
    """moto's server lists its package folder (listdir + isdir of ~170 entries) on every request to pick a
    backend: ~1 ms of each call. The folder does not change while we run."""
    return tuple(_ORIGINALS["moto_module_list"]())


@functools.cache
def _method_names(clazz: object) -> list[str]:
    """moto lists a response class's methods (inspect.getmembers over ~200 attributes) on every request to
    check the action exists. Classes are complete once install() has patched them, so list each once."""
    return list(_ORIGINALS["response_method_names"](clazz))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """copy.deepcopy for the engine's JSON values (dict/list/str/number/bool/null), ~5x faster; anything else
    (program states, context objects) goes to copy.deepcopy. JSON trees share no sub-objects, so the memo's
    identity bookkeeping is not needed for them."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {key: json_deepcopy(item) for key, item in value.items()}
    if kind is list:
        return [json_deepcopy(item) for item in value]
    if kind in _program_state_classes():
        # The engine copies its program state after every state (env.program_state()); these are plain
        # objects of JSON-ish attributes (contract test), so copy their __dict__ the same way.
        clone = object.__new__(kind)
        clone.__dict__.update({key: json_deepcopy(item, memo) for key, item in value.__dict__.items()})
        return clone
    return copy.deepcopy(value, memo)


@functools.cache
def _program_state_classes() -> frozenset[type]:
    from moto.stepfunctions.parser.asl.eval import program_state

    return frozenset(
        cls
        for cls in vars(program_state).values()
        if isinstance(cls, type) and issubclass(cls, program_state.ProgramState)
    )


# What the engine's modules see as ``copy`` once installed: they only call copy.deepcopy (contract test).
_JSON_COPY = types.SimpleNamespace(deepcopy=json_deepcopy)

_REPLACEMENTS["moto_module_list"] = _moto_modules
_REPLACEMENTS["response_method_names"] = _method_names
_REPLACEMENTS["jsonpath_parse_result_path"] = _parse_jsonpath
_REPLACEMENTS["jsonpath_parse_extract"] = _parse_jsonpath_ext


# ---------------------------------------------------------------------------------------------------------
# j. DynamoDB expressions: parse each expression text once, copy ASTs without copy.deepcopy
# ---------------------------------------------------------------------------------------------------------
# moto lexes, parses and validates UpdateExpression / ConditionExpression in pure Python on every call (twice
# per UpdateItem: once in the response handler, once in the backend). An application sends a handful of
# expression texts over and over, so each is parsed once; what depends on the call (values, the item) is
# still computed per call by moto's own code.
_EXPRESSION_CACHE_SIZE = 1024
_update_asts: OrderedDict[str, Any] = OrderedDict()
_condition_trees: OrderedDict[tuple[str, Any], tuple[Any, tuple[str, ...], list[str], list[str]]] = (
    OrderedDict()
)
_expressions_lock = threading.Lock()


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    with _expressions_lock:
        cache[key] = value
        while len(cache) > _EXPRESSION_CACHE_SIZE:
            cache.popitem(last=False)


@functools.cache
def _ast_node_class() -> type:
    ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")  # typed `ignore` by moto
    return ast_nodes.Node


_AST_FIELDS = frozenset({"type", "children", "parent"})


class _NotPlainAst(Exception):
    """A tree _ast_clone was not written for: copy.deepcopy copies it instead."""


def _ast_clone(node: Any, parent: Any, node_class: type) -> Any:
    if node.__dict__.keys() != _AST_FIELDS:
        raise _NotPlainAst
    clone = object.__new__(type(node))
    children = node.children
    if children is not None:
        copied = []
        for child in children:
            if isinstance(child, node_class):
                copied.append(_ast_clone(child, clone, node_class))
            elif type(child) in _SCALARS:
                copied.append(child)
            else:  # a DynamoType leaf (a tree already validated): not what the parser makes
                raise _NotPlainAst
        children = copied
    clone.__dict__.update(type=node.type, children=children, parent=parent)
    return clone


def _ast_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """copy.deepcopy for moto's update-expression trees as the parser makes them: Nodes with exactly
    ``type``/``children``/``parent``, str/int leaves, no node in two places (contract test); ~7x faster.
    Anything else (a subtree with a parent, DynamoType leaves, other values) goes to copy.deepcopy."""
    node_class = _ast_node_class()
    if memo is None and isinstance(value, node_class) and value.__dict__.get("parent") is None:
        try:
            return _ast_clone(value, None, node_class)
        except _NotPlainAst:
            pass
    return copy.deepcopy(value, memo)


def _cached_update_make(cls: Any, expression_str: str) -> Any:
    """UpdateExpressionParser.make once per text. Every caller only reads the tree (find_clauses) or hands it
    to UpdateExpressionValidator, which validates a deep copy (contract test), so callers share it. A text
    that does not parse is not cached: it raises as before."""
    ast = _update_asts.get(expression_str)
    if ast is None:
        ast = _ORIGINALS["ddb_update_parse"].__func__(cls, expression_str)
        _remember(_update_asts, expression_str, ast)
    return ast


def _condition_tree(parser: Any) -> tuple[Any, tuple[str, ...]]:
    """The syntax tree of moto's ConditionExpressionParser.parse, built by moto's own steps in moto's order,
    and the ``:value`` placeholders in the order ``_parse_paths`` looks them up (a later call missing one
    raises the same KeyError as moto's parse)."""
    nodes = parser._lex_condition_expression()
    placeholders = tuple(
        name
        for lexed in nodes
        if lexed.nonterminal == parser.Nonterminal.OPERAND
        for name in lexed.value.replace("[", ".[").split(".")  # as _parse_paths splits a path
        if name.startswith(":")
    )
    nodes = parser._parse_paths(nodes)
    nodes = parser._apply_functions(nodes)
    nodes = parser._apply_comparator(nodes)
    nodes = parser._apply_in(nodes)
    nodes = parser._apply_between(nodes)
    nodes = parser._apply_parens_and_booleans(nodes)
    node = nodes[0]
    parser._assert_no_redundant_parentheses(node)
    return node, placeholders


def _with_values(node: Any, parser: Any, values: dict[str, Any]) -> Any:
    """The cached tree with this call's expression attribute values in its value nodes."""
    if node.kind == parser.Kind.EXPRESSION_ATTRIBUTE_VALUE:
        return node._replace(value=values[node.text])
    if not node.children:
        return node
    return node._replace(children=[_with_values(child, parser, values) for child in node.children])


def _cached_condition_parse(self: Any) -> Any:
    """ConditionExpressionParser.parse with the syntax tree cached per (expression, attribute names): the
    tree depends on nothing else but the values, which are put into a copy of it per call. The Op tree is
    then made by moto's ``_make_op_condition``, as in moto's parse."""
    expression = self.condition_expression
    if not expression or not isinstance(expression, str):
        return _ORIGINALS["ddb_condition_parse"](self)
    names = self.expression_attribute_names
    try:
        key = (expression, tuple(sorted(names.items())) if names else None)
        cached = _condition_trees.get(key)
    except TypeError:  # unhashable names: let moto answer
        return _ORIGINALS["ddb_condition_parse"](self)
    if cached is None:
        node, placeholders = _condition_tree(self)
        names_found = self._find_literals(node)
        values_found = self._find_expr_attr_values(node)
        _remember(_condition_trees, key, (node, placeholders, names_found, values_found))
    else:
        template, placeholders, names_found, values_found = cached
        lookup = self._lookup_expression_attribute_value
        node = _with_values(template, self, {text: lookup(text) for text in placeholders})
    self.expr_attr_names_found.extend(names_found)
    self.expr_attr_values_found.extend(values_found)
    return self._make_op_condition(node)


# (traverser class, node class) -> the processing-map key that handles it, False (none) or None (not a Node)
_traverse_dispatch: dict[tuple[type, type], Any] = {}


def _traverse(self: Any, node: Any) -> Any:
    """moto's DepthFirstTraverser.traverse(_node_recursively): the same depth-first, bottom-up rewrite, with
    the processing map built once per traversal (moto rebuilt it twice per node), the processor of each
    (traverser, node) class pair found once per process (isinstance on moto's ABCs is slow; each map is a
    fixed {class: method} literal, contract test), and the no-op pre-processing hook skipped."""
    ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
    node_class = _ast_node_class()
    walker = type(self)
    processing = self._processing_map()
    pre_processing_of_child = (
        None if walker.pre_processing_of_child is ast_nodes.DepthFirstTraverser.pre_processing_of_child
        else self.pre_processing_of_child
    )  # fmt: skip

    def handler_key(kind: type) -> Any:
        if not issubclass(kind, node_class):
            return None
        return next((class_key for class_key in processing if issubclass(kind, class_key)), False)

    def visit(current: Any, child_id: int) -> Any:
        pair = (walker, type(current))
        key = _traverse_dispatch.get(pair, _MISSING)
        if key is _MISSING:
            key = _traverse_dispatch[pair] = handler_key(pair[1])
        if key is None:
            return current
        parent_node = current.parent
        if current.children is not None:
            for i, child_node in enumerate(current.children):
                if pre_processing_of_child is not None:
                    pre_processing_of_child(current, i)
                visit(child_node, i)
        if key is not False:
            current = processing[key](current)
            current.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = current
        return current

    return visit(node, -1)


_MISSING = object()


# TransactWriteItems deep-copied every table it touches, whole, once per operation (to put it back if the
# transaction is cancelled): O(table) per call, so a growing append-only table (PaymentEvents, written in
# transactions by the audit trail) made every payment slower than the last. The snapshot below is the same
# table object moto would put back, built from what a transaction can change: the items (a new index of the
# same Item objects, and deep copies of the items the transaction names, as UpdateItem changes those in
# place) and the stream's records (a new shard with the records so far). Indexes, TTL, tags... are not
# changed by item writes (contract test), so the snapshot shares them.
_transaction = threading.local()


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
    _transaction.items = transact_items
    _transaction.snapshots = {}
    try:
        return _ORIGINALS["ddb_transact"](self, transact_items)
    finally:
        _transaction.items = _transaction.snapshots = None


def _transaction_keys(table: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(hash, range) DynamoType keys of the transaction's operations on ``table`` (malformed ones skipped:
    moto rejects those before it writes anything)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    keys = []
    for entry in transact_items:
        try:
            (op_type, op), *_ = entry.items()
            if op.get("TableName") != table.name:
                continue
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except Exception:  # the transaction's own checks report it
            continue
        keys.append((hash_value, range_value))
    return keys


def _table_snapshot(table: Any, transact_items: list[dict[str, Any]]) -> Any:
    snapshot = copy.copy(table)
    # moto's defaultdict with its factory; .copy() does not hash the keys again (DynamoType's hash is slow)
    items = table.items.copy()
    ranged = table.range_key_attr is not None
    for hash_value, range_value in _transaction_keys(table, transact_items):
        # .get, not table.get_item: a lookup in moto's defaultdict would add an empty entry
        if ranged:
            by_range = items.get(hash_value)
            if by_range is None:
                continue
            by_range = items[hash_value] = copy.copy(by_range)  # a Put/Delete changes this hash key's index
            if range_value in by_range:
                by_range[range_value] = copy.deepcopy(by_range[range_value])
        elif hash_value in items:
            items[hash_value] = copy.deepcopy(items[hash_value])
    snapshot.items = items
    shard = getattr(table, "stream_shard", None)
    if shard is not None:
        snapshot.stream_shard = copy.copy(shard)
        snapshot.stream_shard.items = list(shard.items)
        snapshot.stream_shard.table = snapshot
    return snapshot


def _ddb_models_deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """What moto.dynamodb.models sees as copy.deepcopy: a table inside TransactWriteItems gets the snapshot
    above, anything else (UpdateItem's copy of the old item) a deep copy."""
    from moto.dynamodb.models.table import Table

    transact_items = getattr(_transaction, "items", None)
    if transact_items is not None and type(value) is Table and memo is None:
        # moto snapshots a table once per operation, all before the first one runs: the same snapshot
        snapshots = _transaction.snapshots
        if id(value) not in snapshots:
            snapshots[id(value)] = _table_snapshot(value, transact_items)
        return snapshots[id(value)]
    return copy.deepcopy(value, memo)


_REPLACEMENTS["ddb_transact"] = _transact_write_items
_REPLACEMENTS["ddb_transact_copy"] = types.SimpleNamespace(deepcopy=_ddb_models_deepcopy)


def _item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    """moto's Item.__init__ with LimitedSizeDict's 400 KB check kept as a running total: moto re-measured
    every attribute so far for each one it added (O(attributes^2) per PutItem, ~2% of a payment's CPU). The
    same sizes are summed in the same order, so an item too large fails on the same attribute."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    self.hash_key = hash_key
    self.range_key = range_key
    self.attrs = LimitedSizeDict()
    total = 0
    for key, value in attrs.items():
        typed = DynamoType(value)
        size = bytesize(key) + typed.size()
        if total + size > _ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self.attrs, key, typed)
        total += size


_ITEM_SIZE_LIMIT = 405000  # LimitedSizeDict's (contract test)
_REPLACEMENTS["ddb_item_size"] = _item_init


def _branch_worker_start(self: Any) -> None:
    """moto's BranchWorker.start, with a short thread name: moto's f-string rendered the whole branch
    program (Component.__str__ is ``vars(self)``, recursively) for every branch of every Parallel state."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branch_worker

    if self._worker_thread is not None:
        raise RuntimeError(f"Attempted to rerun BranchWorker for program ${self._program}.")
    self._worker_thread = threading.Thread(
        target=self._thread_routine, name=f"BranchWorker_{id(self._program):x}", daemon=True
    )
    branch_worker.TMP_THREADS.append(self._worker_thread)
    self._worker_thread.start()


_REPLACEMENTS["ddb_update_parse"] = classmethod(_cached_update_make)
_REPLACEMENTS["ddb_validator_copy"] = _ast_deepcopy
_REPLACEMENTS["ddb_condition_parse"] = _cached_condition_parse
_REPLACEMENTS["ddb_traverse"] = _traverse
_REPLACEMENTS["branch_thread_name"] = _branch_worker_start


# ---------------------------------------------------------------------------------------------------------
# X-Ray: GetTraceSummaries / GetServiceGraph / GetTraceGraph and the /_local/xray/ pages
# ---------------------------------------------------------------------------------------------------------
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/")


def _credential_scope(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    """(region, service) of a SigV4-signed request, from its Authorization header."""
    found = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return (found.group("region"), found.group("service")) if found else (None, None)


def xray_traces(region: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every segment document the endpoint knows, by trace id: moto's store (PutTraceSegments from any
    client) merged with the runtime's SegmentStore, which holds what is not forwarded yet."""
    from moto.xray.models import xray_backends

    from local.xray_graph import dedupe

    merged: dict[str, list[dict[str, Any]]] = {}
    for regional in list(xray_backends.values()):
        for backend_region, backend in list(regional.items()):
            if region is not None and backend_region != region:
                continue
            for trace_id, trace in list(backend._segment_collection._traces.items()):
                for seg in list(trace["segments"]):
                    try:
                        merged.setdefault(trace_id, []).append(json.loads(seg.raw))
                    except (TypeError, ValueError):
                        continue
    sink = _config.segment_sink if _config is not None else None
    snapshot = getattr(sink, "traces", None)
    if callable(snapshot):
        for trace_id, docs in snapshot().items():
            merged.setdefault(trace_id, []).extend(docs)  # after moto's: the store's copy wins a tie
    return {trace_id: dedupe(docs) for trace_id, docs in merged.items()}


def _local_dispatch(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
    """moto answers GetServiceGraph/GetTraceGraph with empty lists and GetTraceSummaries without filters or
    real statistics; answer those three (signed for service ``xray``) from the segments, and serve the
    service-map page under ``/_local/xray/``. Everything else goes to moto unchanged."""
    from local import xray_api, xray_map

    if not _is_runtime_endpoint(environ):  # another moto server in this process (tests) stays stock moto
        return _ORIGINALS["xray_local_dispatch"](self, environ, start_response)
    path = environ.get("PATH_INFO", "")
    if path.startswith(xray_map.PREFIX + "/"):
        return xray_map.serve(environ, start_response, xray_traces())
    action = path.strip("/")
    if action in xray_api.ACTIONS and environ.get("REQUEST_METHOD") == "POST":
        region, service = _credential_scope(environ)
        if service == "xray":
            return _answer_xray(environ, start_response, action, region)
    answer = _json_rpc_dispatch(self, environ, start_response)
    if answer is not None:
        return answer
    return _ORIGINALS["xray_local_dispatch"](self, environ, start_response)


# (service from the credential scope, X-Amz-Target prefix) -> the moto response class's dispatch
_JSON_RPC_VIEWS: dict[tuple[str, str], Any] = {}


def _json_rpc_view(app: Any, environ: dict[str, Any], key: tuple[str, str]) -> Any:
    """The view moto's Flask app would run for a JSON-protocol request, found once per service."""
    view = _JSON_RPC_VIEWS.get(key)
    if view is None:
        flask_app = app.get_application(environ)
        endpoint, args = flask_app.url_map.bind_to_environ(environ).match()
        callback = getattr(flask_app.view_functions[endpoint], "callback", None)
        if args or callback is None:  # a path-routed view: Flask must bind its arguments each time
            return None
        view = _JSON_RPC_VIEWS[key] = callback
    return view


def _json_rpc_dispatch(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
    """A JSON-protocol call (POST / with X-Amz-Target: DynamoDB, Step Functions, SQS, Logs, Events, Secrets
    Manager) handed straight to moto's response class: what moto's Flask app does for it (build moto's
    Request, record it, call ``<Response>.dispatch``, turn a ClientError into a 400, default the content
    type as Flask's Response does) without Flask's request context, URL routing and response hooks - about
    a tenth of the endpoint's CPU per call. Anything else takes moto's own path."""
    from botocore.exceptions import ClientError
    from moto.moto_api import recorder
    from moto.settings import DISABLE_GLOBAL_CORS
    from werkzeug.http import HTTP_STATUS_CODES

    target = environ.get("HTTP_X_AMZ_TARGET")
    if (
        not target
        or environ.get("REQUEST_METHOD") != "POST"
        or environ.get("PATH_INFO") != "/"
        or "HTTP_ORIGIN" in environ  # a browser's call: Flask-CORS answers its headers
    ):
        return None
    _, service = _credential_scope(environ)
    if service is None:
        return None
    view = _json_rpc_view(self, environ, (service, target.split(".", 1)[0]))
    if view is None:
        return None
    request = _server_request(environ)
    recorder._record_request(request)
    try:
        result = view(request, request.raw_url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    status, headers, content = result if len(result) == 3 else (200, {}, result)
    body = content.encode() if isinstance(content, str) else bytes(content or b"")
    items = [(str(k), str(v)) for k, v in dict(headers).items() if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in items):
        items.append(("Content-Type", "text/html; charset=utf-8"))  # what Flask's Response defaults to
    if not DISABLE_GLOBAL_CORS:
        items.append(("Access-Control-Allow-Origin", "*"))  # what Flask-CORS adds to every answer
    items.append(("Content-Length", str(len(body))))
    code = int(status)
    start_response(f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN').upper()}", items)
    return [body]


_SERVER_REQUEST: type | None = None


def _server_request(environ: dict[str, Any]) -> Any:
    """moto's Request for a call its WSGI server received (what its Flask app's BackendRequest is, without
    Flask)."""
    global _SERVER_REQUEST
    if _SERVER_REQUEST is None:
        from moto.core.request import Request

        _SERVER_REQUEST = type("ServerRequest", (Request,), {"from_wsgi_server": True})
    return _SERVER_REQUEST(environ)


def _is_runtime_endpoint(environ: dict[str, Any]) -> bool:
    from urllib.parse import urlsplit

    if _config is None:
        return False
    return str(environ.get("SERVER_PORT")) == str(urlsplit(_config.endpoint_url).port)


def _answer_xray(environ: dict[str, Any], start_response: Any, action: str, region: str | None) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID

    from local import xray_api

    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        params = json.loads(raw or b"{}")
        if not isinstance(params, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        status, body = 400, {"__type": "InvalidRequestException", "message": f"bad request body: {exc}"}
    else:
        status, body = xray_api.answer(action, params, xray_traces(region), account_id=DEFAULT_ACCOUNT_ID)
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if status >= 400:
        headers.append(("x-amzn-ErrorType", str(body["__type"])))
    start_response(f"{status} {'OK' if status < 400 else 'Bad Request'}", headers)
    return [data]


_REPLACEMENTS["xray_local_dispatch"] = _local_dispatch


def stream_records(account_id: str, region: str, shard_iterator: str, limit: int) -> dict[str, Any]:
    """DynamoDB Streams GetRecords answered from moto's stream backend, for a poller in the endpoint's own
    process: the same records, without moto's model-driven serializer and botocore's parser (a payment's
    stream records carry whole old and new items: that round trip was ~15 % of the runtime's CPU per
    payment). An unknown or expired iterator raises KeyError."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    answer = dynamodbstreams_backends[account_id][region].get_records(shard_iterator, limit)
    # The records are moto's own objects: hand out copies.
    return {"NextShardIterator": answer["NextShardIterator"], "Records": json_deepcopy(answer["Records"])}


def put_log_events(region: str, group: str, stream: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """PutLogEvents straight into moto's logs backend (default account), for the runtime's log uploader in the
    endpoint's own process: thousands of lines a second under load skip botocore's validation and
    serialization and the response round trip. Creates the group and stream when missing (the uploader
    would). Answers what the API answers: ``rejectedLogEventsInfo`` when events fall outside the window."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.logs.models import logs_backends

    backend = logs_backends[DEFAULT_ACCOUNT_ID][region]
    if group not in backend.groups:
        backend.create_log_group(group, {})
    backend.ensure_log_stream(group, stream)
    token, rejected = backend.put_log_events(group, stream, events)
    return {"nextSequenceToken": token, **({"rejectedLogEventsInfo": rejected} if rejected else {})}


def put_metric_data(region: str, namespace: str, metric_data: list[dict[str, Any]]) -> None:
    """PutMetricData straight into moto's CloudWatch backend (default account), for the runtime's EMF
    forwarder in the endpoint's own process. ``metric_data`` is the API's MetricData (Timestamp a datetime),
    as moto's request parser hands it to the backend (a naive UTC Timestamp: what its parser makes of the
    wire's); moto's validation errors are raised as the API's."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    def parsed(datum: dict[str, Any]) -> dict[str, Any]:
        stamp = datum.get("Timestamp")
        if isinstance(stamp, datetime.datetime) and stamp.tzinfo is not None:
            return {**datum, "Timestamp": stamp.astimezone(datetime.UTC).replace(tzinfo=None)}
        return datum

    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
    backend.put_metric_data(namespace, [parsed(datum) for datum in metric_data])


def put_trace_segments(region: str, documents: list[str]) -> dict[str, Any]:
    """PutTraceSegments straight into moto's X-Ray backend (default account), for the runtime's segment
    forwarder in the endpoint's own process; answers what the API answers (``UnprocessedTraceSegments``)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.xray.exceptions import BadSegmentException
    from moto.xray.models import xray_backends

    backend = xray_backends[DEFAULT_ACCOUNT_ID][region]
    unprocessed = []
    for document in documents:
        try:
            backend.process_segment(document)
        except BadSegmentException as bad:
            unprocessed.append(bad.to_dict())
    return {"UnprocessedTraceSegments": unprocessed}


def engine_thread_count() -> int:
    """Live threads the engine still tracks (for tests and diagnostics)."""
    return sum(1 for t in _thread_list if t.is_alive())


def pin_secret_arn(account_id: str, region: str, name: str, arn: str) -> None:
    """Give a provisioned secret the ARN the template resolved (``Ref``/env vars carry it).

    Secrets Manager appends six random characters to a secret's ARN, and moto draws its own at
    CreateSecret; handlers reading the secret by the template's ARN would get ResourceNotFound. moto keeps
    secrets in ``SecretsStore`` keyed by name and matches full ARNs against ``FakeSecret.arn``.
    """
    from moto.secretsmanager.models import secretsmanager_backends

    store = secretsmanager_backends[account_id][region].secrets
    if name not in store:
        raise KeyError(f"secret {name!r} is not in moto's store for {account_id}/{region}")
    store[name].arn = arn
