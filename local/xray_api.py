"""X-Ray API answers moto leaves empty or approximate: GetTraceSummaries (with filter expressions),
GetServiceGraph and GetTraceGraph, computed from segment documents by ``xray_query`` / ``xray_graph``.

``answer(action, params, traces)`` is the whole API surface: ``action`` is the REST path X-Ray uses
(``TraceSummaries``, ``ServiceGraph``, ``TraceGraph``), ``params`` the JSON body, ``traces`` the documents
by trace id. It returns (HTTP status, JSON body) shaped as AWS answers, errors included.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from local.xray_graph import TraceView, analyze_trace, build_graph, services_document
from local.xray_query import FilterError, trace_summaries

ACTIONS = ("TraceSummaries", "ServiceGraph", "TraceGraph")
Traces = Mapping[str, list[dict[str, Any]]]


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message, "Message": self.message}


def _time(params: Mapping[str, Any], name: str) -> float:
    if name not in params or params[name] is None:
        raise ApiError("InvalidRequestException", f"{name} is required")
    value = params[name]
    if isinstance(value, bool):
        raise ApiError("InvalidRequestException", f"{name} is not a timestamp")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError("InvalidRequestException", f"{name} is not a timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _range(params: Mapping[str, Any]) -> tuple[float, float]:
    start, end = _time(params, "StartTime"), _time(params, "EndTime")
    if end < start:
        raise ApiError("InvalidRequestException", "EndTime must not be before StartTime")
    return start, end


def views(traces: Traces, keep: Callable[[str], bool] = lambda _t: True) -> list[TraceView]:
    return [analyze_trace(tid, docs) for tid, docs in traces.items() if docs and keep(tid)]


def _overlaps(view: TraceView, start: float, end: float) -> bool:
    last = view.end if view.end is not None else view.start
    return view.start <= end and last >= start


def answer(
    action: str, params: Mapping[str, Any], traces: Traces, *, account_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    try:
        return 200, _answer(action, params, traces, account_id)
    except ApiError as exc:
        return exc.status, exc.body()


def _answer(action: str, params: Mapping[str, Any], traces: Traces, account_id: str | None) -> dict[str, Any]:
    if action == "TraceSummaries":
        start, end = _range(params)
        range_type = params.get("TimeRangeType") or "TraceId"
        if range_type not in ("TraceId", "Event", "Service"):
            raise ApiError("InvalidRequestException", f"TimeRangeType {range_type!r} is not valid")
        expression = params.get("FilterExpression")
        if expression is not None and not isinstance(expression, str):
            raise ApiError("InvalidRequestException", "FilterExpression must be a string")
        try:
            return trace_summaries(
                views(traces),
                start=start,
                end=end,
                filter_expression=expression,
                time_range_type=range_type,
                account_id=account_id,
            )
        except FilterError as exc:
            raise ApiError("InvalidRequestException", f"Invalid filter expression: {exc}") from exc
    if action == "ServiceGraph":
        start, end = _range(params)
        selected = [v for v in views(traces) if _overlaps(v, start, end)]
        graph = build_graph(selected)
        return {
            "StartTime": start,
            "EndTime": end,
            "Services": services_document(graph, account_id=account_id),
            "ContainsOldGroupVersions": False,
        }
    if action == "TraceGraph":
        ids = params.get("TraceIds")
        if not isinstance(ids, list) or not ids:
            raise ApiError("InvalidRequestException", "TraceIds is required")
        wanted = {str(i) for i in ids}
        graph = build_graph(views(traces, lambda t: t in wanted))
        return {"Services": services_document(graph, account_id=account_id)}
    raise ApiError("InvalidRequestException", f"unknown action {action}")
