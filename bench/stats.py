"""Small helpers to turn latency samples into the figures the benchmarks print."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


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
