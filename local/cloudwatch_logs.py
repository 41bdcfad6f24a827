"""Function logs into CloudWatch Logs on the local endpoint, as Lambda writes them: log group
``/aws/lambda/<function>``, one stream per execution environment named ``YYYY/MM/DD/[$LATEST]<32 hex>``,
timestamps from the runtime clock. So ``aws logs filter-log-events --endpoint-url ...`` shows a function's
output. Every line is also echoed at once to a local stream (stderr by default), prefixed with the function
name, so ``make run`` shows logs live while the upload is batched in the background.

Lines in Embedded Metric Format (Powertools Metrics) also become CloudWatch metrics on the endpoint
(PutMetricData, ``local.emf``), as CloudWatch does for Lambda logs; the line itself stays in the log."""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

from botocore.exceptions import ClientError

from local import moto_adapter
from local.clock import Clock, utcnow
from local.emf import EmfForwarder, looks_like_emf
from local.uploader import BackgroundUploader

log = logging.getLogger(__name__)

# PutLogEvents limits (AWS): per batch 10,000 events and 1,048,576 bytes counting 26 bytes of overhead per
# event; one event at most 256 KB including that overhead; a batch spans at most 24 hours.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def _utf8_size(message: str) -> int:
    # An ASCII line (nearly every log line: Powertools writes JSON with ensure_ascii) is its own length in
    # bytes; only other lines are encoded to be measured.
    return len(message) if message.isascii() else len(message.encode("utf-8"))


def _truncate(message: str) -> str:
    if message.isascii() and len(message) <= MAX_EVENT_BYTES:
        return message
    data = message.encode("utf-8")
    if len(data) <= MAX_EVENT_BYTES:
        return message
    return data[:MAX_EVENT_BYTES].decode("utf-8", errors="ignore")


def batches(events: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Split (timestamp ms, message) events, already in time order, into PutLogEvents-sized batches."""
    out: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    size = 0
    for ts, msg in events:
        cost = _utf8_size(msg) + EVENT_OVERHEAD
        if current and (
            len(current) >= MAX_BATCH_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or ts - current[0][0] > MAX_BATCH_SPAN_MS
        ):
            out.append(current)
            current, size = [], 0
        current.append((ts, msg))
        size += cost
    if current:
        out.append(current)
    return out


@dataclass
class _Stream:
    group: str
    name: str
    events: list[tuple[int, str]] = field(default_factory=list)
    created: bool = False


class CloudWatchLogsSink(BackgroundUploader):
    """``write(function_name, line)`` is the Lambda pool's ``log_sink`` callback. Lines are buffered and put
    by a background thread (started on first write) or by ``flush()``; ``endpoint_url=None`` only echoes.
    ``close()`` stops the thread after a last flush."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str,
        clock: Clock,
        *,
        echo: TextIO | bool | None = True,
        flush_interval: float = 1.0,
        max_buffered: int = 100_000,
    ) -> None:
        super().__init__(endpoint_url, flush_interval)
        self.region = region
        self.clock = clock
        # True: stderr (what `make run` shows); False/None: no echo; or any text stream.
        self.echo: TextIO | None = sys.stderr if echo is True else None if echo is False else echo
        self.max_buffered = max_buffered
        self._echo_lock = threading.Lock()
        self._streams: dict[tuple[str, str | None], _Stream] = {}
        self._groups: set[str] = set()
        self._buffered = 0
        self._client: Any = None
        self._metrics_client: Any = None
        self.metrics = EmfForwarder(max_buffered)
        self.sent = 0
        self.dropped = 0  # buffer overflow or the endpoint failing
        self.rejected = 0  # events the endpoint refused (outside its -14 days / +2 hours window)
        self._warned: set[str] = set()

    # -- the pool's callback -------------------------------------------------------------------------------
    def write(self, function_name: str, line: str, *, environment: str | None = None) -> None:
        """Record one log line of ``function_name``. ``environment`` (an execution environment id) gives each
        environment its own stream, as Lambda does; without it all lines share one stream per function."""
        line = line.rstrip("\r\n")
        if self.echo is not None:
            with self._echo_lock:
                self.echo.write(f"[{function_name}] {line}\n")
                self.echo.flush()
        if self.endpoint_url is None or not line:  # CloudWatch rejects empty messages
            return
        ts = int(self.clock.now() * 1000)
        if looks_like_emf(line):
            # Uploaded with the next batch (within flush_interval), not at once: most functions write one
            # EMF line per invocation, and a flush per line cost a third of the runtime's CPU under load.
            self.metrics.add_line(function_name, line)
        with self._lock:
            self._start_locked()
            stream = self._stream_locked(function_name, environment)
            stream.events.append((ts, _truncate(line)))
            self._buffered += 1
            if self._buffered > self.max_buffered:
                self._drop_oldest_locked()
            if self._buffered >= MAX_BATCH_EVENTS:
                self._wake.set()

    def stream_name(self, function_name: str, environment: str | None = None) -> str:
        """The stream of this function (environment), named on first use from the clock's date."""
        with self._lock:
            return self._stream_locked(function_name, environment).name

    def _stream_locked(self, function_name: str, environment: str | None) -> _Stream:
        key = (function_name, environment)
        stream = self._streams.get(key)
        if stream is None:
            name = f"{utcnow(self.clock):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
            stream = self._streams[key] = _Stream(log_group_name(function_name), name)
        return stream

    def _drop_oldest_locked(self) -> None:
        oldest = min((s for s in self._streams.values() if s.events), key=lambda s: s.events[0][0])
        oldest.events.pop(0)
        self._buffered -= 1
        self.dropped += 1
        self._warn_once("overflow", "CloudWatch Logs: buffer full, dropping the oldest lines")

    # -- uploading -----------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Upload every line written so far; returns when the endpoint has answered (or failed)."""
        if self.endpoint_url is None:
            return
        with self._send_lock:
            with self._lock:
                work = [(s, s.events) for s in self._streams.values() if s.events]
                for s, _ in work:
                    s.events = []
                self._buffered = 0
            for stream, events in work:
                # Stable sort: lines from concurrent writers may arrive a tick out of order, and
                # PutLogEvents refuses a batch that is not in time order.
                events.sort(key=lambda e: e[0])
                try:
                    self._ensure_stream(stream)
                    for batch in batches(events):
                        self._put(stream, batch)
                except Exception as exc:
                    self.dropped += len(events)
                    self._warn_once(
                        "send", "CloudWatch Logs: could not upload to %s: %s", self.endpoint_url, exc
                    )
            if self.metrics.pending():
                self.metrics.flush(self._put_metric_data)

    def _put_metric_data(self, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        if self.in_process:  # no botocore round trip (it was ~3 % of the endpoint's CPU per payment)
            moto_adapter.put_metric_data(self.region, namespace, metric_data)
        else:
            self._cloudwatch().put_metric_data(Namespace=namespace, MetricData=metric_data)

    def _cloudwatch(self) -> Any:
        if self._metrics_client is None:
            self._metrics_client = self.client("cloudwatch", self.region)
        return self._metrics_client

    def _logs(self) -> Any:
        if self._client is None:
            self._client = self.client("logs", self.region)
        return self._client

    def _ensure_stream(self, stream: _Stream) -> None:
        if stream.created or self.in_process:
            return  # (in process, _put creates what is missing)
        logs = self._logs()
        if stream.group not in self._groups:
            _ignore_exists(lambda: logs.create_log_group(logGroupName=stream.group))
            self._groups.add(stream.group)
        _ignore_exists(lambda: logs.create_log_stream(logGroupName=stream.group, logStreamName=stream.name))
        stream.created = True

    def _put(self, stream: _Stream, batch: list[tuple[int, str]]) -> None:
        events = [{"timestamp": ts, "message": msg} for ts, msg in batch]
        if self.in_process:
            self._count(moto_adapter.put_log_events(self.region, stream.group, stream.name, events), events)
            return
        try:
            answer = self._logs().put_log_events(
                logGroupName=stream.group, logStreamName=stream.name, logEvents=events
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            # The group or stream was deleted behind our back (e.g. `aws logs delete-log-group`): recreate.
            self._groups.discard(stream.group)
            stream.created = False
            self._ensure_stream(stream)
            answer = self._logs().put_log_events(
                logGroupName=stream.group, logStreamName=stream.name, logEvents=events
            )
        self._count(answer, events)

    def _count(self, answer: dict[str, Any], events: list[dict[str, Any]]) -> None:
        rejected = _rejected_count(answer.get("rejectedLogEventsInfo") or {}, len(events))
        self.rejected += rejected
        self.sent += len(events) - rejected
        if rejected:
            self._warn_once(
                "rejected",
                "CloudWatch Logs: %d events refused as outside the endpoint's time window (older than 14 "
                "days or over 2 hours ahead of wall time); expected when the virtual clock has moved far",
                rejected,
            )

    def _warn_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(msg, *args)


def _ignore_exists(call: Any) -> None:
    try:
        call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
            raise


def _rejected_count(info: dict[str, int], total: int) -> int:
    """How many events RejectedLogEventsInfo refuses. End indexes are read as inclusive, as moto reports
    them (AWS documents them as exclusive); the count only feeds a counter and a warning."""
    rejected: set[int] = set()
    for key in ("tooOldLogEventEndIndex", "expiredLogEventEndIndex"):
        if key in info:
            rejected.update(range(min(info[key] + 1, total)))
    if "tooNewLogEventStartIndex" in info:
        rejected.update(range(info["tooNewLogEventStartIndex"], total))
    return len(rejected)
