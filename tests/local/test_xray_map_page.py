"""The service-map page: its data (counts, p50/p99, slowest traces), the SVG, the WSGI routes, the page in
headless Chromium (click a node → its slowest traces → a trace's JSON), and `python -m local xray-map`."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests

from local import cli
from local.xray_cli import CHROMIUM_ARGS, chromium_path
from local.xray_map import map_data, render_page, render_svg, serve
from tests.local.xray_docs import payment_trace

BASE = 1_800_000_000.0


@pytest.fixture(scope="module")
def traces() -> dict[str, list[dict[str, Any]]]:
    made = [payment_trace(payment_id=f"pay_{i}", base=BASE + i, acquirer_s=0.01 * (i + 1)) for i in range(12)]
    made.append(payment_trace(payment_id="pay_bad", base=BASE + 50, acquirer_s=0.5, acquirer_status=503))
    return dict(made)


def node(data: dict[str, Any], name: str, type_: str | None) -> dict[str, Any]:
    return next(n for n in data["nodes"] if n["name"] == name and n["type"] == type_)


def test_map_data_counts_percentiles_and_slowest(traces: dict[str, list[dict[str, Any]]]) -> None:
    data = map_data(traces)
    acquirer = node(data, "acquirer.example", "remote")
    assert (acquirer["count"], acquirer["ok"], acquirer["faults"], acquirer["errors"]) == (13, 12, 1, 0)
    # durations 10..120 ms and 500 ms: nearest-rank p50 is the 7th, p99 the 13th
    assert acquirer["p50_ms"] == 70.0 and acquirer["p99_ms"] == 500.0
    slowest = [t["duration_ms"] for t in acquirer["slowest"]]
    assert slowest == sorted(slowest, reverse=True) and len(slowest) == 10 and slowest[0] == 500.0
    bad = next(t for t, d in traces.items() if d[3]["annotations"]["payment_id"] == "pay_bad")
    assert acquirer["slowest"][0]["trace_id"] == bad
    worker = node(data, "worker", "AWS::Lambda::Function")
    edge = next(e for e in data["edges"] if e["source"] == worker["id"] and e["target"] == acquirer["id"])
    assert edge["count"] == 13 and edge["faults"] == 1
    client = node(data, "orders/dev", "client")
    assert client["client"] and client["count"] == 0
    # a time window keeps only the traces inside it
    assert node(map_data(traces, start=BASE + 40), "acquirer.example", "remote")["count"] == 1


def test_svg_is_well_formed_and_names_every_node(traces: dict[str, list[dict[str, Any]]]) -> None:
    data = map_data(traces)
    svg = render_svg(data)
    root = ET.fromstring(svg)
    groups = root.findall("{http://www.w3.org/2000/svg}g")
    assert len([g for g in groups if g.get("class") == "node"]) == len(data["nodes"]) == 9
    assert len([g for g in groups if g.get("class") == "edge"]) == len(data["edges"])
    assert "acquirer.example" in svg and "p99 500 ms" in svg
    empty = ET.fromstring(render_svg({"nodes": [], "edges": []}))
    assert "no traces yet" in ET.tostring(empty, encoding="unicode")


def test_page_escapes_names_and_embeds_the_data() -> None:
    trace_id, docs = payment_trace()
    docs[0]["name"] = "</script><b>x</b>"
    page = render_page(map_data({trace_id: docs}))
    assert "</script><b>" not in page
    start = page.index('id="map-data">') + len('id="map-data">')
    embedded = json.loads(page[start : page.index("</script>", start)].replace("<\\/", "</"))
    assert any(n["name"] == "</script><b>x</b>" for n in embedded["nodes"])


def call(traces: dict[str, list[dict[str, Any]]], path: str, method: str = "GET") -> tuple[str, str, bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["type"] = status, dict(headers)["Content-Type"]

    path, _, query = path.partition("?")
    body = b"".join(
        serve({"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": method}, start_response, traces)
    )
    return seen["status"], seen["type"], body


def test_routes(traces: dict[str, list[dict[str, Any]]]) -> None:
    one = next(iter(traces))
    assert call(traces, "/_local/xray/map")[:2] == ("200 OK", "text/html; charset=utf-8")
    status, _, body = call(traces, "/_local/xray/map.json?start=1&end=2")
    assert (status, json.loads(body)) == ("200 OK", {"nodes": [], "edges": []})
    assert call(traces, "/_local/xray/map.svg")[1] == "image/svg+xml"
    status, _, body = call(traces, f"/_local/xray/traces/{one}")
    assert status == "200 OK" and len(json.loads(body)["Segments"]) == 8
    assert call(traces, "/_local/xray/traces/nope")[0] == "404 Not Found"
    assert call(traces, "/_local/xray/other")[0] == "404 Not Found"
    assert call(traces, "/_local/xray/map", method="POST")[0] == "405 Method Not Allowed"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def page_server(traces: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    """Just the /_local/xray/ pages over fixed documents (what the endpoint serves for a running stack)."""
    server = make_server("127.0.0.1", 0, lambda env, sr: serve(env, sr, traces), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="/usr/bin/chromium is not installed")


@needs_chromium
def test_page_in_headless_chromium(page_server: str, traces: dict[str, list[dict[str, Any]]]) -> None:
    from playwright.sync_api import sync_playwright

    bad = next(t for t, d in traces.items() if d[3]["annotations"]["payment_id"] == "pay_bad")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{page_server}/_local/xray/map")
            assert page.locator("g.node").count() == 9
            assert page.locator("g.edge").count() == 8
            assert page.locator("#slowest").count() == 0
            page.locator('g.node[data-name="acquirer.example"]').click()
            rows = page.locator("#slowest tr")
            assert rows.count() == 11  # header + the 10 slowest
            first = rows.nth(1)
            assert first.locator("a").inner_text() == bad
            assert first.locator("td").nth(1).inner_text() == "500.0 ms"
            assert "13 requests, 12 ok" in page.locator("#details").inner_text()
            assert (
                page.locator('g.node[data-name="acquirer.example"]').get_attribute("class") == "node selected"
            )
            first.locator("a").click()
            page.wait_for_url(f"**/traces/{bad}")
            shown = json.loads(page.locator("body").inner_text())
            assert shown["Id"] == bad and len(shown["Segments"]) == 8
        finally:
            browser.close()
    assert errors == []


def test_cli_writes_the_svg(page_server: str, tmp_path: Path) -> None:
    out = tmp_path / "map.svg"
    assert cli.main(["xray-map", "--out", str(out), "--endpoint-url", page_server]) == 0
    assert ET.fromstring(out.read_text()).get("id") == "service-map"
    assert "acquirer.example" in out.read_text()


@needs_chromium
def test_cli_writes_the_png(page_server: str, tmp_path: Path) -> None:
    out = tmp_path / "map.png"
    assert cli.main(["xray-map", "--out", str(out), "--endpoint-url", page_server]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    svg = ET.fromstring(requests.get(f"{page_server}/_local/xray/map.svg", timeout=10).text)
    assert (width, height) == (int(svg.get("width", "0")), int(svg.get("height", "0")))


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["xray-map", "--out", str(tmp_path / "map.gif"), "--endpoint-url", "http://x"]) == 2
    assert (
        cli.main(["xray-map", "--out", str(tmp_path / "m.svg"), "--endpoint-url", "http://127.0.0.1:9"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "must end in .svg or .png" in err[0] and "cannot reach" in err[1]
