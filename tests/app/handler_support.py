"""Shared set-up for handler tests: load a function's app.py, a Lambda context, AWS env under moto."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeContext:
    function_name: str = "payeasy-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:ap-northeast-1:123456789012:function:payeasy-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def load_function(name: str) -> ModuleType:
    """Imports functions/<name>/app.py under a unique module name (every function's module is ``app``).

    The function's directory goes on sys.path, as Lambda's task root does, for its sibling modules."""
    task_root = str(ROOT / "functions" / name)
    if task_root not in sys.path:
        sys.path.append(task_root)
    module_name = f"payeasy_fn_{name}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / f"{name}.json").read_text()))


def aws_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    values = {
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "payeasy",
        "POWERTOOLS_METRICS_NAMESPACE": "PayEasy",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def reset_caches() -> None:
    from aws_lambda_powertools.utilities import parameters
    from payeasy import wiring

    parameters.clear_caches()
    wiring.reset()
