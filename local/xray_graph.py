"""X-Ray's service graph, computed from segment documents (pure functions, no I/O).

A trace is a set of top-level documents: segments (one per service that handled a request) and independent
subsegments (``"type": "subsegment"``, sent separately by an SDK, attached to their ``parent_id``). The
graph follows X-Ray's rules:

- a *node* per service, identified by (name, type): a segment gives (name, origin); a subsegment with
  namespace ``remote`` (an HTTP call) or ``aws`` (an SDK call) that no segment continues gives an *inferred*
  node (host name / ``remote``, AWS service / ``AWS::<Service>``);
- an *edge* caller → callee when a segment's ``parent_id`` is a (sub)segment of another service, or for
  each call to an inferred node. Edge statistics come from the caller's subsegment (the client's view),
  node statistics from the callee's own segments;
- a segment whose parent is not in the trace is an entry point: a ``client`` node calls it;
- 4xx → error, 429 → error + throttle, 5xx → fault, by the flags the documents carry; in-progress
  documents count in no statistics (X-Ray counts completed requests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Inferred node types of AWS SDK subsegments (namespace "aws"), by the name the SDKs give the subsegment.
AWS_NODE_TYPES = {
    "DynamoDB": "AWS::DynamoDB::Table",
    "SQS": "AWS::SQS::Queue",
    "SNS": "AWS::SNS",
    "S3": "AWS::S3::Bucket",
    "Lambda": "AWS::Lambda",
    "SFN": "AWS::StepFunctions",
    "StepFunctions": "AWS::StepFunctions",
    "SecretsManager": "AWS::SecretsManager",
    "EventBridge": "AWS::Events",
    "CloudWatchEvents": "AWS::Events",
}
CLIENT_TYPE = "client"


@dataclass(frozen=True, order=True)
class NodeId:
    name: str
    type: str | None  # None: a segment without origin (X-Ray then shows the name only)


@dataclass(frozen=True)
class Call:
    """One completed-or-not request handled by ``node``; ``caller`` is who sent it (None: nobody traced).
    ``edge_*`` describe the request as the caller saw it (its subsegment), else as the callee did."""

    trace_id: str
    node: NodeId
    caller: NodeId | None
    start: float
    end: float | None
    error: bool
    fault: bool
    throttle: bool
    edge_start: float
    edge_end: float | None
    edge_error: bool
    edge_fault: bool
    edge_throttle: bool
    doc_id: str
    inferred: bool = False

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)

    @property
    def edge_duration(self) -> float | None:
        return None if self.edge_end is None else max(0.0, self.edge_end - self.edge_start)


@dataclass
class TraceView:
    """One trace, analysed: its documents, its calls (node visits) and entry point."""

    trace_id: str
    segments: list[dict[str, Any]]  # real segments (not independent subsegments)
    documents: list[dict[str, Any]]  # every top-level document
    calls: list[Call]
    root: dict[str, Any] | None
    owner: dict[str, str]  # (sub)segment id -> id of the segment it belongs to
    nodes_by_segment: dict[str, NodeId]

    @property
    def start(self) -> float:
        return min((float(d["start_time"]) for d in self.documents), default=0.0)

    @property
    def end(self) -> float | None:
        ends = [float(d["end_time"]) for d in self.documents if "end_time" in d]
        return max(ends) if ends else None

    @property
    def partial(self) -> bool:
        return any(d.get("in_progress") for d in walk_all(self.documents))

    @property
    def duration(self) -> float:
        """X-Ray's Duration: root segment's start to the end of the last document."""
        start = float(self.root["start_time"]) if self.root else self.start
        end = self.end
        return 0.0 if end is None else max(0.0, end - start)

    @property
    def response_time(self) -> float:
        """X-Ray's ResponseTime: start to end of the root segment (what the caller waited for)."""
        if self.root is None or "end_time" not in self.root:
            return self.duration
        return max(0.0, float(self.root["end_time"]) - float(self.root["start_time"]))

    def node_ids(self) -> list[NodeId]:
        seen: dict[NodeId, None] = {}
        for call in self.calls:
            seen.setdefault(call.node, None)
        return list(seen)


def node_of(segment: Mapping[str, Any]) -> NodeId:
    origin = segment.get("origin")
    return NodeId(str(segment.get("name", "")), str(origin) if origin else None)


def inferred_node(subsegment: Mapping[str, Any]) -> NodeId | None:
    """The node a remote/aws subsegment calls, or None for a local subsegment."""
    namespace = subsegment.get("namespace")
    name = str(subsegment.get("name", ""))
    if namespace == "remote":
        return NodeId(name, "remote")
    if namespace == "aws":
        return NodeId(name, AWS_NODE_TYPES.get(name, f"AWS::{name}"))
    return None


def walk(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """``doc`` and every nested subsegment, depth first."""
    yield doc
    for sub in doc.get("subsegments") or ():
        if isinstance(sub, Mapping):
            yield from walk(sub)


def walk_all(docs: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for doc in docs:
        yield from walk(doc)


def _flag(doc: Mapping[str, Any], key: str) -> bool:
    return doc.get(key) is True


def _end(doc: Mapping[str, Any]) -> float | None:
    return float(doc["end_time"]) if "end_time" in doc and not doc.get("in_progress") else None


def dedupe(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One document per id: a completed document wins over an in-progress one, else the later one."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        key = str(doc.get("id"))
        old = out.get(key)
        if old is not None and "end_time" in old and "end_time" not in doc:
            continue
        out[key] = dict(doc)
    return list(out.values())


def analyze_trace(trace_id: str, docs: Iterable[Mapping[str, Any]]) -> TraceView:
    documents = sorted(dedupe(docs), key=lambda d: float(d.get("start_time", 0)))
    segments = [d for d in documents if d.get("type") != "subsegment"]
    independents = [d for d in documents if d.get("type") == "subsegment"]
    owner: dict[str, str] = {}
    by_id: dict[str, Mapping[str, Any]] = {}
    for seg in segments:
        for part in walk(seg):
            owner[str(part["id"])] = str(seg["id"])
            by_id[str(part["id"])] = part
    # Independent subsegments may arrive before/after their parent subsegment: resolve until stable.
    unresolved = list(independents)
    while unresolved:
        progressed = False
        for sub in list(unresolved):
            parent = str(sub.get("parent_id"))
            if parent in owner:
                for part in walk(sub):
                    owner[str(part["id"])] = owner[parent]
                    by_id[str(part["id"])] = part
                unresolved.remove(sub)
                progressed = True
        if not progressed:
            break  # orphans: their segment has not arrived (yet)

    nodes_by_segment = {str(s["id"]): node_of(s) for s in segments}
    calls: list[Call] = []
    parents_of_segments = {str(s.get("parent_id")) for s in segments if s.get("parent_id")}
    for seg in segments:
        node = nodes_by_segment[str(seg["id"])]
        parent_id = str(seg.get("parent_id") or "")
        caller: NodeId | None = None
        site: Mapping[str, Any] = seg
        if parent_id in owner and owner[parent_id] != seg["id"]:
            caller = nodes_by_segment[owner[parent_id]]
            parent_doc = by_id[parent_id]
            if parent_doc is not _segment_by_id(segments, owner[parent_id]):
                site = parent_doc  # the caller's subsegment: the client's view of this request
        calls.append(_call(trace_id, node, caller, seg, site, str(seg["id"])))
    # Calls to services that sent no segment of their own (HTTP hosts, AWS APIs).
    for part_id, part in by_id.items():
        if part_id in parents_of_segments or part is _segment_by_id(segments, owner.get(part_id, "")):
            continue
        target = inferred_node(part)
        if target is None or _continued_below(part, parents_of_segments):
            continue
        caller = nodes_by_segment.get(owner[part_id])
        calls.append(_call(trace_id, target, caller, part, part, part_id, inferred=True))

    root = next((s for s in segments if str(s.get("parent_id") or "") not in owner), None)
    return TraceView(trace_id, segments, documents, calls, root, owner, nodes_by_segment)


def _segment_by_id(segments: list[dict[str, Any]], seg_id: str) -> dict[str, Any] | None:
    return next((s for s in segments if s["id"] == seg_id), None)


def _continued_below(part: Mapping[str, Any], parents_of_segments: set[str]) -> bool:
    """A remote/aws subsegment whose own child parents a segment (e.g. an SDK retry wrapper) is not a leaf."""
    return any(str(p.get("id")) in parents_of_segments for p in walk(part) if p is not part)


def _call(
    trace_id: str,
    node: NodeId,
    caller: NodeId | None,
    doc: Mapping[str, Any],
    site: Mapping[str, Any],
    doc_id: str,
    *,
    inferred: bool = False,
) -> Call:
    return Call(
        trace_id=trace_id,
        node=node,
        caller=caller,
        start=float(doc["start_time"]),
        end=_end(doc),
        error=_flag(doc, "error"),
        fault=_flag(doc, "fault"),
        throttle=_flag(doc, "throttle"),
        edge_start=float(site["start_time"]),
        edge_end=_end(site),
        edge_error=_flag(site, "error"),
        edge_fault=_flag(site, "fault"),
        edge_throttle=_flag(site, "throttle"),
        doc_id=doc_id,
        inferred=inferred,
    )


# -- statistics ----------------------------------------------------------------------------------------------
@dataclass
class Stats:
    """X-Ray's SummaryStatistics over completed requests, plus the durations for histograms/percentiles."""

    ok: int = 0
    error_other: int = 0
    throttle: int = 0
    fault: int = 0
    durations: list[float] = field(default_factory=list)
    start: float | None = None
    end: float | None = None

    def add(self, start: float, duration: float | None, error: bool, fault: bool, throttle: bool) -> None:
        if duration is None:
            return
        self.durations.append(duration)
        self.start = start if self.start is None else min(self.start, start)
        end = start + duration
        self.end = end if self.end is None else max(self.end, end)
        if fault:
            self.fault += 1
        elif throttle:
            self.throttle += 1
        elif error:
            self.error_other += 1
        else:
            self.ok += 1

    @property
    def total(self) -> int:
        return len(self.durations)

    def summary(self) -> dict[str, Any]:
        return {
            "OkCount": self.ok,
            "ErrorStatistics": {
                "ThrottleCount": self.throttle,
                "OtherCount": self.error_other,
                "TotalCount": self.throttle + self.error_other,
            },
            "FaultStatistics": {"OtherCount": self.fault, "TotalCount": self.fault},
            "TotalCount": self.total,
            "TotalResponseTime": round(sum(self.durations), 6),
        }

    def percentile(self, p: float) -> float | None:
        return percentile(self.durations, p)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def histogram(values: Iterable[float]) -> list[dict[str, Any]]:
    """X-Ray's HistogramEntry list: values (seconds) rounded to the millisecond, with their counts."""
    counts: dict[float, int] = {}
    for v in values:
        key = round(v, 3)
        counts[key] = counts.get(key, 0) + 1
    return [{"Value": v, "Count": c} for v, c in sorted(counts.items())]


@dataclass
class Graph:
    nodes: dict[NodeId, Stats]
    edges: dict[tuple[NodeId, NodeId], Stats]
    roots: set[NodeId]
    traces: dict[NodeId, list[tuple[str, float]]]  # node -> (trace id, that visit's duration)
    account_id: str | None = None


def build_graph(views: Iterable[TraceView]) -> Graph:
    nodes: dict[NodeId, Stats] = {}
    edges: dict[tuple[NodeId, NodeId], Stats] = {}
    roots: set[NodeId] = set()
    traces: dict[NodeId, list[tuple[str, float]]] = {}
    for view in views:
        for call in view.calls:
            nodes.setdefault(call.node, Stats()).add(
                call.start, call.duration, call.error, call.fault, call.throttle
            )
            if call.duration is not None:
                traces.setdefault(call.node, []).append((call.trace_id, call.duration))
            caller = call.caller
            if caller is None:
                roots.add(call.node)
                caller = NodeId(call.node.name, CLIENT_TYPE)
                nodes.setdefault(caller, Stats())
            edges.setdefault((caller, call.node), Stats()).add(
                call.edge_start, call.edge_duration, call.edge_error, call.edge_fault, call.edge_throttle
            )
    return Graph(nodes, edges, roots, traces)


def _node_order(node: NodeId) -> tuple[int, str, str]:
    return (0 if node.type == CLIENT_TYPE else 1, node.name, node.type or "")


def services_document(graph: Graph, *, account_id: str | None = None) -> list[dict[str, Any]]:
    """The ``Services`` list of GetServiceGraph / GetTraceGraph (timestamps as epoch seconds)."""
    order = sorted(graph.nodes, key=_node_order)
    ref = {node: i for i, node in enumerate(order)}
    services: list[dict[str, Any]] = []
    for node in order:
        stats = graph.nodes[node]
        is_client = node.type == CLIENT_TYPE
        out: dict[str, Any] = {
            "ReferenceId": ref[node],
            "Name": node.name,
            "Names": [node.name],
            "Root": node in graph.roots,
            "State": "unknown" if is_client or node.type == "remote" else "active",
        }
        if node.type:
            out["Type"] = node.type
        if account_id and node.type and node.type.startswith("AWS::"):
            out["AccountId"] = account_id
        edge_list = []
        for (src, dst), estats in sorted(graph.edges.items(), key=lambda e: ref[e[0][1]]):
            if src != node:
                continue
            edge: dict[str, Any] = {
                "ReferenceId": ref[dst],
                "SummaryStatistics": estats.summary(),
                "ResponseTimeHistogram": histogram(estats.durations),
                "Aliases": [],
            }
            if estats.start is not None:
                edge["StartTime"], edge["EndTime"] = estats.start, estats.end
            edge_list.append(edge)
        starts = [s.start for (src, _), s in graph.edges.items() if src == node and s.start is not None]
        ends = [s.end for (src, _), s in graph.edges.items() if src == node and s.end is not None]
        if not is_client:
            out["SummaryStatistics"] = stats.summary()
            out["DurationHistogram"] = histogram(stats.durations)
            out["ResponseTimeHistogram"] = histogram(stats.durations)
            if stats.start is not None and stats.end is not None:
                starts.append(stats.start)
                ends.append(stats.end)
        if starts:
            out["StartTime"] = min(starts)
        if ends:
            out["EndTime"] = max(ends)
        out["Edges"] = edge_list
        services.append(out)
    return services
