"""Puts the payeasy layer and the repository root on sys.path, and provides the acquirer simulator."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for entry in (ROOT / "layers" / "payeasy", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from simulators.acquirer.core import Acquirer  # noqa: E402
from simulators.acquirer.server import AcquirerServer  # noqa: E402

ACQUIRER_KEY = "sk_test_acquirer_tests"


@pytest.fixture
def acquirer_server() -> Iterator[AcquirerServer]:
    """A fresh simulator on a free port; slow cards answer after 400 ms (clients time out at 0.2 s)."""
    server = AcquirerServer(Acquirer(api_keys={ACQUIRER_KEY}, slow_ms=400), port=0).start()
    try:
        yield server
    finally:
        server.stop()
