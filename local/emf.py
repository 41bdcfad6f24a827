"""CloudWatch Embedded Metric Format: a JSON log line with an ``_aws.CloudWatchMetrics`` directive becomes
metric data, as CloudWatch Logs does for Lambda. Powertools Metrics (and any EMF library) writes such lines.

    {"_aws": {"Timestamp": 1700000000000, "CloudWatchMetrics": [{"Namespace": "Shop",
      "Dimensions": [["service", "workflow"]],
      "Metrics": [{"Name": "Paid", "Unit": "Count", "StorageResolution": 60}]}]},
     "service": "api", "workflow": "express", "Paid": [1, 2]}

gives one datum per (directive, dimension set, metric): dimension values and metric values are the root
members of those names; a value is a number or an array of numbers. ``parse_emf`` is pure;
``EmfForwarder`` buffers the data and sends it in PutMetricData batches.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_SIZES = ("Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes")
_BITS = ("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits")
UNITS = frozenset(
    {"Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "Count/Second", "None"}
    | set(_SIZES)
    | set(_BITS)
    | {f"{u}/Second" for u in (*_SIZES, *_BITS)}
)
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
MAX_VALUES = 100  # per metric in one document
PUT_MAX_DATUMS = 1000  # PutMetricData: datums per call
PUT_MAX_VALUES = 150  # PutMetricData: Values per datum


class EmfError(ValueError):
    """A line that claims to be EMF (has ``_aws``) but breaks the specification; CloudWatch drops its
    metrics and keeps the log line."""


@dataclass(frozen=True)
class MetricPoint:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str | None
    storage_resolution: int
    timestamp_ms: int
    values: tuple[float, ...]


def looks_like_emf(line: str) -> bool:
    return line.startswith("{") and '"_aws"' in line


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_emf(line: str) -> list[MetricPoint] | None:
    """The metric data of one log line; None when the line is not an EMF document. Raises EmfError."""
    if not looks_like_emf(line):
        return None
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("_aws"), dict):
        return None
    meta = doc["_aws"]
    timestamp = meta.get("Timestamp")
    if not _number(timestamp):
        raise EmfError("_aws.Timestamp must be a number of milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise EmfError("_aws.CloudWatchMetrics must be an array")
    points: list[MetricPoint] = []
    for directive in directives:
        points.extend(_directive(doc, directive, int(timestamp)))
    return points


def _directive(doc: dict[str, Any], directive: Any, timestamp_ms: int) -> list[MetricPoint]:
    if not isinstance(directive, dict):
        raise EmfError("a CloudWatchMetrics directive must be an object")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
        raise EmfError("Namespace must be a string of 1 to 255 characters")
    dim_sets = directive.get("Dimensions")
    if not isinstance(dim_sets, list) or not all(isinstance(s, list) for s in dim_sets):
        raise EmfError("Dimensions must be an array of arrays of dimension names")
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS_PER_DIRECTIVE:
        raise EmfError(f"Metrics must be an array of at most {MAX_METRICS_PER_DIRECTIVE} metrics")
    resolved_sets: list[tuple[tuple[str, str], ...]] = []
    for dim_set in dim_sets or [[]]:
        if len(dim_set) > MAX_DIMENSIONS_PER_SET:
            raise EmfError(f"a dimension set has more than {MAX_DIMENSIONS_PER_SET} dimensions")
        dims = []
        for key in dim_set:
            value = doc.get(key) if isinstance(key, str) else None
            if not isinstance(value, str):
                raise EmfError(f"dimension {key!r} has no string value in the document")
            dims.append((key, value))
        resolved_sets.append(tuple(dims))
    points = []
    for metric in metrics:
        if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str) or not metric["Name"]:
            raise EmfError("each metric needs a Name")
        name = metric["Name"]
        unit = metric.get("Unit")
        if unit is not None and unit not in UNITS:
            raise EmfError(f"metric {name!r}: unknown Unit {unit!r}")
        resolution = metric.get("StorageResolution", 60)
        if resolution not in (1, 60):
            raise EmfError(f"metric {name!r}: StorageResolution must be 1 or 60")
        raw = doc.get(name)
        values: list[Any] = raw if isinstance(raw, list) else [raw]
        if not values or len(values) > MAX_VALUES or not all(_number(v) for v in values):
            raise EmfError(
                f"metric {name!r}: value must be a number or an array of 1 to {MAX_VALUES} numbers"
            )
        for dim_set_values in resolved_sets:
            points.append(
                MetricPoint(
                    namespace=namespace,
                    name=name,
                    dimensions=dim_set_values,
                    unit=unit,
                    storage_resolution=int(resolution),
                    timestamp_ms=timestamp_ms,
                    values=tuple(float(v) for v in values),
                )
            )
    return points


def metric_data(points: list[MetricPoint]) -> dict[str, list[dict[str, Any]]]:
    """PutMetricData ``MetricData`` by namespace: repeated values become Values + Counts."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        counts = Counter(p.values)
        items = list(counts.items())
        for i in range(0, len(items), PUT_MAX_VALUES):
            chunk = items[i : i + PUT_MAX_VALUES]
            datum: dict[str, Any] = {
                "MetricName": p.name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in p.dimensions],
                "Timestamp": datetime.datetime.fromtimestamp(p.timestamp_ms / 1000, tz=datetime.UTC),
                "Values": [v for v, _ in chunk],
                "Counts": [float(c) for _, c in chunk],
                "StorageResolution": p.storage_resolution,
            }
            if p.unit is not None:
                datum["Unit"] = p.unit
            out.setdefault(p.namespace, []).append(datum)
    return out


class EmfForwarder:
    """Buffers the metric data of EMF lines; ``flush(put)`` sends it in PutMetricData batches (the caller
    owns the way to CloudWatch and the upload thread)."""

    def __init__(self, max_buffered: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._points: list[MetricPoint] = []
        self.max_buffered = max_buffered
        self.sent = 0  # datums accepted by the endpoint
        self.invalid = 0  # EMF documents that broke the specification
        self.dropped = 0
        self._warned: set[str] = set()

    def add_line(self, source: str, line: str) -> bool:
        """True when the line was an EMF document whose metrics are now buffered."""
        try:
            points = parse_emf(line)
        except EmfError as exc:
            self.invalid += 1
            self._warn_once(
                "invalid", "EMF: %s sent an invalid document (%s); its metrics are dropped", source, exc
            )
            return False
        if not points:
            return False
        with self._lock:
            self._points.extend(points)
            overflow = len(self._points) - self.max_buffered
            if overflow > 0:
                del self._points[:overflow]
                self.dropped += overflow
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._points)

    def flush(self, put: Callable[[str, list[dict[str, Any]]], object]) -> None:
        """Send what is buffered: ``put(namespace, metric_data)`` per PutMetricData-sized batch."""
        with self._lock:
            points, self._points = self._points, []
        for namespace, data in metric_data(points).items():
            for i in range(0, len(data), PUT_MAX_DATUMS):
                batch = data[i : i + PUT_MAX_DATUMS]
                try:
                    put(namespace, batch)
                except Exception as exc:
                    self.dropped += len(batch)
                    self._warn_once("send", "EMF: PutMetricData failed: %s", exc)
                else:
                    self.sent += len(batch)

    def _warn_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(msg, *args)
