"""Small helpers to turn latency samples into the figures the benchmarks print, and to read CPU time."""

from __future__ import annotations

import contextlib
import statistics
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
