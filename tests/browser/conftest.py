"""Browser fixtures: Playwright's sync API driving Debian's Chromium (no browser download; `make test`
installs the package through tools/ensure-chromium).

``browser`` is one headless Chromium per test module (Playwright's sync API runs an event loop on the
calling thread while it is open: it is closed before another module's own Playwright session starts);
``page`` is a fresh context (own cookies and storage) and page per test, closed after it. Any browser test
(the ACS page here, end-to-end payments through the whole stack) can take ``page``, or ``browser`` to open
several contexts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Quiet and hermetic: no GPU, no sandbox (containers run as root), no background calls to Google.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run tools/ensure-chromium (make test does) to install Chromium")
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary user-data-dir, deleted on close (Playwright refuses a
        # --user-data-dir argument; a profile of our own would need a persistent context, i.e. one context).
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
