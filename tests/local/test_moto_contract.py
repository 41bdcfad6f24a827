"""Contract tests for every moto internal that local.moto_adapter patches: they fail loudly on a moto upgrade.

Each check looks at moto's *original* symbol (kept in ``moto_adapter._ORIGINALS`` once installed, or read from
an un-patched import before install) and asserts the signature/shape the replacement was written against.
"""

from __future__ import annotations

import inspect
import re
import threading
from importlib.metadata import version
from typing import Any

import pytest

from local import moto_adapter
from local.clock import VirtualClock


class _NoInvoker:
    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> Any:
        raise AssertionError("not used by contract tests")


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    clock = VirtualClock()
    moto_adapter.install(clock=clock, lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:1")


def original(hook: str) -> Any:
    assert hook in moto_adapter._ORIGINALS, f"hook {hook} was not applied"
    return moto_adapter._ORIGINALS[hook]


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def source(func: Any) -> str:
    return inspect.getsource(func)


def test_moto_version_is_pinned_exactly() -> None:
    assert version("moto") == moto_adapter.MOTO_VERSION == "5.2.5"


def test_every_hook_has_a_contract_and_is_applied() -> None:
    names = [name for name, _ in moto_adapter.HOOKS]
    assert len(names) == len(set(names))
    assert set(names) == set(CONTRACTS), "add a contract for each new hook"
    for _name, qualname in moto_adapter.HOOKS:
        owner, attr = moto_adapter.resolve(qualname)
        assert hasattr(owner, attr), f"{qualname} is not patched in place"


def _lambda_invoke(f: Any) -> None:
    assert params(f) == ["env", "parameters", "region", "state_credentials"]
    assert "is_mocked_mode" in source(f) and "LambdaFunctionErrorException" in source(f)


def _lambda_client_error(f: Any) -> None:
    assert params(f) == ["self", "env", "ex"]
    assert 'error = "Exception"' in source(f)  # the behaviour we replace for ClientError


def _boto_client_for(f: Any) -> None:
    assert params(f) == ["region", "service", "state_credentials"]
    assert "moto_server_port" in source(f)


def _sync_poll_delay(value: Any) -> None:
    assert value == 0.5


def _jsonata_eval(value: Any) -> None:
    from moto.stepfunctions.parser.asl.jsonata import jsonata

    assert value is None  # never wired in moto
    assert "if _eval_jsonata is None" in source(jsonata.eval_jsonata_expression)


def _jsonata_declarations(f: Any) -> None:
    assert params(f) == ["bindings"]
    assert "f'\"{value}\"'" in source(f)


def _start_execution(f: Any) -> None:
    assert params(f) == ["self", "state_machine_arn", "name", "execution_input", "trace_header"]
    assert ":execution:" in source(f)


def _start_sync_execution(f: Any) -> None:
    assert f is None, "moto now implements start_sync_execution: review the adapter's version"


def _execution_arn_format(pattern: Any) -> None:
    assert isinstance(pattern, re.Pattern) and ":execution:" in pattern.pattern


def _response_start_execution(f: Any) -> None:
    assert params(f) == ["self"] and "traceHeader" not in source(f)


def _response_start_sync_execution(f: Any) -> None:
    assert f is None, "moto now answers StartSyncExecution itself"


def _response_send_task_failure(f: Any) -> None:
    assert params(f) == ["self"] and "cause" not in source(f)


def _definition_cache(f: Any) -> None:
    assert params(f) == ["self"] and "AmazonStateLanguageParser.parse" in source(f)


def _stop_date(f: Any) -> None:
    assert params(f) == ["self"] and "datetime.datetime.now" in source(f)


def _heartbeat_error(f: Any) -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    assert params(f) == ["self", "env", "ex"] and "TimeoutError" in source(f)
    assert StatesErrorNameType.StatesHeartbeatTimeout.to_name() == "States.HeartbeatTimeout"


def _thread_list(value: Any) -> None:
    assert isinstance(value, list)
    for name in moto_adapter._THREAD_LIST_MODULES:
        module = __import__(name, fromlist=["TMP_THREADS"])
        assert module.TMP_THREADS is moto_adapter._thread_list


def _environment_stop_event(f: Any) -> None:
    assert "self.program_state_event = threading.Event()" in source(f)


def _wait_state(f: Any) -> None:
    assert params(f) == ["self", "env", "wait_seconds"] and "program_state_event.wait" in source(f)


def _retry_backoff(f: Any) -> None:
    text = source(f)
    assert params(f) == ["self", "env"] and "time.sleep(interval_seconds)" in text
    # The order that makes MaxDelaySeconds cap before FULL jitter randomises.
    order = ["interval_seconds.eval", "backoff_rate.eval", "max_delay_seconds.eval", "jitter_strategy.eval"]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)


def _state_timeout(f: Any) -> None:
    assert params(f) == ["self", "env"] and "terminated_event.wait(timeout_seconds)" in source(f)


def _callback_wait(f: Any) -> None:
    assert params(f) == ["self", "timeout"] and "_notify_event.wait" in source(f)


def _heartbeat_wait(f: Any) -> None:
    assert params(f) == ["self"] and "_next_heartbeat_event.wait" in source(f)


def _activity_start_wait(f: Any) -> None:
    assert params(f) == ["self", "timeout_seconds"] and "_next_activity_task_start_event.wait" in source(f)


def _program_timeout(f: Any) -> None:
    assert params(f) == ["self", "env"] and "worker_thread.join(timeout=timeout)" in source(f)


def _history_timestamp(f: Any) -> None:
    assert isinstance(f, staticmethod) and "datetime.datetime.now" in source(f.__func__)


def _history_timestamp_format(f: Any) -> None:
    # moto's format for history timestamps: ours must give the same text for any datetime it is handed
    import datetime

    assert params(f) == ["value"] and 'strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"' in source(f)
    for stamp in (
        datetime.datetime(2026, 11, 23, 17, 6, 7, 34567),
        datetime.datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 31, 23, 59, 59, 999999),
    ):
        assert moto_adapter._history_timestamp_format(stamp) == f(stamp)


def _to_json_str(f: Any) -> None:
    # moto's encoder: json.dumps with a JSONEncoder subclass whose only addition is ``default``
    import datetime

    from moto.stepfunctions.parser.asl.utils import encoding

    assert params(f) == ["obj", "separators"] and "cls=_DateTimeEncoder" in source(f)
    assert {name for name in vars(encoding._DateTimeEncoder) if not name.startswith("__")} == {"default"}
    when = datetime.datetime(2026, 11, 23, 17, 0, tzinfo=datetime.UTC)
    values: list[Any] = [{"a": [1, 2.5, None, True], "b": "é\n"}, [], "x", 3, {"when": when}, {"o": object}]
    for value in values:
        for separators in (None, (",", ":")):
            assert moto_adapter._to_json_str(value, separators) == f(value, separators)


def _engine_failure_log(f: Any) -> None:
    # moto's per-level failure log: what it writes, and that nothing but logging happens in it
    assert params(f) == ["self", "failure_event_exception"]
    assert "LOG.error(" in source(f) and "repr(self)" in source(f) and "raise" not in source(f)


def _engine_exception_log(f: Any) -> None:
    assert params(f) == ["self", "exception"]
    assert "LOG.error(" in source(f) and "repr(self)" in source(f) and "raise" not in source(f)


def _error_codes(cls: Any) -> None:
    from moto.stepfunctions.parser import api

    assert cls.TYPE is None  # base class still has no code; the adapter fills it per subclass
    assert api.InvalidToken.TYPE == "InvalidToken" and api.TaskTimedOut.TYPE == "TaskTimedOut"


def _parser_scope(value: Any) -> None:
    assert value == []  # still a shared class-level list in moto


def _integration_request(f: Any) -> None:
    assert params(f) == ["self", "parameters", "boto_service_name", "service_action_name"]
    assert source(f).rstrip().endswith("pass")


def _integration_response(f: Any) -> None:
    assert params(f) == ["self", "response", "boto_service_name", "service_action_name"]
    assert source(f).rstrip().endswith("pass")


def _jsonpath_parse(f: Any) -> None:
    # moto calls jsonpath_ng's module-level parse by name; the cached one must give an equal expression.
    assert f.__module__ in ("jsonpath_ng.parser", "jsonpath_ng.ext.parser")
    assert params(f)[0] in ("string", "path")
    assert str(f("$.a.b")) == str(moto_adapter._parse_jsonpath("$.a.b"))
    assert moto_adapter._parse_jsonpath_ext("$.x") is moto_adapter._parse_jsonpath_ext("$.x")  # cached


def _moto_module_list(f: Any) -> None:
    # the server calls it as backends.list_of_moto_modules() per request; the cached copy must agree
    assert params(f) == []
    assert "os.listdir" in source(f)
    assert tuple(f()) == moto_adapter._moto_modules()
    assert "stepfunctions" in moto_adapter._moto_modules()


def _response_method_names(f: Any) -> None:
    # call_action asks for the class's method names per request; the cached list must be the same one.
    from moto.core import responses
    from moto.stepfunctions.responses import StepFunctionResponse

    assert params(f) == ["clazz"] and "getmembers" in source(f)
    cached = moto_adapter._method_names(StepFunctionResponse)
    assert f(StepFunctionResponse) == cached and "start_sync_execution" in cached
    assert moto_adapter._method_names(StepFunctionResponse) is cached

    assert responses.method_names_from_class is moto_adapter._method_names  # looked up by name in call_action


def _xray_local_dispatch(f: Any) -> None:
    # The endpoint's WSGI entry: we answer three X-Ray actions and /_local/xray/ before moto routes them.
    import json

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.xray import urls
    from moto.xray.models import XRayBackend
    from moto.xray.responses import XRayResponse

    assert params(f) == ["self", "environ", "start_response"] and "get_application" in source(f)
    assert DomainDispatcherApplication.__call__ is moto_adapter._local_dispatch
    # moto still routes these paths to its placeholders, which we answer instead
    for path, method in [("TraceSummaries", "trace_summaries"), ("ServiceGraph", "service_graph")]:
        assert any(path in pattern for pattern in urls.url_paths) and callable(getattr(XRayResponse, method))
    assert any("TraceGraph" in pattern for pattern in urls.url_paths)
    # where moto keeps what PutTraceSegments stored: xray_traces() reads the raw documents from there
    backend = XRayBackend("us-east-1", "123456789012")
    trace_id = "1-5f000000-0123456789abcdef01234567"
    doc = {"id": "0123456789abcdef", "name": "svc", "trace_id": trace_id, "start_time": 1.0, "end_time": 2.0}
    backend.process_segment(json.dumps(doc))
    stored = backend._segment_collection._traces[trace_id]["segments"]
    assert [json.loads(seg.raw) for seg in stored] == [doc]


def _json_deepcopy(f: Any) -> None:
    import copy
    import pkgutil
    import sys

    import moto.stepfunctions.parser as parser

    assert f is copy  # the engine modules import the copy module itself ...
    users = []
    for info in pkgutil.walk_packages(parser.__path__, "moto.stepfunctions.parser."):
        text = inspect.getsource(sys.modules[info.name]) if info.name in sys.modules else ""
        calls = set(re.findall(r"\bcopy\.(\w+)", text))
        if "import copy" in text:
            assert calls <= {"deepcopy"}, f"{info.name} uses copy.{calls}: add it to moto_adapter._JSON_COPY"
            users.append(sys.modules[info.name])
    assert len(users) >= 10  # ... states, environment, event_manager, execute_state, result_path, ...
    for module in users:  # ... and each one now sees the JSON fast path
        assert module.copy is moto_adapter._JSON_COPY, module.__name__



def _ddb_update_parse(f: Any) -> None:
    # A classmethod the handler and the backend call by attribute; the cache keeps moto's tree and hands out
    # _ast_deepcopy copies, which rebuild Nodes from __dict__: Nodes must stay plain objects.
    ast_nodes = _moto_module("moto.dynamodb.parsing.ast_nodes")
    UpdateExpressionParser = _moto_module("moto.dynamodb.parsing.expressions").UpdateExpressionParser

    assert isinstance(f, classmethod) and params(f.__func__) == ["cls", "expression_str"]
    assert "ExpressionTokenizer.make_list" in source(f.__func__)
    for cls in vars(ast_nodes).values():
        if isinstance(cls, type) and issubclass(cls, ast_nodes.Node):
            for special in ("__deepcopy__", "__copy__", "__reduce__", "__reduce_ex__", "__setstate__"):
                inherited = getattr(cls, special, None) is getattr(object, special, None)
                assert inherited, f"{cls.__name__}.{special}"
            assert "__slots__" not in vars(cls), cls.__name__
    text = "SET a.b[1] = list_append(if_not_exists(#l, :e), :v) ADD n :one REMOVE x[0] DELETE s :d"
    fresh = f.__func__(UpdateExpressionParser, text)
    stack, seen = [fresh], set()
    while stack:  # attributes and leaves the fast copy was written for, no node in two places
        node = stack.pop()
        assert id(node) not in seen
        seen.add(id(node))
        assert set(vars(node)) == {"type", "children", "parent"}, vars(node)
        for child in node.children or []:
            assert isinstance(child, ast_nodes.Node | str | int), type(child)
            if isinstance(child, ast_nodes.Node):
                assert child.parent is node
                stack.append(child)
    cached = UpdateExpressionParser.make(text)
    assert cached is UpdateExpressionParser.make(text) and repr_tree(cached) == repr_tree(fresh)
    _update_ast_callers_only_read_it()


def _update_ast_callers_only_read_it() -> None:
    """The cached tree is shared: each of moto's callers of make() may only call find_clauses on it or give
    it to UpdateExpressionValidator (whose __init__ deep-copies it, see ddb_validator_copy)."""
    import pkgutil

    import moto.dynamodb as ddb
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    callers = [DynamoHandler.update_item, DynamoHandler.transact_write_items, DynamoDBBackend.update_item]
    total = 0
    for info in pkgutil.walk_packages(ddb.__path__, "moto.dynamodb."):
        module = __import__(info.name, fromlist=["_"])
        total += inspect.getsource(module).count("UpdateExpressionParser.make(")
    assert total == len(callers), "a new caller of UpdateExpressionParser.make: check it only reads the tree"
    allowed = [
        r"update_expression_ast = UpdateExpressionParser\.make\(",
        r"update_expression_ast\.find_clauses\(",
        r"UpdateExpressionValidator\(\s*update_expression_ast,",
    ]
    for caller in callers:
        text = source(caller)
        assert "UpdateExpressionParser.make(" in text, caller
        uses = len(re.findall(r"\bupdate_expression_ast\b", text))
        assert uses == sum(len(re.findall(pattern, text)) for pattern in allowed), caller.__qualname__


def _moto_module(name: str) -> Any:
    """A moto module that moto marks ``# type: ignore`` (mypy sees none of its names)."""
    import importlib

    return importlib.import_module(name)


def repr_tree(node: Any) -> Any:
    """A Node tree as nested tuples (class, children...), parent links checked on the way."""
    Node = _moto_module("moto.dynamodb.parsing.ast_nodes").Node

    if not isinstance(node, Node):
        return node
    for child in node.children or []:
        if isinstance(child, Node):
            assert child.parent is node
    return (type(node).__name__, tuple(repr_tree(child) for child in node.children or []))


def _ddb_validator_copy(f: Any) -> None:
    import copy

    from moto.dynamodb.parsing import validators

    assert f is copy.deepcopy  # validators imported deepcopy by name ...
    assert "self.node_to_validate = deepcopy(expression)" in source(validators.Validator.__init__)
    assert validators.deepcopy is moto_adapter._ast_deepcopy  # ... and now uses the AST copy


def _ddb_condition_parse(f: Any) -> None:
    # _condition_tree repeats parse's steps in parse's order, then parse's own _make_op_condition runs.
    from moto.dynamodb.comparisons import ConditionExpressionParser

    assert params(f) == ["self"]
    steps = re.findall(r"nodes = self\.(_\w+)\(", source(f))
    ours = re.findall(r"nodes = parser\.(_\w+)\(", source(moto_adapter._condition_tree))
    assert steps == ours and len(steps) == 7
    text = source(f)
    for call in ("self._assert_no_redundant_parentheses(node)", "self._find_literals(node)",
                 "self._find_expr_attr_values(node)", "op = self._make_op_condition(node)"):  # fmt: skip
        assert call in text, call
    # values are looked up while paths are parsed, split as _condition_tree splits them
    assert 'node.value.replace("[", ".[").split(".")' in source(ConditionExpressionParser._parse_paths)
    assert "_lookup_expression_attribute_value(name)" in source(ConditionExpressionParser._parse_path_element)
    assert ConditionExpressionParser.Node._fields == ("nonterminal", "kind", "text", "value", "children")


def _ddb_traverse(f: Any) -> None:
    # _traverse builds each processor's map once: no traverser may override the walk, and every map must be
    # a fixed {NodeClass: self.method} dict (not one that depends on state changing during the walk).
    from moto.dynamodb.parsing import executors, validators

    ast_nodes = _moto_module("moto.dynamodb.parsing.ast_nodes")
    assert params(f) == ["self", "node"] and "traverse_node_recursively(node)" in source(f)
    walk = source(ast_nodes.DepthFirstTraverser.traverse_node_recursively)
    for part in ("self.pre_processing_of_child(node, i)", "isinstance(node, self.nodes_to_be_processed())",
                 "node = self.process(node)", "parent_node.children[child_id] = node"):  # fmt: skip
        assert part in walk, part
    walkers: set[Any] = {
        cls
        for module in (validators, executors, ast_nodes)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, ast_nodes.DepthFirstTraverser)
    }
    assert len(walkers) >= 11
    for cls in walkers - {ast_nodes.DepthFirstTraverser}:
        for method in ("traverse", "traverse_node_recursively", "process", "nodes_to_be_processed"):
            assert method not in vars(cls), f"{cls.__name__} overrides {method}"
        body = source(cls._processing_map)
        assert re.search(r"return \{[^{}]*\}\s*$", body), cls.__name__
        assert set(re.findall(r":\s*([\w.]+)", body.split("return {")[1])) <= {
            f"self.{name}" for name in dir(cls)
        }, cls.__name__



def _ddb_transact(f: Any) -> None:
    # moto snapshots each table with copy.deepcopy before the operations and puts the snapshot in place of
    # the table on a cancellation; _table_snapshot rebuilds only what item writes change.
    from moto.dynamodb.models import table as table_module

    assert params(f) == ["self", "transact_items"]
    text = source(f)
    assert re.search(r"original_table_state\[table_name\] = copy\.deepcopy\(\s*self\.tables\[table_name\]",
                     text)  # fmt: skip
    assert text.count("self.tables[table_name] = original_table_state[table_name]") == 2
    assert text.index("copy.deepcopy(") < text.index("for item in transact_items:\n            original_item")
    # what an item write changes on a table: its items index and its stream shard's records
    writes = source(table_module.Table.put_item) + source(table_module.Table.delete_item)
    assert "self.items[hash_value][range_value] = item" in writes and "self.stream_shard.add(" in writes
    assert set(re.findall(r"\bself\.(\w+)\s*(?:\[[^]]*\])*\s*=(?!=)", writes)) <= {"items"}
    add = source(table_module.StreamShard.add)
    assert set(re.findall(r"\bself\.(\w+)\s*=(?!=)", add)) <= {"items"} and "self.items.append(" in add
    assert {"table", "items"} <= set(vars(table_module.StreamShard("1", None)))  # type: ignore[arg-type]
    assert "self.items = defaultdict(dict)" in source(table_module.Table.__init__)


def _ddb_transact_copy(value: Any) -> None:
    import copy

    from moto.dynamodb import models

    assert value is copy  # moto.dynamodb.models imports the copy module ...
    calls = set(re.findall(r"\bcopy\.(\w+)", inspect.getsource(models)))
    assert calls == {"deepcopy"}, calls  # ... and only calls deepcopy (update_item, transact_write_items)
    assert models.copy.deepcopy is moto_adapter._ddb_models_deepcopy


def _ddb_item_size(f: Any) -> None:
    # _item_init keeps LimitedSizeDict's check as a running total: same sizes, same limit, same order.
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    assert params(f) == ["self", "hash_key", "range_key", "attrs"]
    text = source(f)
    assert "self.attrs = LimitedSizeDict()" in text and "self.attrs[key] = DynamoType(value)" in text
    check = source(LimitedSizeDict.__setitem__)
    assert f"> {moto_adapter._ITEM_SIZE_LIMIT}:" in check and "raise ItemSizeTooLarge" in check
    assert "item.size() if type(item) is DynamoType else bytesize(str(item))" in check
    assert "bytesize(key) + (" in check and "list(self.keys()) + list(self.values())" in check
    assert DynamoType({"S": "abc"}).size() == 3

def _branch_thread_name(f: Any) -> None:
    assert params(f) == ["self"]
    text = source(f)
    assert 'name=f"BranchWorker_${self._program}"' in text
    assert "TMP_THREADS.append(self._worker_thread)" in text
    assert "target=self._thread_routine" in text and "daemon=True" in text

CONTRACTS = {
    "ddb_update_parse": _ddb_update_parse,
    "ddb_validator_copy": _ddb_validator_copy,
    "ddb_condition_parse": _ddb_condition_parse,
    "ddb_traverse": _ddb_traverse,
    "ddb_transact": _ddb_transact,
    "ddb_transact_copy": _ddb_transact_copy,
    "ddb_item_size": _ddb_item_size,
    "branch_thread_name": _branch_thread_name,
    "json_deepcopy": _json_deepcopy,
    "xray_local_dispatch": _xray_local_dispatch,
    "moto_module_list": _moto_module_list,
    "response_method_names": _response_method_names,
    "jsonpath_parse_result_path": _jsonpath_parse,
    "jsonpath_parse_extract": _jsonpath_parse,
    "lambda_invoke": _lambda_invoke,
    "lambda_client_error": _lambda_client_error,
    "boto_client_for": _boto_client_for,
    "sync_poll_delay": _sync_poll_delay,
    "jsonata_eval": _jsonata_eval,
    "jsonata_declarations": _jsonata_declarations,
    "start_execution": _start_execution,
    "start_sync_execution": _start_sync_execution,
    "execution_arn_format": _execution_arn_format,
    "response_start_execution": _response_start_execution,
    "response_start_sync_execution": _response_start_sync_execution,
    "response_send_task_failure": _response_send_task_failure,
    "definition_cache": _definition_cache,
    "stop_date": _stop_date,
    "heartbeat_error": _heartbeat_error,
    "thread_list": _thread_list,
    "environment_stop_event": _environment_stop_event,
    "wait_state": _wait_state,
    "retry_backoff": _retry_backoff,
    "state_timeout": _state_timeout,
    "callback_wait": _callback_wait,
    "heartbeat_wait": _heartbeat_wait,
    "activity_start_wait": _activity_start_wait,
    "program_timeout": _program_timeout,
    "history_timestamp": _history_timestamp,
    "history_timestamp_format": _history_timestamp_format,
    "engine_failure_log": _engine_failure_log,
    "engine_exception_log": _engine_exception_log,
    "to_json_str": _to_json_str,
    "error_codes": _error_codes,
    "parser_scope": _parser_scope,
    "integration_request": _integration_request,
    "integration_response": _integration_response,
}


@pytest.mark.parametrize("hook", [name for name, _ in moto_adapter.HOOKS])
def test_hook_contract(hook: str) -> None:
    CONTRACTS[hook](original(hook))


def test_json_deepcopy_copies_json_and_defers_the_rest() -> None:
    value: dict[str, Any] = {"a": [1, 2.5, {"b": None, "c": True}], "d": "x"}
    clone = moto_adapter.json_deepcopy(value)
    assert clone == value
    clone["a"][2]["b"] = "changed"
    assert value["a"][2]["b"] is None  # no shared sub-object

    class Thing:
        def __init__(self) -> None:
            self.items = [1]

    thing = Thing()
    copied = moto_adapter.json_deepcopy({"k": thing})["k"]
    assert isinstance(copied, Thing) and copied is not thing and copied.items is not thing.items


def test_start_sync_execution_answer_parses_as_the_aws_model_says() -> None:
    """We write StartSyncExecution's JSON ourselves (not moto's serializer): botocore must read it back."""
    import datetime as dt
    import json

    import botocore.session
    from botocore.parsers import create_parser

    started = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    body = moto_adapter._epoch_seconds(started), moto_adapter._epoch_seconds(started.replace(microsecond=0))
    assert body == (1767323045.678, 1767323045)
    output = {
        "executionArn": "arn:aws:states:us-east-1:123456789012:express:m:n:x",
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
        "name": "n",
        "startDate": started,
        "stopDate": started + dt.timedelta(milliseconds=12),
        "status": "SUCCEEDED",
        "input": "{}",
        "inputDetails": {"included": True},
        "output": '{"ok":true}',
        "outputDetails": {"included": True},
        "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": 100},
        "error": None,
    }
    text = json.dumps({k: v for k, v in output.items() if v is not None}, default=moto_adapter._epoch_seconds)
    model = botocore.session.get_session().get_service_model("stepfunctions")
    shape = model.operation_model("StartSyncExecution").output_shape
    assert shape is not None
    parsed = create_parser("json").parse({"body": text.encode(), "headers": {}, "status_code": 200}, shape)
    assert parsed["startDate"] == started.replace(microsecond=678000)
    assert parsed["status"] == "SUCCEEDED" and parsed["billingDetails"]["billedDurationInMilliseconds"] == 100
    assert "error" not in parsed and parsed["outputDetails"] == {"included": True}


def test_importers_of_boto_client_for_are_all_rebound() -> None:
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and hasattr(module, "boto_client_for"):
            assert module.boto_client_for is moto_adapter._boto_client_for, name


@pytest.mark.parametrize("service", ["dynamodb", "sqs", "sns", "events", "stepfunctions", "secretsmanager"])
def test_engine_client_skips_only_the_botocore_handlers_it_names(service: str) -> None:
    """The engine's direct client (_EngineClient) does not emit botocore's signing, retry, endpoint and send
    events: a botocore upgrade that hangs another handler on one of them must fail here. It relies on the
    client internals read below, and emits the other events itself."""
    client = moto_adapter.stock_engine_client("eu-west-1", service, "http://127.0.0.1:1")
    model = client.meta.service_model
    op = model.operation_model(model.operation_names[0])
    emitter = client.meta.events._emitter
    for event, expected in moto_adapter.SKIPPED_EVENT_HANDLERS.items():
        handlers = emitter._handlers.prefix_search(f"{event}.{model.service_id.hyphenize()}.{op.name}")
        # botocore's own: a library imported in the same process may add its own (Powertools registers a
        # user-agent feature on request-created; skipping it only changes an in-process call's User-Agent)
        own = {h.__qualname__ for h in handlers if h.__module__.startswith("botocore")}
        assert own == expected, event
    assert client.meta.config.retries == moto_adapter._ONE_ATTEMPT
    assert callable(client._serializer.serialize_to_request) and client._user_agent_creator.to_string()
    assert client._request_signer._credentials.access_key == "local"
    assert client._endpoint._response_parser_factory.create_parser(model.resolved_protocol)
    assert params(client._endpoint._add_modeled_error_fields) == [
        "response_dict",
        "parsed_response",
        "operation_model",
        "parser",
    ]


def test_engine_services_call_their_client_by_attribute() -> None:
    """moto's integrations call ``getattr(client, api_action)(**parameters)`` (or a named method): what
    _EngineClient.__getattr__ answers. A call that read another attribute would reach the wrapped client."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk,
        state_task_service_dynamodb,
        state_task_service_events,
        state_task_service_sns,
        state_task_service_sqs,
    )

    for module in (
        state_task_service_aws_sdk,
        state_task_service_dynamodb,
        state_task_service_events,
        state_task_service_sns,
        state_task_service_sqs,
    ):
        assert re.search(r"getattr\(\w+_client, api_action\)\(\*\*normalised_parameters\)", source(module))


def test_reinstall_swaps_configuration() -> None:
    clock = VirtualClock(start=1000.0)
    moto_adapter.install(clock=clock, lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:2")
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    assert EventManager._get_current_timestamp().timestamp() == 1000.0
    assert moto_adapter._cfg().endpoint_url == "http://127.0.0.1:2"


def test_pruned_thread_list_drops_finished_threads() -> None:
    threads = [threading.Thread(target=lambda: None) for _ in range(5)]
    for t in threads:
        t.start()
        t.join()
    pruned = moto_adapter.PrunedThreadList()
    for t in threads:
        pruned.append(t)
    assert len(pruned) == 1


def test_pin_secret_arn_makes_the_template_arn_resolve() -> None:
    import boto3

    from local.aws_endpoint import AwsEndpoint

    with AwsEndpoint(port=0) as endpoint:
        sm = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        moto_arn = sm.create_secret(Name="pinned-secret", SecretString="s3cret")["ARN"]
        wanted = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pinned-secret-AbCdEf"
        assert moto_arn != wanted
        moto_adapter.pin_secret_arn("123456789012", "us-east-1", "pinned-secret", wanted)
        assert sm.get_secret_value(SecretId=wanted)["SecretString"] == "s3cret"
        assert sm.describe_secret(SecretId="pinned-secret")["ARN"] == wanted
        with pytest.raises(KeyError):
            moto_adapter.pin_secret_arn("123456789012", "us-east-1", "no-such-secret", wanted)


def test_stream_records_are_what_get_records_answers() -> None:
    """moto_adapter.stream_records reads moto's stream backend directly: same records as the API's."""
    import boto3

    from local.aws_endpoint import AwsEndpoint

    with AwsEndpoint(port=0) as endpoint:
        kw: dict[str, Any] = dict(
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="l",
            aws_secret_access_key="l",
        )
        ddb, streams = boto3.client("dynamodb", **kw), boto3.client("dynamodbstreams", **kw)
        arn = ddb.create_table(
            TableName="contract-stream",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        ddb.put_item(TableName="contract-stream", Item={"pk": {"S": "a"}, "n": {"N": "1"}, "m": {"M": {}}})
        ddb.put_item(TableName="contract-stream", Item={"pk": {"S": "a"}, "n": {"N": "2"}})
        direct = moto_adapter.stream_records("123456789012", "us-east-1", iterator["ShardIterator"], 10)
        api = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=10)
        assert [r["eventName"] for r in direct["Records"]] == ["INSERT", "MODIFY"]
        for mine, theirs in zip(direct["Records"], api["Records"], strict=True):
            assert mine["eventID"] == theirs["eventID"]
            created = mine["dynamodb"].pop("ApproximateCreationDateTime")
            assert created.timestamp() == pytest.approx(
                theirs["dynamodb"].pop("ApproximateCreationDateTime").timestamp(), abs=0.001
            )
            assert mine["dynamodb"] == theirs["dynamodb"]  # keys, images, sequence number, size, view type
        # a copy: changing it does not change what the next reader gets
        direct["Records"][0]["dynamodb"]["NewImage"]["n"]["N"] = "99"
        again = moto_adapter.stream_records("123456789012", "us-east-1", iterator["ShardIterator"], 1)
        assert again["Records"][0]["dynamodb"]["NewImage"]["n"] == {"N": "1"}
        next_page = moto_adapter.stream_records("123456789012", "us-east-1", direct["NextShardIterator"], 10)
        assert next_page["Records"] == []


def test_put_log_events_lands_where_the_logs_api_reads() -> None:
    import time

    import boto3

    from local.aws_endpoint import AwsEndpoint

    with AwsEndpoint(port=0) as endpoint:
        now = int(time.time() * 1000)
        events = [{"timestamp": now - 1, "message": "one"}, {"timestamp": now, "message": "two"}]
        answer = moto_adapter.put_log_events("us-east-1", "/contract/group", "s1", events)
        assert "rejectedLogEventsInfo" not in answer
        logs = boto3.client(
            "logs", endpoint_url=endpoint.url, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test",
        )  # fmt: skip
        got = logs.get_log_events(logGroupName="/contract/group", logStreamName="s1", startFromHead=True)
        assert [e["message"] for e in got["events"]] == ["one", "two"]
        old = [{"timestamp": now - 15 * 86_400_000, "message": "too old"}]
        assert moto_adapter.put_log_events("us-east-1", "/contract/group", "s1", old)[
            "rejectedLogEventsInfo"
        ] == {"tooOldLogEventEndIndex": 0}


def test_put_metric_data_stores_what_the_api_stores() -> None:
    """The EMF forwarder's MetricData (local.emf.metric_data) sent through the API and straight into the
    backend: the same data points, and GetMetricStatistics answers the same for both."""
    import datetime

    import boto3
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    from local.aws_endpoint import AwsEndpoint
    from local.emf import MetricPoint, metric_data

    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    point = MetricPoint(
        namespace="",
        name="Paid",
        dimensions=(("service", "api"), ("workflow", "express")),
        unit="Milliseconds",
        storage_resolution=60,
        timestamp_ms=int(now.timestamp() * 1000),
        values=(12.5, 12.5, 40.0),
    )
    region = "eu-central-1"
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
    with AwsEndpoint(port=0) as endpoint:
        cw = boto3.client(
            "cloudwatch", endpoint_url=endpoint.url, region_name=region, aws_access_key_id="test",
            aws_secret_access_key="test",
        )  # fmt: skip
        for namespace, direct in (("Contract/Api", False), ("Contract/Direct", True)):
            data = metric_data([MetricPoint(**{**point.__dict__, "namespace": namespace})])[namespace]
            if direct:
                moto_adapter.put_metric_data(region, namespace, data)
            else:
                cw.put_metric_data(Namespace=namespace, MetricData=data)  # type: ignore[arg-type]

        def stored(namespace: str) -> list[tuple[Any, ...]]:
            return sorted(
                (d.name, getattr(d, "value", None), d.timestamp, d.unit, [(x.name, x.value) for x in dims])
                for d in backend.metric_data
                for dims in [d.dimensions]
                if d.namespace == namespace
            )

        assert stored("Contract/Api") == stored("Contract/Direct") and len(stored("Contract/Api")) == 3

        def statistics(namespace: str) -> Any:
            return cw.get_metric_statistics(
                Namespace=namespace, MetricName="Paid", Dimensions=[
                    {"Name": "service", "Value": "api"}, {"Name": "workflow", "Value": "express"}
                ], StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5),
                Period=60, Statistics=["Sum", "SampleCount", "Maximum"],
            )["Datapoints"]  # fmt: skip

        assert statistics("Contract/Direct") == statistics("Contract/Api") != []


def test_put_trace_segments_stores_what_the_api_stores() -> None:
    import json

    from local.aws_endpoint import AwsEndpoint

    with AwsEndpoint(port=0):
        trace_id = "1-5f000000-0123456789abcdef0123abcd"
        good = {
            "id": "0123456789abcdef",
            "name": "svc",
            "trace_id": trace_id,
            "start_time": 1.0,
            "end_time": 2.0,
        }
        answer = moto_adapter.put_trace_segments(
            "us-east-1", [json.dumps(good), json.dumps({"name": "no id"})]
        )
        assert len(answer["UnprocessedTraceSegments"]) == 1  # the bad one, named as the API names it
        assert moto_adapter.xray_traces("us-east-1")[trace_id] == [good]


def test_xray_queries_and_map_answered_on_the_endpoint() -> None:
    """Unmodified boto3 against the endpoint: PutTraceSegments, then the three queries moto leaves empty."""
    import json

    import boto3
    import requests
    from botocore.exceptions import ClientError

    from local.aws_endpoint import AwsEndpoint
    from tests.local.xray_docs import payment_trace

    with AwsEndpoint(port=0) as endpoint:
        # only the runtime's own endpoint answers from the segments; another moto server stays stock
        stock: Any = boto3.client(
            "xray",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        assert stock.get_service_graph(StartTime=0, EndTime=1)["Services"] == []  # moto's placeholder
        moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url=endpoint.url)
        xray: Any = boto3.client(
            "xray",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        trace_id, docs = payment_trace(payment_id="pay_contract", base=1_800_000_000.0)
        answer = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(d) for d in docs])
        assert answer["UnprocessedTraceSegments"] == []
        window = {"StartTime": 1_799_999_000, "EndTime": 1_800_001_000}
        found = xray.get_trace_summaries(**window, FilterExpression='annotation.payment_id = "pay_contract"')
        assert [s["Id"] for s in found["TraceSummaries"]] == [trace_id]
        graph = xray.get_service_graph(**window)
        names = {(s["Name"], s.get("Type")) for s in graph["Services"]}
        assert ("acquirer.example", "remote") in names
        assert ("flow", "AWS::StepFunctions::StateMachine") in names
        assert len(xray.get_trace_graph(TraceIds=[trace_id])["Services"]) == len(graph["Services"])
        with pytest.raises(ClientError) as bad:
            xray.get_trace_summaries(**window, FilterExpression="annotation.payment_id = ")
        assert bad.value.response["Error"]["Code"] == "InvalidRequestException"
        assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        data = requests.get(f"{endpoint.url}/_local/xray/map.json", timeout=10).json()
        assert any(n["name"] == "acquirer.example" for n in data["nodes"])
        assert xray.batch_get_traces(TraceIds=[trace_id])["Traces"][0]["Id"] == trace_id  # still moto's
    moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:1")


def test_engine_failure_logs_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """A failure is logged (with the component's repr, as moto does) only when its logger is at DEBUG."""
    import logging

    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    class Boom(EvalComponent):
        def _eval_body(self, env: Any) -> None:
            raise ValueError("boom")

        def __repr__(self) -> str:
            return "Boom()"

    name = "moto.stepfunctions.parser.asl.component.eval_component"
    with caplog.at_level(logging.INFO, logger=name):
        Boom()._log_exception(ValueError("boom"))
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger=name):
        Boom()._log_exception(ValueError("boom"))
    assert [r.levelname for r in caplog.records] == ["ERROR"] and "Boom()" in caplog.records[0].getMessage()
