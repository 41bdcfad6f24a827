"""Fault injection for chaos tests: ``POST /_sim/faults`` with rates per kind, a seed and the operations hit.

Per request of a chosen operation the injector draws two numbers from its seeded generator (always two, so a
seed gives the same sequence of faults whatever they are): the first picks the kind, the second its variant.
- timeout: the answer comes only after the client's timeout (the slow cards' delay); half of them (variant)
  still apply the operation, the others do not — both happen with a real acquirer.
- error: 500 or 503 (variant) without applying anything.
- slow: the correct answer after ``slow_delay_ms`` (below the client's timeout).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from .replies import Reply, error

OPERATIONS = ("tokenize", "authorize", "capture", "void", "refund", "lookup", "3ds")
DEFAULT_OPERATIONS = ("authorize", "capture", "void")
_RATES = ("timeout_rate", "error_rate", "slow_rate")
_KEYS = {*_RATES, "seed", "operations", "slow_delay_ms"}


@dataclass(frozen=True)
class Fault:
    kind: str  # timeout_applied | timeout_lost | error | slow
    status: int = 0  # for error: 500 | 503


def operation_of(method: str, parts: list[str]) -> str | None:
    """The faultable operation a request is (``parts``: the path's segments)."""
    match method, parts:
        case "POST", ["v1", "tokens"]:
            return "tokenize"
        case "POST", ["v1", "authorizations"]:
            return "authorize"
        case "POST", ["v1", "authorizations", _, "capture"]:
            return "capture"
        case "POST", ["v1", "authorizations", _, "void"]:
            return "void"
        case "POST", ["v1", "refunds"]:
            return "refund"
        case "GET", ["v1", "authorizations", *_]:
            return "lookup"
        case "POST", ["v1", "3ds", "authentications"]:
            return "3ds"
    return None


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spec: dict[str, Any] = {}
        self._rng = random.Random(0)
        self._counts: dict[str, int] = {}

    def configure(self, spec: Any) -> Reply:
        """Validate and install ``spec``; ``{}`` turns injection off. A bad spec changes nothing."""
        if not isinstance(spec, dict):
            return error(400, "invalid_faults", "Body must be a JSON object.")
        unknown = sorted(set(spec) - _KEYS)
        if unknown:
            return error(400, "invalid_faults", f"Unknown field {unknown[0]}.", unknown[0])
        for name in _RATES:
            rate = spec.get(name, 0)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                return error(400, "invalid_faults", f"{name} must be a number from 0 to 1.", name)
        if sum(spec.get(name, 0) for name in _RATES) > 1:
            return error(400, "invalid_faults", "The rates add up to more than 1.", "timeout_rate")
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            return error(400, "invalid_faults", "seed must be an integer.", "seed")
        operations = spec.get("operations", list(DEFAULT_OPERATIONS))
        if not isinstance(operations, list) or not all(op in OPERATIONS for op in operations):
            text = f"operations must be a list of {', '.join(OPERATIONS)}."
            return error(400, "invalid_faults", text, "operations")
        slow_delay = spec.get("slow_delay_ms")
        if slow_delay is not None and (type(slow_delay) is not int or slow_delay < 0):
            text = "slow_delay_ms must be a non-negative integer."
            return error(400, "invalid_faults", text, "slow_delay_ms")
        installed = {
            **{name: spec.get(name, 0) for name in _RATES},
            "seed": seed,
            "operations": operations,
            "slow_delay_ms": slow_delay,
        }
        with self._lock:
            self._spec = installed if spec else {}
            self._rng = random.Random(seed)
            self._counts = {}
        return self.current()

    def current(self) -> Reply:
        with self._lock:
            return Reply(200, {"enabled": bool(self._spec), **self._spec, "injected": dict(self._counts)})

    def draw(self, operation: str) -> Fault | None:
        with self._lock:
            spec = self._spec
            if not spec or operation not in spec["operations"]:
                return None
            kind_roll, variant_roll = self._rng.random(), self._rng.random()
            fault = _pick(spec, kind_roll, variant_roll)
            if fault is not None:
                self._counts[fault.kind] = self._counts.get(fault.kind, 0) + 1
            return fault

    def slow_delay_ms(self, slow_ms: int) -> int:
        """The "slow" delay: as configured, else a quarter of the slow cards' delay (below the timeout)."""
        with self._lock:
            configured = self._spec.get("slow_delay_ms")
        return int(configured) if configured is not None else slow_ms // 4


def _pick(spec: dict[str, Any], kind_roll: float, variant_roll: float) -> Fault | None:
    timeout, err, slow = (float(spec[name]) for name in _RATES)
    if kind_roll < timeout:
        return Fault("timeout_applied" if variant_roll < 0.5 else "timeout_lost")
    if kind_roll < timeout + err:
        return Fault("error", 500 if variant_roll < 0.5 else 503)
    if kind_roll < timeout + err + slow:
        return Fault("slow")
    return None
