"""X-Ray plumbing for the local runtime: trace ids and headers, the reference segment documents the runtime
emits on behalf of AWS services, a UDP daemon that collects what handlers' X-Ray SDKs send, and a store that
keeps segments in memory and forwards them to the local endpoint's X-Ray API.

How the pieces connect (one trace per request)::

    API stage segment (AWS::ApiGateway::Stage)
      └ "Lambda" invoke subsegment            <- lambda_invoke_subsegment, parent of the next segment
          └ Lambda service segment (AWS::Lambda)
              └ function segment (AWS::Lambda::Function)  <- _X_AMZN_TRACE_ID=Root=..;Parent=<its id>
                  └ handler subsegments sent by aws-xray-sdk / Powertools over UDP to XRayDaemon

A state machine execution segment (AWS::StepFunctions::StateMachine) holds one task subsegment per Task state;
a Lambda task nests a "Lambda" invoke subsegment that parents the Lambda service segment the same way.

Error flags follow X-Ray's rules: 4xx -> ``error``, 429 -> ``error`` + ``throttle``, 5xx -> ``fault``.
A flag is written only when true (moto's GetTraceSummaries counts a present ``"error": false`` as an error).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from local import moto_adapter
from local.uploader import BackgroundUploader

log = logging.getLogger(__name__)

_TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
_SEGMENT_ID = re.compile(r"^[0-9a-f]{16}$")


# -- ids and headers ---------------------------------------------------------------------------------------
def new_trace_id(now: float) -> str:
    """``1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`` as X-Ray requires; ``now`` is the clock's."""
    return f"1-{int(now) & 0xFFFFFFFF:08x}-{int.from_bytes(os.urandom(12), 'big'):024x}"


def new_segment_id() -> str:
    return os.urandom(8).hex()


def is_trace_id(value: str | None) -> bool:
    return bool(value) and _TRACE_ID.match(value or "") is not None


@dataclass(frozen=True)
class TraceHeader:
    """``X-Amzn-Trace-Id`` / ``_X_AMZN_TRACE_ID``. ``sampled`` is None when undecided (``Sampled=?``
    or absent). Fields X-Ray does not define (``Self=`` from a load balancer, custom key=value data) are
    kept in order."""

    root: str | None = None
    parent: str | None = None
    sampled: bool | None = None
    lineage: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_header(self) -> str:
        parts: list[str] = []
        if self.root:
            parts.append(f"Root={self.root}")
        if self.parent:
            parts.append(f"Parent={self.parent}")
        if self.sampled is not None:
            parts.append(f"Sampled={1 if self.sampled else 0}")
        if self.lineage:
            parts.append(f"Lineage={self.lineage}")
        parts.extend(f"{k}={v}" for k, v in self.extra)
        return ";".join(parts)

    def with_parent(self, parent_id: str) -> TraceHeader:
        """The header a downstream call carries: same trace, the caller's (sub)segment as parent."""
        return replace(self, parent=parent_id)


_KNOWN = {"root": "root", "parent": "parent", "sampled": "sampled", "lineage": "lineage"}


def parse_trace_header(header: str) -> TraceHeader:
    """Parse leniently as AWS does: keys in any case, spaces around ``;`` and ``=``, unknown parts kept,
    parts without ``=`` ignored. Never raises; check ``root`` (or use ``ensure_trace``) for validity."""
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        known = _KNOWN.get(key.lower())
        if known is None:
            extra.append((key, value))
        elif known not in values:  # first occurrence wins
            values[known] = value
    sampled_raw = values.get("sampled")
    sampled = {"1": True, "0": False}.get(sampled_raw or "")
    return TraceHeader(
        root=values.get("root") or None,
        parent=values.get("parent") or None,
        sampled=sampled,
        lineage=values.get("lineage") or None,
        extra=tuple(extra),
    )


def ensure_trace(header: str | None, now: float) -> TraceHeader:
    """What an AWS entry point (API Gateway, StartExecution) does with an incoming header: keep a valid Root
    (and its sampling decision), otherwise start a new trace. Undecided sampling becomes sampled: the local
    runtime records every request, as a 100% sampling rule would."""
    parsed = parse_trace_header(header or "")
    if not is_trace_id(parsed.root):
        parsed = replace(parsed, root=new_trace_id(now), parent=None)
    if parsed.sampled is None:
        parsed = replace(parsed, sampled=True)
    return parsed


# -- segment documents -------------------------------------------------------------------------------------
def status_flags(status: int | None) -> dict[str, bool]:
    """X-Ray's error/throttle/fault flags for an HTTP status, only the true ones."""
    if status is None:
        return {}
    if status == 429:
        return {"error": True, "throttle": True}
    if 400 <= status < 500:
        return {"error": True}
    if status >= 500:
        return {"fault": True}
    return {}


def cause(error_type: str, message: str, *, working_directory: str | None = None) -> dict[str, Any]:
    """The ``cause`` object X-Ray shows for an exception."""
    doc: dict[str, Any] = {"exceptions": [{"id": new_segment_id(), "type": error_type, "message": message}]}
    if working_directory:
        doc["working_directory"] = working_directory
    return doc


def _base(
    name: str, segment_id: str | None, start: float, end: float | None, subsegments: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": segment_id or new_segment_id(), "name": name, "start_time": start}
    if end is None:
        doc["in_progress"] = True
    else:
        doc["end_time"] = end
    subs = list(subsegments)
    if subs:
        doc["subsegments"] = subs
    return doc


def _top(doc: dict[str, Any], trace_id: str, parent_id: str | None, origin: str) -> dict[str, Any]:
    doc["trace_id"] = trace_id
    if parent_id:
        doc["parent_id"] = parent_id
    doc["origin"] = origin
    return doc


def api_stage_segment(
    *,
    trace_id: str,
    api_name: str,
    rest_api_id: str,
    stage: str,
    region: str,
    account_id: str,
    request_id: str,
    method: str,
    url: str,
    status: int | None,
    start: float,
    end: float | None,
    client_ip: str | None = None,
    user_agent: str | None = None,
    content_length: int | None = None,
    parent_id: str | None = None,
    segment_id: str | None = None,
    subsegments: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The segment API Gateway (REST) writes per request: named ``<api name>/<stage>``; ``status`` is what the
    client got (a Lambda error surfacing as 502 makes it a fault)."""
    doc = _base(f"{api_name}/{stage}", segment_id, start, end, subsegments)
    request: dict[str, Any] = {"url": url, "method": method}
    if client_ip:
        request["client_ip"] = client_ip
    if user_agent:
        request["user_agent"] = user_agent
    http: dict[str, Any] = {"request": request}
    if status is not None:
        response: dict[str, Any] = {"status": status}
        if content_length is not None:
            response["content_length"] = content_length
        http["response"] = response
    doc["http"] = http
    doc["aws"] = {
        "api_gateway": {
            "account_id": account_id,
            "rest_api_id": rest_api_id,
            "stage": stage,
            "request_id": request_id,
        }
    }
    doc["annotations"] = {"aws:api_id": rest_api_id, "aws:api_stage": stage}
    doc.update(status_flags(status))
    doc["resource_arn"] = f"arn:aws:apigateway:{region}::/restapis/{rest_api_id}/stages/{stage}"
    return _top(doc, trace_id, parent_id, "AWS::ApiGateway::Stage")


def lambda_invoke_subsegment(
    *,
    function_name: str,
    function_arn: str,
    region: str,
    start: float,
    end: float | None,
    status: int | None = 200,
    function_error: bool = False,
    segment_id: str | None = None,
) -> dict[str, Any]:
    """The ``Lambda`` (namespace aws) subsegment a caller (API Gateway, Step Functions) records around Invoke.
    Its id is the ``parent_id`` of the Lambda service segment. ``function_error`` (HTTP 200 with
    X-Amz-Function-Error) marks it an error, as the SDKs do."""
    doc = _base("Lambda", segment_id, start, end, ())
    doc["namespace"] = "aws"
    http: dict[str, Any] = {
        "request": {
            "url": f"https://lambda.{region}.amazonaws.com/2015-03-31/functions/{function_arn}/invocations",
            "method": "POST",
        }
    }
    if status is not None:
        http["response"] = {"status": status}
    doc["http"] = http
    doc["aws"] = {
        "function_name": function_name,
        "region": region,
        "operation": "Invoke",
        "resource_names": [function_name],
    }
    doc.update(status_flags(status))
    if function_error and status is not None and status < 400:
        doc["error"] = True
    return doc


def lambda_service_segment(
    *,
    trace_id: str,
    parent_id: str | None,
    function_name: str,
    function_arn: str,
    request_id: str,
    start: float,
    end: float | None,
    status: int | None = 200,
    segment_id: str | None = None,
    subsegments: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The Lambda *service* segment: from request received to response sent. ``status`` is the Invoke API's
    (200 even for a function error, 429 when throttled, 202 for an async invoke)."""
    doc = _base(function_name, segment_id, start, end, subsegments)
    if status is not None:
        doc["http"] = {"response": {"status": status}}
    doc["aws"] = {"request_id": request_id}
    doc.update(status_flags(status))
    doc["resource_arn"] = function_arn
    return _top(doc, trace_id, parent_id, "AWS::Lambda")


def lambda_function_segment(
    *,
    trace_id: str,
    parent_id: str,
    function_name: str,
    function_arn: str,
    account_id: str,
    start: float,
    end: float | None,
    init: tuple[float, float] | None = None,
    invocation: tuple[float, float] | None = None,
    error: tuple[str, str] | None = None,
    segment_id: str | None = None,
) -> dict[str, Any]:
    """The function segment (the environment's work). ``init`` = cold-start import span, ``invocation`` = the
    handler's span; both become subsegments named as Lambda names them. ``error`` = (errorType, errorMessage)
    of an unhandled error (timeouts included): a fault with its cause. Pass this segment's id as ``Parent=``
    in the worker's ``_X_AMZN_TRACE_ID`` so the handler's own subsegments hang under it."""
    subs = []
    resource = {"function_arn": function_arn, "resource_names": [function_name]}
    if init is not None:
        subs.append({**_base("Initialization", None, init[0], init[1], ()), "aws": dict(resource)})
    if invocation is not None:
        subs.append({**_base("Invocation", None, invocation[0], invocation[1], ()), "aws": dict(resource)})
    doc = _base(function_name, segment_id, start, end, subs)
    doc["aws"] = {"account_id": account_id, **resource}
    if error is not None:
        doc["fault"] = True
        doc["cause"] = cause(error[0], error[1], working_directory="/var/task")
    doc["resource_arn"] = function_arn
    return _top(doc, trace_id, parent_id, "AWS::Lambda::Function")


def state_machine_segment(
    *,
    trace_id: str,
    name: str,
    state_machine_arn: str,
    execution_arn: str,
    start: float,
    end: float | None,
    failed: bool = False,
    parent_id: str | None = None,
    segment_id: str | None = None,
    subsegments: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """One execution (named after the state machine). A failed, timed-out or aborted execution is an
    error, as the X-Ray console shows it."""
    doc = _base(name, segment_id, start, end, subsegments)
    doc["aws"] = {"execution_arn": execution_arn, "state_machine_arn": state_machine_arn}
    if failed:
        doc["error"] = True
    doc["resource_arn"] = state_machine_arn
    return _top(doc, trace_id, parent_id, "AWS::StepFunctions::StateMachine")


def task_subsegment(
    *,
    state_name: str,
    start: float,
    end: float | None,
    resource: str | None = None,
    error: tuple[str, str] | None = None,
    segment_id: str | None = None,
    subsegments: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """One Task state attempt inside the execution segment, named after the state. ``error`` =
    (ASL error name, cause) when the attempt failed (States.Timeout, Lambda.TooManyRequestsException, ...)."""
    doc = _base(state_name, segment_id, start, end, subsegments)
    if resource:
        doc["aws"] = {"resource": resource}
    if error is not None:
        doc["error"] = True
        if error[0] in {"Lambda.TooManyRequestsException", "ThrottlingException"}:
            doc["throttle"] = True
        doc["cause"] = cause(error[0], error[1])
    return doc


# -- validation --------------------------------------------------------------------------------------------
def segment_problem(doc: Any) -> str | None:
    """Why X-Ray would reject this top-level document, or None. An independent subsegment (``"type":
    "subsegment"``) must also name its ``parent_id``."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    for key in ("id", "name", "trace_id", "start_time"):
        if key not in doc:
            return f"missing {key}"
    if not isinstance(doc["id"], str) or not _SEGMENT_ID.match(doc["id"]):
        return "id is not 16 hex digits"
    if not is_trace_id(doc["trace_id"]):
        return "bad trace_id"
    if not isinstance(doc["start_time"], int | float) or isinstance(doc["start_time"], bool):
        return "start_time is not a number"
    if "end_time" not in doc and doc.get("in_progress") is not True:
        return "missing end_time or in_progress"
    if doc.get("type") == "subsegment" and not doc.get("parent_id"):
        return "subsegment without parent_id"
    return None


# -- store + forwarder -------------------------------------------------------------------------------------
# What json.dumps(doc, separators=(",", ":"), default=str) builds on every call, built once.
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)


class SegmentStore(BackgroundUploader):
    """A ``SegmentSink``: keeps the last ``max_segments`` documents in memory, indexed by trace id, and
    forwards them to the X-Ray API of ``endpoint_url`` in batches (PutTraceSegments), from a background thread
    started on first emit (``close()`` stops it after a last flush) or synchronously with ``flush()``.
    A document re-sent with the same (trace id, id), e.g. an in-progress segment later completed, replaces
    the earlier one as X-Ray does; if both are still waiting to be forwarded only the latest is sent (moto
    would keep both)."""

    BATCH_SIZE = 50  # what the X-Ray daemon sends per PutTraceSegments call

    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        region: str = "us-east-1",
        max_segments: int = 100_000,
        flush_interval: float = 1.0,
    ) -> None:
        if max_segments < 1:
            raise ValueError("max_segments must be >= 1")
        super().__init__(endpoint_url, flush_interval)
        self.region = region
        self.max_segments = max_segments
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._traces: dict[str, dict[str, str | dict[str, Any]]] = {}  # JSON text until first read
        self._pending: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._client: Any = None
        self.forwarded = 0
        self.rejected = 0  # documents the endpoint answered as UnprocessedTraceSegments
        self.failed = 0  # documents lost because the endpoint call itself failed
        self._warned: set[str] = set()

    # -- SegmentSink ---------------------------------------------------------------------------------------
    def emit(self, segment: dict[str, Any]) -> None:
        problem = segment_problem(segment)
        if problem:
            raise ValueError(f"invalid X-Ray segment: {problem}")
        # Snapshot now (the caller may go on mutating its dict) as the text that is forwarded; it is parsed
        # only when read: most documents are never read here (a json.loads per emit was ~1 % of a payment).
        self._store(segment["trace_id"], segment["id"], _COMPACT.encode(segment))

    def _store(self, trace_id: str, seg_id: str, doc: str) -> None:
        key = (trace_id, seg_id)
        with self._lock:
            self._order[key] = None
            self._order.move_to_end(key)
            self._traces.setdefault(trace_id, {})[seg_id] = doc
            while len(self._order) > self.max_segments:
                old_trace, old_id = self._order.popitem(last=False)[0]
                segs = self._traces.get(old_trace)
                if segs is not None:
                    segs.pop(old_id, None)
                    if not segs:
                        del self._traces[old_trace]
            if self.endpoint_url is not None:
                self._start_locked()
                self._pending[key] = doc
                self._pending.move_to_end(key)
                if len(self._pending) >= self.BATCH_SIZE:
                    self._wake.set()

    # -- reading -------------------------------------------------------------------------------------------
    def _parsed(self, trace_id: str, docs: dict[str, str | dict[str, Any]]) -> list[dict[str, Any]]:
        """The documents of one trace as dicts. Parsed outside the lock (a map page reads every trace) and
        kept parsed, unless the document was replaced meanwhile."""
        out: list[dict[str, Any]] = []
        for seg_id, doc in docs.items():
            if isinstance(doc, str):
                parsed: dict[str, Any] = json.loads(doc)
                with self._lock:
                    segs = self._traces.get(trace_id)
                    if segs is not None and segs.get(seg_id) is doc:
                        segs[seg_id] = parsed
                out.append(parsed)
            else:
                out.append(doc)
        return out

    def get_trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The trace's documents, earliest start first."""
        with self._lock:
            docs = dict(self._traces.get(trace_id, {}))
        return sorted(self._parsed(trace_id, docs), key=lambda s: s.get("start_time", 0))

    def trace_ids(self) -> list[str]:
        with self._lock:
            return list(self._traces)

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        """Every trace's documents (a snapshot; the X-Ray queries and the service map read this)."""
        with self._lock:
            snapshot = {trace_id: dict(segs) for trace_id, segs in self._traces.items()}
        return {trace_id: self._parsed(trace_id, docs) for trace_id, docs in snapshot.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._order)

    # -- forwarding ----------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send everything emitted so far; returns when it has been answered (or failed)."""
        if self.endpoint_url is None:
            return
        with self._send_lock:
            while True:
                with self._lock:
                    batch = [
                        self._pending.popitem(last=False)[1]
                        for _ in range(min(self.BATCH_SIZE, len(self._pending)))
                    ]
                if not batch:
                    return
                self._send(batch)

    def _send(self, batch: list[str]) -> None:
        try:
            if self.in_process:  # no botocore round trip
                answer = moto_adapter.put_trace_segments(self.region, batch)
            else:
                if self._client is None:
                    self._client = self.client("xray", self.region)
                answer = self._client.put_trace_segments(TraceSegmentDocuments=batch)
        except Exception as exc:
            self.failed += len(batch)
            self._warn_once(
                "send", "X-Ray: could not forward %d segments to %s: %s", len(batch), self.endpoint_url, exc
            )
            return
        unprocessed = answer.get("UnprocessedTraceSegments") or []
        self.rejected += len(unprocessed)
        self.forwarded += len(batch) - len(unprocessed)
        if unprocessed:
            self._warn_once("rejected", "X-Ray endpoint rejected segments: %s", unprocessed[:3])

    def _warn_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(msg, *args)


# -- UDP daemon --------------------------------------------------------------------------------------------
_MAX_DATAGRAM = 65535
# The protocol header as the SDKs write it (aws-xray-sdk: compact), parsed once: what json.loads makes of it.
_HEADERS: dict[str, dict[str, Any]] = {
    '{"format":"json","version":1}': {"format": "json", "version": 1},
    '{"format": "json", "version": 1}': {"format": "json", "version": 1},
}


@dataclass
class DaemonStats:
    received: int = 0
    accepted: int = 0
    malformed: int = 0


def parse_datagram(data: bytes) -> dict[str, Any]:
    """Decode one daemon-protocol datagram (``{"format": "json", "version": 1}\\n{document}``); raises
    ValueError saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8") from exc
    head, sep, body = text.partition("\n")
    if not sep:
        raise ValueError("no protocol header line")
    try:
        header = _HEADERS.get(head) or json.loads(head)
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad JSON: {exc}") from exc
    if not isinstance(header, Mapping) or header.get("format") != "json" or header.get("version") != 1:
        raise ValueError(f"unsupported protocol header {head[:80]!r}")
    problem = segment_problem(doc)
    if problem:
        raise ValueError(problem)
    return doc


class XRayDaemon:
    """The X-Ray daemon's UDP side: every valid segment or independent subsegment goes to ``sink.emit``.
    Bad datagrams are counted in ``stats.malformed`` and logged once; they never stop the daemon."""

    def __init__(self, sink: Any, host: str = "127.0.0.1", port: int = 2000) -> None:
        self.sink = sink
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.stats = DaemonStats()
        self._warned = False

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("daemon not started")
        return int(self._sock.getsockname()[1])

    @property
    def address(self) -> str:
        """The value for ``AWS_XRAY_DAEMON_ADDRESS``."""
        return f"{self.host}:{self.port}"

    def start(self) -> XRayDaemon:
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # bursts of subsegments
        sock.settimeout(0.2)  # lets stop() end the loop without relying on close() waking recvfrom
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, args=(sock,), name="xray-daemon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> XRayDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                data, _addr = sock.recvfrom(_MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return  # socket closed under us
            self.handle(data)

    def handle(self, data: bytes) -> bool:
        """Process one datagram; True if it was accepted."""
        self.stats.received += 1
        try:
            doc = parse_datagram(data)
            self.sink.emit(doc)
        except Exception as exc:
            self.stats.malformed += 1
            if not self._warned:
                self._warned = True
                log.warning("X-Ray daemon: dropped a malformed datagram (%s); others only counted", exc)
            return False
        self.stats.accepted += 1
        return True
