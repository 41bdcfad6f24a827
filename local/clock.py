"""One clock for the whole local runtime: Wait states, retry backoff, timeouts, heartbeats, schedules and
history timestamps all read and wait on it.

Three ways to run it:
- ``RealClock(scale=1.0)``: wall time (``make run``); ``scale=60`` makes one real second a virtual minute.
- ``VirtualClock(auto=False)``: time moves only when a test calls ``advance()`` / ``advance_to_next()``;
  a heartbeat timeout fires exactly when the test says so.
- ``VirtualClock(auto=True)``: additionally, whenever the runtime is idle (nothing marked busy for a few
  milliseconds) and someone is in an *auto* sleep (a Wait state or a retry backoff), time jumps to the
  earliest such deadline, so a 7-day Wait costs milliseconds. Timeouts, heartbeats and schedules are
  never the reason for a jump: they fire only when time has passed for another reason.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

_POLL = 0.005  # real seconds between checks of an external event while waiting on virtual time


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, virtual."""
        ...

    def sleep(self, seconds: float, *, auto: bool = False, cancel: threading.Event | None = None) -> bool:
        """Wait ``seconds`` of clock time. Returns True if ``cancel`` was set first."""
        ...

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        """Like ``event.wait(timeout)`` with the timeout measured on this clock."""
        ...

    def busy(self) -> AbstractContextManager[None]:
        """Mark work in progress (an invocation, a request): an auto clock does not jump meanwhile."""
        ...

    def waiting(self) -> AbstractContextManager[None]:
        """Inside a ``busy()`` block: this work is blocked on the runtime itself (a Lambda waiting for its
        StartSyncExecution), so it must not hold time still for what it waits on."""
        ...


def utcnow(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), tz=UTC)


class RealClock:
    """Wall-clock time, optionally scaled (scale=10: ten virtual seconds per real second)."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("clock scale must be > 0")
        self.scale = scale
        self._t0 = time.time()
        self._m0 = time.monotonic()

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.scale

    def sleep(self, seconds: float, *, auto: bool = False, cancel: threading.Event | None = None) -> bool:
        real = max(0.0, seconds) / self.scale
        if cancel is None:
            time.sleep(real)
            return False
        return cancel.wait(real)

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(None if timeout is None else max(0.0, timeout) / self.scale)

    @contextmanager
    def busy(self) -> Iterator[None]:
        yield

    @contextmanager
    def waiting(self) -> Iterator[None]:
        yield


@dataclass(order=True)
class _Timer:
    deadline: float
    seq: int
    auto: bool = field(compare=False)
    wake: threading.Event = field(compare=False, default_factory=threading.Event)
    done: bool = field(compare=False, default=False)


class VirtualClock:
    """Virtual time that tests move explicitly (and, with ``auto=True``, by itself when idle)."""

    def __init__(self, start: float | None = None, *, auto: bool = False, idle_seconds: float = 0.02) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Condition()
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._busy = 0
        self._local = threading.local()
        self._last_activity = time.monotonic()
        self.auto = auto
        self._idle = idle_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if auto:
            self._thread = threading.Thread(target=self._auto_loop, name="virtual-clock", daemon=True)
            self._thread.start()

    # -- reading -------------------------------------------------------------------------------------
    def now(self) -> float:
        with self._lock:
            return self._now

    def pending(self) -> list[tuple[float, bool]]:
        """(deadline, auto) of every live timer, earliest first."""
        with self._lock:
            return sorted((t.deadline, t.auto) for t in self._timers if not t.done)

    # -- moving --------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock does not run backwards")
        with self._lock:
            self._set_now(self._now + seconds)

    def advance_to(self, when: float) -> None:
        with self._lock:
            if when > self._now:
                self._set_now(when)

    def advance_to_next(self) -> bool:
        """Jump to the earliest pending timer. Returns False if there is none."""
        with self._lock:
            live = [t for t in self._timers if not t.done]
            if not live:
                return False
            self._set_now(max(self._now, min(t.deadline for t in live)))
            return True

    def _set_now(self, value: float) -> None:  # caller holds the lock
        self._now = value
        self._last_activity = time.monotonic()
        while self._timers and self._timers[0].deadline <= value:
            timer = heapq.heappop(self._timers)
            timer.done = True
            timer.wake.set()
        self._timers = [t for t in self._timers if not t.done]
        heapq.heapify(self._timers)
        self._lock.notify_all()

    # -- waiting -------------------------------------------------------------------------------------
    def _register(self, seconds: float, auto: bool) -> _Timer:
        with self._lock:
            timer = _Timer(self._now + max(0.0, seconds), next(self._seq), auto)
            if timer.deadline <= self._now:
                timer.done = True
                timer.wake.set()
            else:
                heapq.heappush(self._timers, timer)
            self._last_activity = time.monotonic()
            self._lock.notify_all()
            return timer

    def _cancel(self, timer: _Timer) -> None:
        with self._lock:
            if not timer.done:
                timer.done = True
                self._timers = [t for t in self._timers if t is not timer]
                heapq.heapify(self._timers)
            self._last_activity = time.monotonic()

    def sleep(self, seconds: float, *, auto: bool = False, cancel: threading.Event | None = None) -> bool:
        timer = self._register(seconds, auto)
        try:
            if cancel is None:
                timer.wake.wait()
                return False
            while not timer.wake.wait(_POLL):
                if cancel.is_set():
                    return True
            return False
        finally:
            self._cancel(timer)

    def sleep_until(self, when: float, *, auto: bool = False, cancel: threading.Event | None = None) -> bool:
        return self.sleep(when - self.now(), auto=auto, cancel=cancel)

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        if timeout is None:
            return event.wait()
        timer = self._register(timeout, auto=False)
        try:
            while True:
                if event.wait(_POLL):
                    return True
                if timer.wake.is_set():
                    return event.is_set()
        finally:
            self._cancel(timer)

    @contextmanager
    def busy(self) -> Iterator[None]:
        # Re-entrant per thread: a caller that marks its work busy and then invokes a function (which marks
        # itself busy too) is one piece of work, and one ``waiting()`` must be able to lend it.
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth == 0:
            with self._lock:
                self._busy += 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._lock:
                    self._busy -= 1
                    self._last_activity = time.monotonic()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            lent = self._busy > 0
            if lent:
                self._busy -= 1
            self._last_activity = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                if lent:
                    self._busy += 1
                self._last_activity = time.monotonic()

    # -- auto mode -----------------------------------------------------------------------------------
    def _auto_loop(self) -> None:
        while not self._stop.wait(self._idle / 2):
            with self._lock:
                idle_for = time.monotonic() - self._last_activity
                autos = [t.deadline for t in self._timers if t.auto and not t.done]
                if self._busy == 0 and autos and idle_for >= self._idle:
                    self._set_now(max(self._now, min(autos)))

    def close(self) -> None:
        self._stop.set()
