"""Fires EventBridge Scheduler schedules and Events schedule rules on the runtime clock.

Schedules wait with ``clock.sleep(..., auto=False)``: a schedule is never the reason an auto clock jumps, it
fires only when time has moved for another reason (a test's ``advance``, a Wait state, real time). When the
clock moves past several fire times at once, each one fires once, in order (rate(5 minutes) over 14 minutes
fires twice). ``provision`` creates the schedules in the endpoint so ``aws scheduler list-schedules`` sees
them; this module does the firing.
"""

from __future__ import annotations

import calendar
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError

from local.clock import Clock
from local.model import ScheduleSpec, StackModel
from local.ports import LambdaInvoker, LambdaServiceError
from local.provision import client

log = logging.getLogger(__name__)

_LAST_YEAR = 2199  # AWS cron years run 1970-2199
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


# -- expressions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]


@dataclass(frozen=True)
class _DayOfMonth:
    days: frozenset[int]
    last: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: frozenset[int] = frozenset()  # 15W

    def matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.days or (self.last and day.day == last):
            return True
        if self.last_weekday and day.day == _nearest_weekday(day.year, day.month, last):
            return True
        return any(
            n <= last and day.day == _nearest_weekday(day.year, day.month, n) for n in self.nearest_weekday
        )


@dataclass(frozen=True)
class _DayOfWeek:
    days: frozenset[int]  # 1=SUN .. 7=SAT
    last_of_month: frozenset[int] = frozenset()  # 6L: the last Friday
    nth: frozenset[tuple[int, int]] = frozenset()  # 6#3: the third Friday

    def matches(self, day: date) -> bool:
        weekday = _aws_weekday(day)
        if weekday in self.days:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if weekday in self.last_of_month and day.day + 7 > last:
            return True
        return (weekday, (day.day - 1) // 7 + 1) in self.nth


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: _DayOfMonth | None  # exactly one of the two day fields is "?"
    months: frozenset[int]
    day_of_week: _DayOfWeek | None
    years: frozenset[int]

    def day_matches(self, day: date) -> bool:
        if self.day_of_month is not None:
            return self.day_of_month.matches(day)
        assert self.day_of_week is not None
        return self.day_of_week.matches(day)


@dataclass(frozen=True)
class Rate:
    seconds: int


@dataclass(frozen=True)
class At:
    when: datetime  # naive, in the schedule's time zone


def parse_expression(expression: str) -> Cron | Rate | At:
    """Parses an AWS schedule expression; raises ValueError with the reason for anything AWS would refuse."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if amount <= 0:
            raise ValueError(f"{expression}: the rate must be positive")
        return Rate(amount * _UNIT_SECONDS[unit])
    if text.startswith("at(") and text.endswith(")"):
        try:
            return At(datetime.strptime(text[3:-1].strip(), "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            raise ValueError(f"{expression}: at() takes yyyy-mm-ddThh:mm:ss") from None
    if text.startswith("cron(") and text.endswith(")"):
        return _parse_cron(expression, text[5:-1].split())
    raise ValueError(f"{expression}: not a rate(), cron() or at() expression")


def _parse_cron(expression: str, fields: list[str]) -> Cron:
    if len(fields) != 6:
        raise ValueError(
            f"{expression}: cron() takes 6 fields (minutes hours day-of-month month day-of-week year)"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError(f"{expression}: exactly one of day-of-month and day-of-week must be '?'")
    try:
        return Cron(
            minutes=_values(minute, 0, 59),
            hours=_values(hour, 0, 23),
            day_of_month=None if dom == "?" else _parse_day_of_month(dom),
            months=_values(month, 1, 12, _MONTHS),
            day_of_week=None if dow == "?" else _parse_day_of_week(dow),
            years=_values(year, 1970, _LAST_YEAR),
        )
    except ValueError as error:
        raise ValueError(f"{expression}: {error}") from None


def _values(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """A comma list of *, n, a-b (wrapping, as FRI-MON), with an optional /step (*/5, 0/15, 1-10/2)."""
    out: set[int] = set()
    for token in text.split(","):
        base, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"bad step in {token!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _number(first, low, high, names), _number(last, low, high, names)
        else:
            start = _number(base, low, high, names)
            end = high if step_text else start  # "0/15" means from 0 every 15
        span = end - start if end >= start else end + (high - low + 1) - start
        for offset in range(0, span + 1, step):
            out.add(low + (start - low + offset) % (high - low + 1))
    return frozenset(out)


def _number(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    key = text.upper()
    value = names[key] if names and key in names else int(text) if text.isdigit() else None
    if value is None or not low <= value <= high:
        raise ValueError(f"{text!r} is not in {low}-{high}")
    return value


def _parse_day_of_month(text: str) -> _DayOfMonth:
    days: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    for token in text.upper().split(","):
        if token == "L":
            last = True
        elif token == "LW":
            last_weekday = True
        elif token.endswith("W"):
            nearest.add(_number(token[:-1], 1, 31, None))
        else:
            days |= _values(token, 1, 31)
    return _DayOfMonth(frozenset(days), last, last_weekday, frozenset(nearest))


def _parse_day_of_week(text: str) -> _DayOfWeek:
    days: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for token in text.upper().split(","):
        if token == "L":
            days.add(7)  # "L" alone is the last day of the week: Saturday
        elif token.endswith("L"):
            last_of.add(_number(token[:-1], 1, 7, _DAYS))
        elif "#" in token:
            weekday, _, which = token.partition("#")
            if not which.isdigit() or not 1 <= int(which) <= 5:
                raise ValueError(f"{token!r}: # takes 1-5")
            nth.add((_number(weekday, 1, 7, _DAYS), int(which)))
        else:
            days |= _values(token, 1, 7, _DAYS)
    return _DayOfWeek(frozenset(days), frozenset(last_of), frozenset(nth))


def _aws_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7 + 1  # Monday=0 in Python -> 2 in AWS; Sunday -> 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """nW: the weekday nearest the nth, never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday
        return day + 1 if day < last else day - 2
    return day


def next_fire_times(spec: ScheduleSpec, after: float, count: int) -> list[float]:
    """The next ``count`` fire times strictly after ``after`` (epoch seconds). A rate() schedule counts its
    periods from ``after``. Local times the DST change skips never fire; repeated ones fire once (as AWS)."""
    parsed = parse_expression(spec.expression)
    if isinstance(parsed, Rate):
        return [after + parsed.seconds * k for k in range(1, count + 1)]
    zone = ZoneInfo(spec.timezone or "UTC")
    if isinstance(parsed, At):
        when = _zoned(parsed.when, zone)
        return [when] if when is not None and when > after and count > 0 else []
    return _cron_times(parsed, zone, after, count)


def _cron_times(cron: Cron, zone: ZoneInfo, after: float, count: int) -> list[float]:
    return list(itertools.islice(_cron_iter(cron, zone, after), max(0, count)))


def _cron_iter(cron: Cron, zone: ZoneInfo, after: float) -> Iterator[float]:
    day = datetime.fromtimestamp(after, tz=zone).date()
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    while day.year <= _LAST_YEAR:
        if day.year not in cron.years:
            day = date(day.year + 1, 1, 1)
            continue
        if day.month not in cron.months:
            day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
            continue
        if cron.day_matches(day):
            for hour in hours:
                for minute in minutes:
                    when = _zoned(datetime(day.year, day.month, day.day, hour, minute), zone)
                    if when is not None and when > after:
                        yield when
        day += timedelta(days=1)


def _zoned(naive: datetime, zone: ZoneInfo) -> float | None:
    """Epoch seconds of a local time, or None if the zone skips it (spring forward)."""
    aware = naive.replace(tzinfo=zone)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return aware.timestamp()


# -- firing ---------------------------------------------------------------------------------------------


@dataclass
class Firing:
    schedule: str
    scheduled_time: float
    target_arn: str
    execution_arn: str | None = None  # for state machine targets
    error: str | None = None


class Scheduler:
    def __init__(self, model: StackModel, *, clock: Clock, endpoint_url: str, invoker: LambdaInvoker) -> None:
        self.model = model
        self.clock = clock
        self.endpoint_url = endpoint_url
        self.invoker = invoker
        self.schedules = [s for s in model.schedules.values() if s.enabled]
        for spec in self.schedules:
            parse_expression(spec.expression)  # a bad expression fails at start, not at the first firing
        self.fired: deque[Firing] = deque(maxlen=1000)  # recent firings, for tests and diagnostics
        self._next: dict[str, float | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sfn: Any = None
        self._machine_arns: dict[str, str] = {}

    def start(self) -> Scheduler:
        self._stop.clear()
        self._arm()
        for spec in self.schedules:
            thread = threading.Thread(
                target=self._run, args=(spec,), name=f"schedule-{spec.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def signal_stop(self) -> None:
        """Ask every schedule thread to stop, without waiting (``stop()`` waits)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout  # one bound for all threads, not one each
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in self._threads if t.is_alive()]
        if left:
            log.warning("schedule threads still running after stop: %s", left)
        self._threads = []

    def next_fire_time(self, name: str) -> float | None:
        self._arm()
        with self._lock:
            return self._next.get(name)

    def fire_due(self) -> list[Firing]:
        """Fires every schedule whose next fire time the clock has reached (missed periods coalesced)."""
        self._arm()
        return [firing for spec in self.schedules for firing in self._fire_due(spec)]

    def _arm(self) -> None:
        """Computes each schedule's first fire time, once: rate() periods count from here."""
        now = self.clock.now()
        with self._lock:
            for spec in self.schedules:
                if spec.name not in self._next:
                    self._next[spec.name] = _first(next_fire_times(spec, now, 1))

    def _run(self, spec: ScheduleSpec) -> None:
        while not self._stop.is_set():
            with self._lock:
                when = self._next.get(spec.name)
            if when is None:
                return  # an at() schedule that has fired
            if self.clock.sleep(when - self.clock.now(), auto=False, cancel=self._stop):
                return
            self._fire_due(spec)

    def _fire_due(self, spec: ScheduleSpec) -> list[Firing]:
        """Fires once for the latest fire time the clock has passed. When time jumps over many periods (a
        test advancing 7 days) the missed ones are not replayed: a 5-minute reconciliation would otherwise
        run 2,016 times at once, which no real scheduler does."""
        latest: float | None = None
        now = self.clock.now()
        with self._lock:
            when = self._next.get(spec.name)
            while when is not None and when <= now:
                latest = when
                when = _first(next_fire_times(spec, when, 1))
            self._next[spec.name] = when
        return [] if latest is None else [self._fire(spec, latest)]

    def _fire(self, spec: ScheduleSpec, scheduled: float) -> Firing:
        firing = Firing(spec.name, scheduled, spec.target_arn)
        payload = spec.input if spec.input is not None else self._default_input(spec, scheduled)
        try:
            with self.clock.busy():
                if ":states:" in spec.target_arn:
                    firing.execution_arn = self._start_execution(spec, scheduled, payload)
                else:
                    self.invoker.invoke(spec.target_arn, payload.encode(), invocation_type="Event")
        except (ClientError, BotoCoreError) as error:
            firing.error = str(error)
        except LambdaServiceError as error:
            firing.error = f"{error.error_type}: {error.message}"
        if firing.error:
            log.warning("schedule %s could not start %s: %s", spec.name, spec.target_arn, firing.error)
        with self._lock:
            self.fired.append(firing)
        return firing

    def _default_input(self, spec: ScheduleSpec, scheduled: float) -> str:
        if spec.kind != "events":
            return "{}"
        rule = spec.name.partition("/")[0]
        model = self.model
        return json.dumps(
            {  # what EventBridge sends for a schedule rule target without Input
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": model.account_id,
                "time": datetime.fromtimestamp(scheduled, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": model.region,
                "resources": [f"arn:aws:events:{model.region}:{model.account_id}:rule/{rule}"],
                "detail": {},
            }
        )

    def _start_execution(self, spec: ScheduleSpec, scheduled: float, payload: str) -> str:
        if self._sfn is None:
            self._sfn = client("stepfunctions", self.endpoint_url, self.model.region)
        stamp = datetime.fromtimestamp(scheduled, tz=UTC).strftime("%Y%m%dT%H%M%S")
        base = re.sub(r"[^0-9A-Za-z_-]", "-", spec.name)[:48]
        name = f"{base}-{stamp}-{uuid.uuid4().hex[:8]}"  # moto needs a name (without one it reuses ':None')
        answer = self._sfn.start_execution(
            stateMachineArn=self._machine_arn(spec.target_arn), name=name, input=payload
        )
        return str(answer["executionArn"])

    def _machine_arn(self, target: str) -> str:
        """The endpoint's ARN for the target (its account may differ from the template's)."""
        name = target.split(":")[6] if target.count(":") >= 6 else target
        if name not in self._machine_arns:
            for page in self._sfn.get_paginator("list_state_machines").paginate():
                for machine in page["stateMachines"]:
                    self._machine_arns[machine["name"]] = machine["stateMachineArn"]
        return self._machine_arns.get(name, target)


def _first(times: list[float]) -> float | None:
    return times[0] if times else None
