"""moto_adapter's DynamoDB expression hooks (parse caches, AST copy, traversal) answer exactly as stock moto.

Every scenario runs on stock moto (the hooks taken out), then twice with the hooks: the first pass fills the
caches, the second is all cache hits with the values of that call. Answers, errors (code, message, the item
of a failed condition), the table afterwards and the stream records must be the same each time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from local import moto_adapter
from local.clock import VirtualClock

DDB_HOOKS = [
    "ddb_update_parse",
    "ddb_validator_copy",
    "ddb_condition_parse",
    "ddb_traverse",
    "ddb_transact",
    "ddb_transact_copy",
    "ddb_item_size",
]
REGION = "us-east-1"


class _NoInvoker:
    def invoke(self, function: str, payload: bytes, **kwargs: Any) -> Any:
        raise AssertionError("not used")


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    moto_adapter.install(clock=VirtualClock(), lambda_invoker=_NoInvoker(), endpoint_url="http://127.0.0.1:1")


@contextmanager
def stock_moto() -> Iterator[None]:
    """moto's own DynamoDB expression code for the duration."""
    targets = {name: moto_adapter.resolve(qualname) for name, qualname in moto_adapter.HOOKS}
    for hook in DDB_HOOKS:
        owner, attr = targets[hook]
        setattr(owner, attr, moto_adapter._ORIGINALS[hook])
    try:
        yield
    finally:
        for hook in DDB_HOOKS:
            owner, attr = targets[hook]
            setattr(owner, attr, moto_adapter._REPLACEMENTS[hook])


def S(v: str) -> dict[str, Any]:
    return {"S": v}


def N(v: int | str) -> dict[str, Any]:
    return {"N": str(v)}


BASE: dict[str, Any] = {
    "pk": S("p1"),
    "status": S("processing"),
    "amount": N(5000),
    "currency": S("jpy"),
    "tags": {"SS": ["a", "b"]},
    "nums": {"NS": ["1", "2", "3"]},
    "events": {"L": [S("e1"), S("e2"), S("e3")]},
    "card": {"M": {"brand": S("visa"), "meta": {"M": {"x": N(1)}}}},
    "note": S("hello world"),
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
}
STATUS = {"#s": "status"}


def update(
    expression: str, values: dict[str, Any] | None = None, condition: str | None = None, **extra: Any
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"Key": {"pk": S("p1")}, "UpdateExpression": expression, **extra}
    if values is not None:
        kwargs["ExpressionAttributeValues"] = values
    if condition is not None:
        kwargs["ConditionExpression"] = condition
    return kwargs


# (initial item or None, operation, arguments): each expression text appears with several sets of values.
SCENARIOS: list[tuple[dict[str, Any] | None, str, dict[str, Any]]] = []
for old, new in [("processing", "succeeded"), ("processing", "failed"), ("requires_action", "failed")]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET #s = :new, updated_at = :now",
                {":new": S(new), ":now": S("2026-01-01"), ":old": S(old)},
                "#s = :old",
                ExpressionAttributeNames=STATUS,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
    )
for inc, more in [(1, "e4"), (-7, "e9")]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET card.meta.x = card.meta.x + :inc, events = list_append(events, :more)",
                {":inc": N(inc), ":more": {"L": [S(more)]}},
                ReturnValues="UPDATED_NEW",
            ),
        )
    )
for value in ["first", "second"]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET events[1] = :v, fresh = list_append(if_not_exists(fresh, :empty), :more), "
                "card.meta.y = :v, amount = amount - :n",
                {":v": S(value), ":empty": {"L": []}, ":more": {"L": [N(len(value))]}, ":n": N(len(value))},
                ReturnValues="ALL_NEW",
            ),
        )
    )
for n, tag, num in [(5, "c", "2"), (-5000, "a", "9")]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "ADD amount :n, tags :t DELETE nums :d",
                {":n": N(n), ":t": {"SS": [tag]}, ":d": {"NS": [num]}},
                ReturnValues="UPDATED_OLD",
            ),
        )
    )
for size in [2, 3, 5]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "REMOVE note, events[0]",
                {":size": N(size)},
                "attribute_exists(note) AND size(events) >= :size",
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
    )
for lo, hi in [(1000, 6000), (6000, 9000), (5000, 5000)]:
    low = N(lo) if isinstance(lo, int) else S(lo)
    high = N(hi) if isinstance(hi, int) else S(hi)
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET #s = :s",
                {":s": S("checked"), ":lo": low, ":hi": high},
                "#a BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#s": "status", "#a": "amount"},
            ),
        )
    )
for p, q, prefix, tag in [
    ("processing", "x", "hello", "a"),
    ("x", "y", "hello", "a"),
    ("x", "processing", "he", "z"),
]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET #s = :p",
                {":p": S(p), ":q": S(q), ":pre": S(prefix), ":tag": S(tag)},
                "#s IN (:p, :q) AND (begins_with(note, :pre) AND contains(tags, :tag))",
                ExpressionAttributeNames=STATUS,
                ReturnValues="ALL_NEW",
            ),
        )
    )
for kind, currency in [("S", "jpy"), ("N", "usd"), ("N", "jpy")]:
    SCENARIOS.append(
        (
            BASE,
            "update_item",
            update(
                "SET flag = :f",
                {":f": {"BOOL": False}, ":type": S(kind), ":c": S(currency)},
                "NOT attribute_type(amount, :type) OR (currency <> :c)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
    )
for a in ["one", "two"]:  # a new item; the second time the condition fails on the item the first made
    SCENARIOS.append(
        (
            None,
            "update_item",
            update(
                "SET a = :a, b = if_not_exists(b, :a) ADD counter :one",
                {":a": S(a), ":one": N(1)},
                "attribute_not_exists(pk) OR a = :a",
                ReturnValues="ALL_NEW",
            ),
        )
    )
# errors: a missing value, a type mismatch, bad syntax, an unused value, a key attribute, a reserved word
SCENARIOS += [
    (BASE, "update_item", update("SET a = :missing", {":other": S("x")})),
    (
        BASE,
        "update_item",
        update("SET a = :a", {":a": S("x")}, "#s = :missing", ExpressionAttributeNames=STATUS),
    ),
    (BASE, "update_item", update("ADD note :n", {":n": N(1)})),
    # a condition text parsed (and cached) above, now without one of its values
    (
        BASE,
        "update_item",
        update("SET #s = :new", {":new": S("x")}, "#s = :old", ExpressionAttributeNames=STATUS),
    ),
    (BASE, "update_item", update("SET = :a", {":a": S("x")})),
    (BASE, "update_item", update("SET a = :a", {":a": S("x"), ":unused": S("y")})),
    (BASE, "update_item", update("SET pk = :a", {":a": S("x")})),
    (BASE, "update_item", update("SET a = :a", {":a": S("x")}, "status = :a")),
    (BASE, "update_item", update("SET a = :a", {":a": S("x")}, "a = :a AND (b = :a")),
]
for size in [199_990, 200_010, 202_400, 202_600]:  # around the 400 KB item limit, counted per attribute
    SCENARIOS.append(
        (None, "put_item", {"Item": {"pk": S("p1"), "a": S("x" * size), "b": S("y" * size), "c": N(size)}})
    )
SCENARIOS.append((BASE, "update_item", update("SET big = :big", {":big": S("z" * 404_900)})))
for state in ["pending", "processing"]:
    SCENARIOS.append(
        (
            BASE,
            "put_item",
            {
                "Item": {"pk": S("p1"), "status": S("pending")},
                "ConditionExpression": "attribute_not_exists(pk) OR #s = :pending",
                "ExpressionAttributeNames": STATUS,
                "ExpressionAttributeValues": {":pending": S(state)},
                "ReturnValues": "ALL_OLD",
            },
        )
    )
for state in ["processing", "succeeded"]:
    SCENARIOS.append(
        (
            BASE,
            "delete_item",
            {
                "Key": {"pk": S("p1")},
                "ConditionExpression": "#s = :s AND card.brand = :b",
                "ExpressionAttributeNames": STATUS,
                "ExpressionAttributeValues": {":s": S(state), ":b": S("visa")},
                "ReturnValues": "ALL_OLD",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        )
    )
for minimum, count in [(100, 2), (9000, 2), (100, 3)]:
    SCENARIOS.append(
        (
            BASE,
            "query",
            {
                "KeyConditionExpression": "pk = :pk",
                "FilterExpression": "amount >= :min AND size(tags) = :count",
                "ExpressionAttributeValues": {":pk": S("p1"), ":min": N(minimum), ":count": N(count)},
            },
        )
    )
for prefix, word in [("proc", "zzz"), ("zzz", "world"), ("zzz", "zzz")]:
    SCENARIOS.append(
        (
            BASE,
            "scan",
            {
                "FilterExpression": "begins_with(#s, :p) OR contains(note, :w)",
                "ExpressionAttributeNames": STATUS,
                "ExpressionAttributeValues": {":p": S(prefix), ":w": S(word)},
            },
        )
    )


def _outcome(call: Callable[[], dict[str, Any]]) -> Any:
    try:
        answer = call()
    except ClientError as error:
        error_info = error.response["Error"]
        return ("error", error_info["Code"], error_info["Message"], error.response.get("Item"))
    except Exception as error:  # moto's own bugs and KeyErrors propagate in mock mode (a 500 in server mode)
        return ("raised", type(error).__name__, str(error))
    answer.pop("ResponseMetadata", None)
    return ("ok", answer)


def run_all() -> list[Any]:
    """Each scenario on a table of its own: (outcome, items afterwards, stream records)."""
    results = []
    with mock_aws():
        kw: dict[str, Any] = dict(region_name=REGION, aws_access_key_id="l", aws_secret_access_key="l")
        ddb = boto3.client("dynamodb", **kw)
        for index, (initial, operation, arguments) in enumerate(SCENARIOS):
            table = f"t{index}"
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
            if initial is not None:
                ddb.put_item(TableName=table, Item=initial)
            call = functools.partial(getattr(ddb, operation), TableName=table, **arguments)
            outcome = _outcome(call)
            again = _outcome(call)  # on the item the first call left
            items = sorted(ddb.scan(TableName=table)["Items"], key=lambda item: item["pk"]["S"])
            shard: Any = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(table).stream_shard
            records = [
                (
                    r.record["eventName"],
                    *(r.record["dynamodb"].get(k) for k in ("Keys", "OldImage", "NewImage")),
                )
                for r in shard.items
            ]
            results.append((index, outcome, again, items, records))
    return results


def test_cached_expressions_answer_as_stock_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    with stock_moto():
        stock = run_all()
    first = run_all()
    for mine, theirs in zip(first, stock, strict=True):
        assert mine == theirs, f"scenario {mine[0]}: {SCENARIOS[mine[0]][2]}"

    # The second pass must take the cache for every expression that parsed: count what gets parsed.
    parsed: list[str] = []
    parse_update = moto_adapter._ORIGINALS["ddb_update_parse"].__func__
    parse_condition = moto_adapter._condition_tree

    def counted_update(cls: Any, text: str) -> Any:
        parsed.append(text)
        return parse_update(cls, text)

    def counted_condition(parser: Any) -> Any:
        parsed.append(parser.condition_expression)
        return parse_condition(parser)

    monkeypatch.setitem(moto_adapter._ORIGINALS, "ddb_update_parse", classmethod(counted_update))
    monkeypatch.setattr(moto_adapter, "_condition_tree", counted_condition)
    second = run_all()
    assert second == stock
    # moto raises on these (a reserved word, bad syntax, a missing value): never cached
    unparseable = {"SET = :a", "a = :a AND (b = :a", "status = :a", "#s = :missing"}
    assert parsed and set(parsed) <= unparseable, parsed


def test_scenarios_cover_what_they_claim() -> None:
    """The scenarios are varied (the test above is only as good as this list) and not all one outcome."""
    with stock_moto():
        stock = run_all()
    keys = ("UpdateExpression", "ConditionExpression", "FilterExpression")
    texts = " ".join(str(arguments.get(key, "")) for _, _, arguments in SCENARIOS for key in keys)
    features = (
        "list_append if_not_exists ADD DELETE REMOVE BETWEEN IN size( begins_with contains attribute_type"
    )
    for feature in [*features.split(), "NOT ", " OR ", "[1]", "card.meta.x", "#s"]:
        assert feature in texts, feature
    outcomes = [outcome for _, outcome, _, _, _ in stock]
    codes = {outcome[1] for outcome in outcomes if outcome[0] == "error"}
    assert {"ConditionalCheckFailedException", "ValidationException"} <= codes
    assert sum(outcome[0] == "ok" for outcome in outcomes) >= 15
    failed = [o for o in outcomes if o[1] == "ConditionalCheckFailedException" and o[3] is not None]
    assert failed, "a failed condition with ReturnValuesOnConditionCheckFailure=ALL_OLD returns the item"


def test_ast_deepcopy_is_a_deep_copy() -> None:
    import importlib

    from moto.dynamodb.models.dynamo_type import DynamoType

    DDBTypedValue = importlib.import_module("moto.dynamodb.parsing.ast_nodes").DDBTypedValue
    expressions = importlib.import_module("moto.dynamodb.parsing.expressions")
    UpdateExpressionParser = expressions.UpdateExpressionParser

    tree = UpdateExpressionParser.make("SET a.b[2] = :v, c = list_append(c, :w) REMOVE d")
    copied = moto_adapter._ast_deepcopy(tree)
    nodes, clones = [tree], [copied]
    while nodes:
        node, clone = nodes.pop(), clones.pop()
        assert type(clone) is type(node) and clone is not node
        if node.children is None:
            assert clone.children is None
            continue
        assert clone.children is not node.children and len(clone.children) == len(node.children)
        for child, child_clone in zip(node.children, clone.children, strict=True):
            if hasattr(child, "children"):
                assert child_clone.parent is clone  # links point into the copy
                nodes.append(child)
                clones.append(child_clone)
            else:
                assert child_clone == child
    typed = DDBTypedValue(DynamoType({"L": [{"S": "x"}]}))
    typed_copy = moto_adapter._ast_deepcopy(typed)
    typed_copy.get_value().value.append(DynamoType({"S": "y"}))
    assert len(typed.get_value().value) == 1  # other leaves still go through copy.deepcopy


def _transactions(ddb: Any) -> list[Any]:
    """A success, cancellations after writes (rolled back), a duplicate key, then writes after a rollback."""
    events = "events"

    def put(pk: str, sk: str, **extra: Any) -> dict[str, Any]:
        return {"Put": {"TableName": events, "Item": {"pk": S(pk), "sk": S(sk), **extra}}}

    def bump(pk: str, amount: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": "payments",
                "Key": {"pk": S(pk)},
                "UpdateExpression": "SET amount = amount + :n, events = list_append(events, :e)",
                "ExpressionAttributeValues": {":n": N(amount), ":e": {"L": [S(f"bump{amount}")]}},
            }
        }

    def check(pk: str, status: str) -> dict[str, Any]:
        return {
            "ConditionCheck": {
                "TableName": "payments",
                "Key": {"pk": S(pk)},
                "ConditionExpression": "#s = :s",
                "ExpressionAttributeNames": STATUS,
                "ExpressionAttributeValues": {":s": S(status)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    calls = [
        [put("p1", "001"), put("p1", "002", n=N(2)), bump("p1", 5), check("p9", "processing")],
        [
            put("p1", "003"),
            bump("p1", 100),
            {"Delete": {"TableName": events, "Key": {"pk": S("p1"), "sk": S("001")}}},
            check("p9", "succeeded"),
        ],
        [put("p2", "001"), bump("p1", 1), put("p2", "001")],
        [
            bump("p1", 7),
            {"Delete": {"TableName": events, "Key": {"pk": S("p1"), "sk": S("002")}}},
            put("p3", "x"),
        ],
        [
            put("p4", "a"),
            {
                "Update": {
                    "TableName": "payments",
                    "Key": {"pk": S("nobody")},
                    "UpdateExpression": "SET a = b",
                }
            },
        ],
    ]
    return [_outcome(functools.partial(ddb.transact_write_items, TransactItems=call)) for call in calls]


def test_transactions_answer_and_roll_back_as_stock_moto() -> None:
    """The snapshot of a transacted table holds what a cancelled transaction must put back: items (also one
    an Update changed in place), stream records, and the table keeps working after a rollback."""

    def run() -> tuple[Any, ...]:
        with mock_aws():
            kw: dict[str, Any] = dict(region_name=REGION, aws_access_key_id="l", aws_secret_access_key="l")
            ddb = boto3.client("dynamodb", **kw)
            stream: Any = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
            ddb.create_table(
                TableName="payments",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification=stream,
            )
            ddb.create_table(
                TableName="events",
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification=stream,
            )
            ddb.put_item(TableName="payments", Item=BASE)
            ddb.put_item(TableName="payments", Item={**BASE, "pk": S("p9")})
            ddb.put_item(TableName="events", Item={"pk": S("p0"), "sk": S("000")})
            outcomes = _transactions(ddb)
            backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
            tables = {}
            for name in ("payments", "events"):
                table: Any = backend.get_table(name)
                assert table.stream_shard.table is table  # the shard of the table that is in the backend
                items = sorted(
                    ddb.scan(TableName=name)["Items"], key=lambda i: (i["pk"]["S"], i.get("sk", S(""))["S"])
                )
                records = [
                    (
                        r.record["eventName"],
                        *(r.record["dynamodb"].get(k) for k in ("Keys", "OldImage", "NewImage")),
                    )
                    for r in table.stream_shard.items
                ]
                tables[name] = (items, records)
            return outcomes, tables

    with stock_moto():
        stock = run()
    assert [o[0] for o in stock[0]] == ["ok", "error", "error", "ok", "error"]  # what the calls are for
    assert run() == stock
