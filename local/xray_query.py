"""X-Ray filter expressions and trace summaries (pure functions over analysed traces, no I/O).

Grammar (a subset of X-Ray's, same syntax and meaning)::

    expr      := or ;  or := and (("OR" | "||") and)* ;  and := not (("AND" | "&&") not)*
    not       := ("NOT" | "!") not | "(" expr ")" | predicate
    predicate := BOOL [("=" | "!=") (true | false)]              BOOL: ok error fault throttle partial
               | NUM op number                                    NUM: responsetime duration
               | http.status op number | HTTP sop string          HTTP: http.url http.method
               | user sop string                                        http.useragent http.clientip
               | annotation.KEY op value | annotation[KEY] op value
               | service([name | id(name: "n", type: "t")]) [ "{" expr "}" ]
               | id(name: "n"[, type: "t"]) [ "{" expr "}" ]
               | edge(svc, svc) [ "{" expr "}" ]
    op  := = != < <= > >=        sop := = != CONTAINS BEGINSWITH ENDSWITH
    value := "string" | number | true | false

Keywords and operators are case-insensitive. Inside ``service(...) { }`` the predicates apply to that
service's requests (``fault``: one of them faulted; ``responsetime``: its segment durations); inside
``edge(a, b) { }`` to the calls from a to b as a saw them. ``annotation.k != v`` matches traces that have
``k`` with another value. Anything else (``rootcause``, ``group``, ...) is a ``FilterError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.xray_graph import CLIENT_TYPE, Call, NodeId, TraceView, walk_all


class FilterError(ValueError):
    """An expression this grammar cannot parse: the API answers InvalidRequestException."""


# -- scopes ------------------------------------------------------------------------------------------------
@dataclass
class Scope:
    """What a predicate looks at: a whole trace, one service's requests, or one edge's calls."""

    error: bool = False
    fault: bool = False
    throttle: bool = False
    partial: bool = False
    response_times: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    http: list[dict[str, Any]] = field(default_factory=list)  # keys: status url method useragent clientip
    annotations: dict[str, list[Any]] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    view: TraceView | None = None  # only the trace scope can look at services and edges


def _http_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    http = doc.get("http")
    if not isinstance(http, Mapping):
        return None
    req, resp = http.get("request") or {}, http.get("response") or {}
    return {
        "status": resp.get("status"),
        "url": req.get("url"),
        "method": req.get("method"),
        "useragent": req.get("user_agent"),
        "clientip": req.get("client_ip"),
    }


def _annotations(docs: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for part in walk_all(docs):
        for key, value in (part.get("annotations") or {}).items():
            out.setdefault(str(key), []).append(value)
    return out


def trace_scope(view: TraceView) -> Scope:
    parts = list(walk_all(view.documents))
    root_http = _http_of(view.root) if view.root else None
    return Scope(
        error=any(p.get("error") is True for p in parts),
        fault=any(p.get("fault") is True for p in parts),
        throttle=any(p.get("throttle") is True for p in parts),
        partial=view.partial,
        response_times=[view.response_time],
        durations=[view.duration],
        http=[root_http] if root_http else [],
        annotations=_annotations(view.documents),
        users=[str(s["user"]) for s in view.segments if s.get("user")],
        view=view,
    )


def _calls_scope(view: TraceView, calls: list[Call], *, edge: bool) -> Scope:
    done = [c for c in calls if (c.edge_duration if edge else c.duration) is not None]
    wanted = {c.doc_id for c in calls}
    docs = [p for p in walk_all(view.documents) if str(p.get("id")) in wanted]
    return Scope(
        error=any(c.edge_error if edge else c.error for c in calls),
        fault=any(c.edge_fault if edge else c.fault for c in calls),
        throttle=any(c.edge_throttle if edge else c.throttle for c in calls),
        partial=len(done) < len(calls),
        response_times=[float((c.edge_duration if edge else c.duration) or 0.0) for c in done],
        durations=[float((c.edge_duration if edge else c.duration) or 0.0) for c in done],
        http=[h for h in (_http_of(d) for d in docs) if h],
        annotations=_annotations(docs),
        users=[str(d["user"]) for d in docs if d.get("user")],
    )


# -- tokens ------------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])
      | (?P<op>!=|<=|>=|&&|\|\||[=<>!(){}\[\],:])
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string number op word end
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "string":
            value: Any = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        else:
            value = raw
        tokens.append(Token(kind, value, start))
        pos = m.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


# -- parser ------------------------------------------------------------------------------------------------
Predicate = Callable[[Scope], bool]
_BOOLS = {"ok", "error", "fault", "throttle", "partial"}
_NUMS = {"responsetime", "duration"}
_HTTP_STR = {"http.url", "http.method", "http.useragent", "http.clientip"}
_NUM_OPS = {"=", "!=", "<", "<=", ">", ">="}
_STR_OPS = {"=", "!=", "contains", "beginswith", "endswith"}


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(right, bool) or isinstance(left, bool):
        if not (isinstance(right, bool) and isinstance(left, bool)):
            return op == "!="
        return (left == right) if op == "=" else (left != right) if op == "!=" else False
    if isinstance(right, int | float):
        if not isinstance(left, int | float):
            return op == "!="
        return {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[op]
    if not isinstance(left, str):
        return op == "!="
    return {
        "=": left == right,
        "!=": left != right,
        "contains": right in left,
        "beginswith": left.startswith(right),
        "endswith": left.endswith(right),
    }.get(op, False)


@dataclass(frozen=True)
class ServiceRef:
    name: str | None  # None: the entry point (``service()``)
    type: str | None = None

    def matches(self, node: NodeId) -> bool:
        return (self.name is None or node.name == self.name) and (self.type is None or node.type == self.type)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and str(tok.value).lower() in words

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value in ops

    def expect_op(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.error(tok, f"expected {op!r}")

    def error(self, tok: Token, msg: str) -> FilterError:
        found = "end of expression" if tok.kind == "end" else repr(str(tok.value))
        return FilterError(f"{msg} at position {tok.pos}, found {found}")

    # grammar
    def parse(self) -> Predicate:
        pred = self.or_()
        if self.peek().kind != "end":
            raise self.error(self.peek(), "expected AND, OR or the end")
        return pred

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.is_word("or") or self.is_op("||"):
            self.next()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda s: any(p(s) for p in parts))

    def and_(self) -> Predicate:
        parts = [self.not_()]
        while self.is_word("and") or self.is_op("&&"):
            self.next()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda s: all(p(s) for p in parts))

    def not_(self) -> Predicate:
        if self.is_word("not") or self.is_op("!"):
            self.next()
            inner = self.not_()
            return lambda s: not inner(s)
        if self.is_op("("):
            self.next()
            inner = self.or_()
            self.expect_op(")")
            return inner
        return self.predicate()

    def predicate(self) -> Predicate:
        tok = self.next()
        if tok.kind != "word":
            raise self.error(tok, "expected a keyword")
        word = str(tok.value)
        key = word.lower()
        if key in _BOOLS:
            return self.boolean(key)
        if key in _NUMS:
            op, value = self.operator(_NUM_OPS, number=True)
            attr = "response_times" if key == "responsetime" else "durations"
            return lambda s: any(_compare(v, op, value) for v in getattr(s, attr))
        if key == "http.status":
            op, value = self.operator(_NUM_OPS, number=True)
            return lambda s: any(_compare(h.get("status"), op, value) for h in s.http)
        if key in _HTTP_STR:
            field_name = key.split(".", 1)[1]
            op, value = self.operator(_STR_OPS, string=True)
            return lambda s: any(_compare(h.get(field_name), op, value) for h in s.http)
        if key == "user":
            op, value = self.operator(_STR_OPS, string=True)
            return lambda s: any(_compare(u, op, value) for u in s.users)
        if key.startswith("annotation.") or key == "annotation":
            return self.annotation(word, tok)
        if key == "service":
            return self.service()
        if key == "id":
            return self.scoped_service(self.node_id())
        if key == "edge":
            return self.edge()
        raise self.error(tok, "unsupported keyword")

    def boolean(self, key: str) -> Predicate:
        want = True
        if self.is_op("=", "!="):
            op = self.next().value
            tok = self.next()
            if tok.kind != "word" or str(tok.value).lower() not in ("true", "false"):
                raise self.error(tok, "expected true or false")
            want = (str(tok.value).lower() == "true") == (op == "=")

        def flag(s: Scope) -> bool:
            value = not (s.error or s.fault or s.throttle) if key == "ok" else bool(getattr(s, key))
            return value == want

        return flag

    def operator(self, ops: set[str], *, number: bool = False, string: bool = False) -> tuple[str, Any]:
        tok = self.next()
        op = str(tok.value).lower()
        if tok.kind not in ("op", "word") or op not in ops:
            raise self.error(tok, "expected a comparison operator")
        val = self.next()
        if number and (val.kind != "number"):
            raise self.error(val, "expected a number")
        if string and val.kind != "string":
            raise self.error(val, "expected a quoted string")
        return op, val.value

    def value(self) -> Any:
        tok = self.next()
        if tok.kind in ("string", "number"):
            return tok.value
        if tok.kind == "word" and str(tok.value).lower() in ("true", "false"):
            return str(tok.value).lower() == "true"
        raise self.error(tok, "expected a value")

    def annotation(self, word: str, tok: Token) -> Predicate:
        if word.lower() == "annotation":
            self.expect_op("[")
            key_tok = self.next()
            if key_tok.kind not in ("word", "string"):
                raise self.error(key_tok, "expected an annotation key")
            name = str(key_tok.value)
            self.expect_op("]")
        else:
            name = word.split(".", 1)[1]
        if not name:
            raise self.error(tok, "expected an annotation key")
        op_tok = self.next()
        op = str(op_tok.value).lower()
        if op not in _NUM_OPS | _STR_OPS:
            raise self.error(op_tok, "expected a comparison operator")
        value = self.value()
        if op in _STR_OPS - _NUM_OPS and not isinstance(value, str):
            raise self.error(op_tok, f"{op.upper()} needs a string")
        if op in _NUM_OPS - {"=", "!="} and not isinstance(value, int | float):
            raise self.error(op_tok, f"{op} needs a number")

        def match(s: Scope) -> bool:
            values = s.annotations.get(name)
            if not values:
                return False
            if op == "!=":
                return all(_compare(v, "!=", value) for v in values)
            return any(_compare(v, op, value) for v in values)

        return match

    def node_id(self) -> ServiceRef:
        self.expect_op("(")
        args: dict[str, str] = {}
        while not self.is_op(")"):
            key = self.next()
            if key.kind != "word" or str(key.value).lower() not in ("name", "type"):
                raise self.error(key, "expected name: or type:")
            self.expect_op(":")
            val = self.next()
            if val.kind != "string":
                raise self.error(val, "expected a quoted string")
            args[str(key.value).lower()] = str(val.value)
            if self.is_op(","):
                self.next()
        self.expect_op(")")
        if "name" not in args:
            raise self.error(self.peek(), "id() needs name:")
        return ServiceRef(args["name"], args.get("type"))

    def service_arg(self) -> ServiceRef:
        tok = self.peek()
        if tok.kind == "string":
            self.next()
            return ServiceRef(str(tok.value))
        if self.is_word("id"):
            self.next()
            return self.node_id()
        raise self.error(tok, "expected a service name or id(...)")

    def service(self) -> Predicate:
        self.expect_op("(")
        ref = ServiceRef(None) if self.is_op(")") else self.service_arg()
        self.expect_op(")")
        return self.scoped_service(ref)

    def inner(self) -> Predicate | None:
        if not self.is_op("{"):
            return None
        self.next()
        pred = self.or_()
        self.expect_op("}")
        return pred

    def scoped_service(self, ref: ServiceRef) -> Predicate:
        inner = self.inner()

        def match(s: Scope) -> bool:
            view = s.view
            if view is None:
                return False
            if ref.name is None:
                entry = view.nodes_by_segment.get(str(view.root["id"])) if view.root else None
                nodes = [entry] if entry else []
            else:
                nodes = [n for n in view.node_ids() if ref.matches(n)]
            for node in nodes:
                if inner is None:
                    return True
                calls = [c for c in view.calls if c.node == node]
                if inner(_calls_scope(view, calls, edge=False)):
                    return True
            return False

        return match

    def edge(self) -> Predicate:
        self.expect_op("(")
        src = self.service_arg()
        self.expect_op(",")
        dst = self.service_arg()
        self.expect_op(")")
        inner = self.inner()

        def match(s: Scope) -> bool:
            view = s.view
            if view is None:
                return False
            calls = [c for c in view.calls if c.caller and src.matches(c.caller) and dst.matches(c.node)]
            if not calls:
                return False
            return inner is None or inner(_calls_scope(view, calls, edge=True))

        return match


def parse_filter(text: str) -> Predicate:
    """Compile a filter expression; raises FilterError naming the position of what is wrong."""
    if not text or not text.strip():
        return lambda s: True
    return _Parser(text).parse()


def matches(view: TraceView, predicate: Predicate) -> bool:
    return predicate(trace_scope(view))


# -- summaries ---------------------------------------------------------------------------------------------
def trace_epoch(trace_id: str) -> int | None:
    """The request start X-Ray encodes in a trace id (``1-<8 hex epoch>-...``)."""
    parts = trace_id.split("-")
    try:
        return int(parts[1], 16)
    except (IndexError, ValueError):
        return None


def in_time_range(view: TraceView, start: float, end: float, range_type: str = "TraceId") -> bool:
    """X-Ray's TimeRangeType: TraceId (the id's time), Event (the trace's last update), Service (a segment's
    end)."""
    if range_type == "Event":
        when = view.end if view.end is not None else view.start
        return start <= when <= end
    if range_type == "Service":
        return any(start <= float(s["end_time"]) <= end for s in view.segments if "end_time" in s)
    epoch = trace_epoch(view.trace_id)
    return epoch is not None and start <= epoch <= end


def service_id(node: NodeId, account_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": node.name, "Names": [node.name]}
    if account_id and node.type and node.type.startswith("AWS::"):
        out["AccountId"] = account_id
    if node.type:
        out["Type"] = node.type
    return out


def _annotation_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BooleanValue": value}
    if isinstance(value, int | float):
        return {"NumberValue": value}
    return {"StringValue": str(value)}


def _root_causes(view: TraceView, flag: str, account_id: str | None) -> list[dict[str, Any]]:
    """Where a fault/error started: per flagged segment, the deepest flagged (sub)segment under it."""
    causes: list[dict[str, Any]] = []
    for seg in view.segments:
        if seg.get(flag) is not True:
            continue
        path: list[dict[str, Any]] = []
        doc: Mapping[str, Any] | None = seg
        while doc is not None:
            exceptions = [
                {"Name": str(e.get("type", "")), "Message": str(e.get("message", ""))}
                for e in ((doc.get("cause") or {}).get("exceptions") or [])
                if isinstance(e, Mapping)
            ]
            path.append(
                {
                    "Name": str(doc.get("name")),
                    "Exceptions": exceptions,
                    "Remote": bool(doc.get("namespace") == "remote"),
                }
            )
            doc = next((s for s in doc.get("subsegments") or [] if s.get(flag) is True), None)
        node = view.nodes_by_segment[str(seg["id"])]
        causes.append(
            {
                "Services": [{**service_id(node, account_id), "EntityPath": path, "Inferred": False}],
                "ClientImpacting": seg is view.root,
            }
        )
    return causes


def summarize(view: TraceView, *, account_id: str | None = None) -> dict[str, Any]:
    """One TraceSummary as GetTraceSummaries returns it."""
    scope = trace_scope(view)
    nodes = [n for n in view.node_ids() if n.type != CLIENT_TYPE]
    annotations: dict[str, list[dict[str, Any]]] = {}
    for seg in view.segments + [d for d in view.documents if d.get("type") == "subsegment"]:
        owner = view.owner.get(str(seg["id"]))
        node = view.nodes_by_segment.get(owner) if owner else None
        sid = [service_id(node, account_id)] if node else []
        for part in walk_all([seg]):
            for key, value in (part.get("annotations") or {}).items():
                entries = annotations.setdefault(str(key), [])
                av = _annotation_value(value)
                entry = next((e for e in entries if e["AnnotationValue"] == av), None)
                if entry is None:
                    entries.append({"AnnotationValue": av, "ServiceIds": list(sid)})
                elif sid and sid[0] not in entry["ServiceIds"]:
                    entry["ServiceIds"].extend(sid)
    summary: dict[str, Any] = {
        "Id": view.trace_id,
        "StartTime": float(view.root["start_time"]) if view.root else view.start,
        "Duration": round(view.duration, 6),
        "ResponseTime": round(view.response_time, 6),
        "HasFault": scope.fault,
        "HasError": scope.error,
        "HasThrottle": scope.throttle,
        "IsPartial": scope.partial,
        "Http": {},
        "Annotations": annotations,
        "Users": [{"UserName": u, "ServiceIds": []} for u in dict.fromkeys(scope.users)],
        "ServiceIds": [service_id(n, account_id) for n in nodes],
        "ResourceARNs": [
            {"ARN": a}
            for a in dict.fromkeys(str(s["resource_arn"]) for s in view.segments if s.get("resource_arn"))
        ],
        "InstanceIds": [],
        "AvailabilityZones": [],
        "FaultRootCauses": _root_causes(view, "fault", account_id),
        "ErrorRootCauses": _root_causes(view, "error", account_id),
        "ResponseTimeRootCauses": [],
        "Revision": len(view.documents),
        "MatchedEventTime": float(view.root["start_time"]) if view.root else view.start,
    }
    if view.root is not None:
        summary["EntryPoint"] = service_id(view.nodes_by_segment[str(view.root["id"])], account_id)
        http = _http_of(view.root)
        if http:
            keys = {
                "url": "HttpURL",
                "status": "HttpStatus",
                "method": "HttpMethod",
                "useragent": "UserAgent",
                "clientip": "ClientIp",
            }
            summary["Http"] = {keys[k]: v for k, v in http.items() if v is not None}
    return summary


def trace_summaries(
    views: Iterable[TraceView],
    *,
    start: float,
    end: float,
    filter_expression: str | None = None,
    time_range_type: str = "TraceId",
    account_id: str | None = None,
) -> dict[str, Any]:
    """The GetTraceSummaries answer (one page: every match), oldest first. Raises FilterError."""
    predicate = parse_filter(filter_expression or "")
    in_range = [v for v in views if in_time_range(v, start, end, time_range_type)]
    found = [summarize(v, account_id=account_id) for v in in_range if matches(v, predicate)]
    found.sort(key=lambda s: (s["StartTime"], s["Id"]))
    return {"TraceSummaries": found, "ApproximateTime": end, "TracesProcessedCount": len(in_range)}
