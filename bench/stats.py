"""Small helpers to turn latency samples into the figures the benchmarks print, and to read CPU time."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Figures:
    label: str
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def figures(label: str, samples: list[float], wall: float) -> Figures:
    ordered = sorted(samples)
    p99_index = min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))
    return Figures(label, len(samples), wall, statistics.median(ordered) * 1000, ordered[p99_index] * 1000)


def table(rows: list[Figures], extra: dict[str, str] | None = None) -> str:
    head = f"{'run':58} {'n':>5} {'exec/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.label:58} {r.count:5d} {r.per_second:8.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}")
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):  # the process or one of its threads may end meanwhile
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far (all its threads; ns resolution): unlike wall time, it does
    not grow when other processes share the machine."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


_ROLES = (
    ("local", "server (local start)"),
    ("simulators.acquirer", "acquirer simulator"),
    ("simulators.merchant_webhooks", "webhook simulator"),
)


def environment(pid: int) -> dict[str, str]:
    """The environment the process started with (``/proc/<pid>/environ``); OSError once it has ended."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def role(pid: int) -> str:
    """What a process of a local stack is: the Lambda function a worker runs (its AWS_LAMBDA_FUNCTION_NAME),
    the server, a simulator, or its command line."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        function = environment(pid).get("AWS_LAMBDA_FUNCTION_NAME")
        if function:
            return "Lambda " + function
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    for needle, name in _ROLES:
        if needle in argv:
            return name
    return " ".join(argv)[:60]


def cpu_by_role(pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds the processes have used so far, summed per ``role``."""
    totals: dict[str, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            name = role(pid)
            totals[name] = totals.get(name, 0.0) + cpu_seconds(pid)
    return totals
