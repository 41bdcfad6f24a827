"""CloudWatchLogsSink against a stock moto server: groups/streams as Lambda names them, clock timestamps,
batching limits, recovery from a deleted group, and the echo."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from local.clock import VirtualClock
from local.cloudwatch_logs import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_EVENT_BYTES,
    CloudWatchLogsSink,
    _truncate,
    _utf8_size,
    batches,
    log_group_name,
)

REGION = "us-east-1"
STREAM_RE = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name in {"cloudwatch-logs"}]
    assert leaked == [], f"threads left running: {leaked}"


@pytest.fixture
def logs(endpoint: str) -> Any:
    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def sinks() -> Iterator[list[CloudWatchLogsSink]]:
    """Sinks with an endpoint start an upload thread on first write: close them all."""
    made: list[CloudWatchLogsSink] = []
    yield made
    for sink in made:
        sink.close()


def make(sinks: list[CloudWatchLogsSink], *args: Any, **kwargs: Any) -> CloudWatchLogsSink:
    kwargs.setdefault("flush_interval", 60)  # tests flush explicitly
    sink = CloudWatchLogsSink(*args, **kwargs)
    sinks.append(sink)
    return sink


def fn_name() -> str:
    return f"fn-{uuid.uuid4().hex[:8]}"  # the moto server is shared by the module: no collisions


def messages(logs: Any, function: str) -> list[tuple[int, str, str]]:
    got = logs.filter_log_events(logGroupName=log_group_name(function))["events"]
    return [(e["timestamp"], e["message"], e["logStreamName"]) for e in got]


class ScriptedClock:
    """A clock whose now() walks through given values: to produce out-of-order timestamps."""

    def __init__(self, values: list[float]) -> None:
        self._values = iter(values)
        self._last = values[0]

    def now(self) -> float:
        self._last = next(self._values, self._last)
        return self._last

    def sleep(self, seconds: float, *, auto: bool = False, cancel: threading.Event | None = None) -> bool:
        raise AssertionError("the sink never sleeps on the clock")

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        raise AssertionError("the sink never waits on the clock")

    @contextmanager
    def busy(self) -> Iterator[None]:
        yield


def test_lines_reach_filter_log_events_with_clock_timestamps(
    endpoint: str, logs: Any, sinks: list[CloudWatchLogsSink]
) -> None:
    start = time.time() - 3600  # inside moto's accepted window, clearly not wall time
    clock = VirtualClock(start=start)
    echo = io.StringIO()
    sink = make(sinks, endpoint, REGION, clock, echo=echo)
    fn = fn_name()
    sink.write(fn, "START RequestId: r1 Version: $LATEST\n")
    clock.advance(1.5)
    sink.write(fn, "charging p-1")
    sink.write(fn, "")  # echoed, not uploaded: CloudWatch refuses empty messages
    sink.flush()

    stream = sink.stream_name(fn)
    assert STREAM_RE.match(stream)
    assert stream.startswith(datetime.fromtimestamp(start, tz=UTC).strftime("%Y/%m/%d/"))
    assert messages(logs, fn) == [
        (int(start * 1000), "START RequestId: r1 Version: $LATEST", stream),
        (int((start + 1.5) * 1000), "charging p-1", stream),
    ]
    assert echo.getvalue() == f"[{fn}] START RequestId: r1 Version: $LATEST\n[{fn}] charging p-1\n[{fn}] \n"
    assert (sink.sent, sink.rejected, sink.dropped) == (2, 0, 0)

    # A second flush appends to the same stream; the filter pattern works on our lines.
    sink.write(fn, "charging p-2")
    sink.flush()
    found = logs.filter_log_events(logGroupName=log_group_name(fn), filterPattern="p-2")["events"]
    assert [e["message"] for e in found] == ["charging p-2"]
    assert len(logs.describe_log_streams(logGroupName=log_group_name(fn))["logStreams"]) == 1


def test_environments_get_their_own_streams(
    endpoint: str, logs: Any, sinks: list[CloudWatchLogsSink]
) -> None:
    sink = make(sinks, endpoint, REGION, VirtualClock(), echo=None)
    fn = fn_name()
    sink.write(fn, "from env a", environment="a")
    sink.write(fn, "from env b", environment="b")
    sink.flush()
    a, b = sink.stream_name(fn, "a"), sink.stream_name(fn, "b")
    assert a != b
    by_stream = {s: m for _, m, s in messages(logs, fn)}
    assert by_stream == {a: "from env a", b: "from env b"}


def test_out_of_order_lines_are_sorted_before_put(
    endpoint: str, logs: Any, sinks: list[CloudWatchLogsSink]
) -> None:
    now = time.time()
    sink = make(sinks, endpoint, REGION, ScriptedClock([now, now - 2, now - 1]), echo=None)
    fn = fn_name()
    for text in ("third", "first", "second"):
        sink.write(fn, text)
    sink.flush()
    assert [m for _, m, _ in messages(logs, fn)] == ["first", "second", "third"]


def test_existing_group_is_reused_and_deleted_group_recreated(
    endpoint: str, logs: Any, sinks: list[CloudWatchLogsSink]
) -> None:
    fn = fn_name()
    logs.create_log_group(logGroupName=log_group_name(fn))  # as provisioning from the template would
    sink = make(sinks, endpoint, REGION, VirtualClock(), echo=None)
    sink.write(fn, "one")
    sink.flush()
    logs.delete_log_group(logGroupName=log_group_name(fn))
    sink.write(fn, "two")
    sink.flush()
    assert [m for _, m, _ in messages(logs, fn)] == ["two"]
    assert sink.sent == 2 and sink.dropped == 0


def test_lines_outside_endpoint_window_are_counted_and_warned(
    endpoint: str, logs: Any, caplog: pytest.LogCaptureFixture, sinks: list[CloudWatchLogsSink]
) -> None:
    clock = VirtualClock(start=time.time() - 20 * 86400)
    sink = make(sinks, endpoint, REGION, clock, echo=None)
    fn = fn_name()
    with caplog.at_level("WARNING", logger="local.cloudwatch_logs"):
        sink.write(fn, "too old")
        sink.flush()
    assert (sink.sent, sink.rejected) == (0, 1)
    assert messages(logs, fn) == []
    assert any("time window" in r.getMessage() for r in caplog.records)


def test_background_thread_uploads(endpoint: str, logs: Any) -> None:
    fn = fn_name()
    with CloudWatchLogsSink(endpoint, REGION, VirtualClock(), echo=None, flush_interval=0.05) as sink:
        sink.write(fn, "async line")
        deadline = time.monotonic() + 10
        while sink.sent < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.sent == 1
        sink.write(fn, "written just before stop")
    assert [m for _, m, _ in messages(logs, fn)] == [
        "async line",
        "written just before stop",
    ]  # stop() flushes


def test_dead_endpoint_drops_without_raising(sinks: list[CloudWatchLogsSink]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    sink = make(sinks, dead, REGION, VirtualClock(), echo=None)
    sink.write("f", "lost")
    sink.flush()
    assert (sink.sent, sink.dropped) == (0, 1)


def test_no_endpoint_only_echoes_and_buffer_is_bounded(
    endpoint: str, sinks: list[CloudWatchLogsSink]
) -> None:
    echo = io.StringIO()
    local_only = CloudWatchLogsSink(None, REGION, VirtualClock(), echo=echo)
    local_only.write("f", "hello\r\n")
    local_only.flush()
    assert echo.getvalue() == "[f] hello\n" and local_only.sent == 0
    assert local_only._thread is None  # nothing to upload, no thread

    clock = VirtualClock()
    bounded = make(sinks, endpoint, REGION, clock, echo=None, max_buffered=2)
    for i in range(3):
        bounded.write("g", f"line {i}")
        clock.advance(1)
    assert bounded.dropped == 1


def test_batches_respect_put_log_events_limits() -> None:
    many = [(i, "x") for i in range(MAX_BATCH_EVENTS + 1)]
    assert [len(b) for b in batches(many)] == [MAX_BATCH_EVENTS, 1]

    big = "y" * MAX_EVENT_BYTES
    per_batch = MAX_BATCH_BYTES // (MAX_EVENT_BYTES + EVENT_OVERHEAD)
    split = batches([(0, big)] * (per_batch + 1))
    assert [len(b) for b in split] == [per_batch, 1]
    for b in split:
        assert sum(len(m) + EVENT_OVERHEAD for _, m in b) <= MAX_BATCH_BYTES

    spread = batches([(0, "a"), (MAX_BATCH_SPAN_MS, "b"), (MAX_BATCH_SPAN_MS + 1, "c")])
    assert [[m for _, m in b] for b in spread] == [["a", "b"], ["c"]]
    assert batches([]) == []


def test_ascii_fast_paths_measure_and_truncate_as_encoding_does() -> None:
    """The write path measures ASCII lines by length and skips encoding them; every line, ASCII or not,
    must be sized and truncated exactly as encoding it to UTF-8 would."""

    def by_encoding(message: str) -> str:  # the stock rule: cut the UTF-8 bytes at the limit
        data = message.encode("utf-8")
        return message if len(data) <= MAX_EVENT_BYTES else data[:MAX_EVENT_BYTES].decode("utf-8", "ignore")

    samples = [
        "",
        "START RequestId: 1 Version: $LATEST",
        '{"level":"INFO","message":"caf\\u00e9"}',
        "café ☕ 𝄞",
        "a" * MAX_EVENT_BYTES,
        "a" * (MAX_EVENT_BYTES + 1),
        "a" * (MAX_EVENT_BYTES - 1) + "é",  # one byte too many only once encoded
        "𝄞" * (MAX_EVENT_BYTES // 4 + 1),
    ]
    for message in samples:
        assert _utf8_size(message) == len(message.encode("utf-8"))
        assert _truncate(message) == by_encoding(message)
    events = [(0, m) for m in samples] * 3
    for batch in batches(events):
        assert sum(len(m.encode("utf-8")) + EVENT_OVERHEAD for _, m in batch) <= MAX_BATCH_BYTES


def test_oversized_line_is_truncated_to_the_event_limit(
    endpoint: str, logs: Any, sinks: list[CloudWatchLogsSink]
) -> None:
    sink = make(sinks, endpoint, REGION, VirtualClock(), echo=None)
    fn = fn_name()
    sink.write(fn, "é" * MAX_EVENT_BYTES)  # 2 bytes each: twice the limit
    sink.flush()
    [(_, message, _)] = messages(logs, fn)
    assert len(message.encode("utf-8")) <= MAX_EVENT_BYTES
    assert message == "é" * (MAX_EVENT_BYTES // 2)


def test_echo_true_goes_to_stderr_and_false_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    CloudWatchLogsSink(None, REGION, VirtualClock(), echo=True).write("pay", "to stderr")
    CloudWatchLogsSink(None, REGION, VirtualClock(), echo=False).write("pay", "nowhere")
    captured = capsys.readouterr()
    assert captured.err == "[pay] to stderr\n" and captured.out == ""
