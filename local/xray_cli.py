"""`python -m local traces` and `python -m local xray-map`: trace search and the service map of a running
stack, through its endpoint (the X-Ray API and the /_local/xray/ pages)."""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Debian's chromium (installed by `make test` through tools/ensure-chromium), or $LOCAL_CHROMIUM."""
    wanted = os.environ.get("LOCAL_CHROMIUM", CHROMIUM)
    return wanted if os.path.exists(wanted) else shutil.which("chromium")


def summary_line(summary: dict[str, Any]) -> str:
    flags = [f for f, key in (("FAULT", "HasFault"), ("ERROR", "HasError"), ("THROTTLE", "HasThrottle"))
             if summary.get(key)] or ["ok"]  # fmt: skip
    entry = (summary.get("EntryPoint") or {}).get("Name", "-")
    status = (summary.get("Http") or {}).get("HttpStatus", "-")
    notes = []
    for key, values in sorted((summary.get("Annotations") or {}).items()):
        for value in values:
            notes.append(f"{key}={next(iter(value['AnnotationValue'].values()))}")
    return (
        f"{summary['Id']}  response {summary.get('ResponseTime', 0):.3f}s  duration "
        f"{summary.get('Duration', 0):.3f}s  {','.join(flags):8} {status!s:>4} {entry}  {' '.join(notes)}"
    )


def search(xray: Any, filter_expression: str | None, start: float, end: float) -> list[dict[str, Any]]:
    params: dict[str, Any] = {
        "StartTime": datetime.datetime.fromtimestamp(start, tz=datetime.UTC),
        "EndTime": datetime.datetime.fromtimestamp(end, tz=datetime.UTC),
    }
    if filter_expression:
        params["FilterExpression"] = filter_expression
    found: list[dict[str, Any]] = []
    while True:
        page = xray.get_trace_summaries(**params)
        found.extend(page.get("TraceSummaries", []))
        token = page.get("NextToken")
        if not token:
            return found
        params["NextToken"] = token


def fetch_svg(endpoint_url: str, get: Callable[..., Any] | None = None) -> str:
    import requests

    response = (get or requests.get)(f"{endpoint_url.rstrip('/')}/_local/xray/map.svg", timeout=30)
    response.raise_for_status()
    return str(response.text)


def screenshot_map(endpoint_url: str, out: Path, chromium: str) -> None:
    """The page's map as PNG, rendered by headless Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{endpoint_url.rstrip('/')}/_local/xray/map", wait_until="load", timeout=30_000)
            svg = page.locator("#service-map")
            # The whole map, not the part a default 1280x720 window shows.
            width = int(float(svg.get_attribute("width") or 1280))
            height = int(float(svg.get_attribute("height") or 720))
            page.set_viewport_size({"width": width + 64, "height": height + 64})
            page.add_style_tag(content="#map { overflow: visible; max-width: none; border: 0; }")
            svg.screenshot(path=str(out))
        finally:
            browser.close()
