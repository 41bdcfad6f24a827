"""The local service map: its data (nodes, edges, counts, p50/p99, slowest traces), an SVG rendering in pure
Python, and a self-contained HTML page (no CDN) served on the AWS endpoint under ``/_local/xray/``:

    /_local/xray/map              the page: the SVG map; click a node for its slowest traces
    /_local/xray/map.json         the data behind it
    /_local/xray/map.svg          the map as an image (what ``python -m local xray-map --out x.svg`` writes)
    /_local/xray/traces/<id>      one trace's documents as JSON

Optional query parameters ``start`` / ``end`` (epoch seconds) limit the traces, as GetServiceGraph does.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from local.xray_graph import CLIENT_TYPE, Graph, NodeId, analyze_trace, build_graph, dedupe, percentile

SLOWEST = 10
PREFIX = "/_local/xray"
Traces = Mapping[str, list[dict[str, Any]]]


# -- data --------------------------------------------------------------------------------------------------
def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def map_data(traces: Traces, *, start: float | None = None, end: float | None = None) -> dict[str, Any]:
    """Nodes and edges with counts and p50/p99 (milliseconds), each node's slowest traces."""
    views = []
    for tid, docs in traces.items():
        if not docs:
            continue
        view = analyze_trace(tid, docs)
        last = view.end if view.end is not None else view.start
        if (start is not None and last < start) or (end is not None and view.start > end):
            continue
        views.append(view)
    graph = build_graph(views)
    return _data_of(graph)


def _data_of(graph: Graph) -> dict[str, Any]:
    order = sorted(graph.nodes, key=lambda n: (n.type != CLIENT_TYPE, n.name, n.type or ""))
    index = {n: i for i, n in enumerate(order)}
    nodes = []
    for node in order:
        stats = graph.nodes[node]
        slowest = sorted(graph.traces.get(node, []), key=lambda t: -t[1])
        seen: dict[str, float] = {}
        for tid, dur in slowest:
            seen.setdefault(tid, dur)
        nodes.append(
            {
                "id": index[node],
                "name": node.name,
                "type": node.type,
                "client": node.type == CLIENT_TYPE,
                "root": node in graph.roots,
                "count": stats.total,
                "ok": stats.ok,
                "errors": stats.error_other,
                "throttles": stats.throttle,
                "faults": stats.fault,
                "p50_ms": _ms(stats.percentile(50)),
                "p99_ms": _ms(stats.percentile(99)),
                "slowest": [{"trace_id": t, "duration_ms": _ms(d)} for t, d in list(seen.items())[:SLOWEST]],
            }
        )
    edges = []
    for (src, dst), stats in sorted(graph.edges.items(), key=lambda e: (index[e[0][0]], index[e[0][1]])):
        edges.append(
            {
                "source": index[src],
                "target": index[dst],
                "count": stats.total,
                "errors": stats.error_other,
                "throttles": stats.throttle,
                "faults": stats.fault,
                "p50_ms": _ms(percentile(stats.durations, 50)),
                "p99_ms": _ms(percentile(stats.durations, 99)),
            }
        )
    return {"nodes": nodes, "edges": edges}


# -- layout + SVG ------------------------------------------------------------------------------------------
NODE_W, NODE_H, COL_W, ROW_H, MARGIN = 200, 86, 320, 118, 30  # 120 px between columns for edge labels


def layout(data: Mapping[str, Any]) -> dict[int, tuple[float, float]]:
    """Left to right by call depth (clients first); top-left corner of each node's box."""
    nodes = [n["id"] for n in data["nodes"]]
    targets: dict[int, list[int]] = {n: [] for n in nodes}
    has_caller = set()
    for e in data["edges"]:
        targets[e["source"]].append(e["target"])
        has_caller.add(e["target"])
    depth: dict[int, int] = {}
    frontier = [n for n in nodes if n not in has_caller] or nodes[:1]
    for n in frontier:
        depth[n] = 0
    while frontier:  # breadth first: each node at its shortest distance from an entry point
        nxt = []
        for n in frontier:
            for t in targets[n]:
                if t not in depth:
                    depth[t] = depth[n] + 1
                    nxt.append(t)
        frontier = nxt
    for n in nodes:
        depth.setdefault(n, 0)
    rows: dict[int, int] = {}
    pos: dict[int, tuple[float, float]] = {}
    for n in nodes:
        d = depth[n]
        row = rows.get(d, 0)
        rows[d] = row + 1
        pos[n] = (MARGIN + d * COL_W, MARGIN + 24 + row * ROW_H)
    return pos


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _color(item: Mapping[str, Any]) -> str:
    if item.get("faults"):
        return "#d13212"
    if item.get("throttles"):
        return "#8a3ffc"
    if item.get("errors"):
        return "#ec7211"
    return "#1d8102"


def _short(text: str, limit: int = 27) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_svg(data: Mapping[str, Any], *, title: str = "X-Ray service map (local)") -> str:
    pos = layout(data)
    width = max((x for x, _ in pos.values()), default=0) + NODE_W + MARGIN
    height = max((y for _, y in pos.values()), default=0) + NODE_H + MARGIN
    esc = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="service-map" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='8' markerHeight='8' "
        "orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' fill='#545b64'/></marker></defs>",
        f'<rect width="100%" height="100%" fill="#ffffff"/>'
        f'<text x="{MARGIN}" y="{MARGIN}" font-size="15" font-weight="bold" fill="#16191f">'
        f"{esc(title)}</text>",
    ]
    if not data["nodes"]:
        out.append(f'<text x="{MARGIN}" y="{MARGIN + 40}" font-size="13" fill="#545b64">no traces yet</text>')
    for e in data["edges"]:
        (sx, sy), (tx, ty) = pos[e["source"]], pos[e["target"]]
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, tx, ty + NODE_H / 2
        if x2 <= x1:  # a call back to the left (or within a column): loop below the boxes
            x1, x2 = sx + NODE_W / 2, tx + NODE_W / 2
            y1, y2 = sy + NODE_H, ty + NODE_H
            low = max(y1, y2) + 30
            path = f"M {x1:.0f} {y1:.0f} C {x1:.0f} {low:.0f}, {x2:.0f} {low:.0f}, {x2:.0f} {y2:.0f}"
            lx, ly = (x1 + x2) / 2, low - 4
        else:
            mid = (x1 + x2) / 2
            path = f"M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, {x2:.0f} {y2:.0f}"
            lx, ly = mid, (y1 + y2) / 2 - 5
        label = f"{e['count']} · p50 {_fmt_ms(e['p50_ms'])}"
        out.append(
            f'<g class="edge" data-source="{e["source"]}" data-target="{e["target"]}">'
            f'<path d="{path}" fill="none" stroke="{_color(e)}" stroke-width="1.6" marker-end="url(#arrow)"/>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" font-size="10" text-anchor="middle" fill="#545b64">'
            f"{esc(label)}</text></g>"
        )
    for n in data["nodes"]:
        x, y = pos[n["id"]]
        kind = n["type"] or "service"
        if n["client"]:
            lines = [("client", 12, "bold"), (_short(n["name"]), 11, "normal")]
        else:
            lines = [
                (_short(n["name"]), 13, "bold"),
                (_short(kind, 32), 10, "normal"),
                (
                    f"{n['count']} req · {n['faults']} fault · {n['errors'] + n['throttles']} err",
                    11,
                    "normal",
                ),
                (f"p50 {_fmt_ms(n['p50_ms'])} · p99 {_fmt_ms(n['p99_ms'])}", 11, "normal"),
            ]
        stroke = "#879596" if n["client"] else _color(n)
        out.append(
            f'<g class="node" data-node="{n["id"]}" data-name="{esc(n["name"])}" style="cursor:pointer">'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="10" fill="#f8f8f8" '
            f'stroke="{stroke}" stroke-width="2.5"/>'
        )
        for i, (text, size, weight) in enumerate(lines):
            out.append(
                f'<text x="{x + 10:.0f}" y="{y + 20 + i * 18:.0f}" font-size="{size}" font-weight="{weight}" '
                f'fill="#16191f">{esc(text)}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


# -- page --------------------------------------------------------------------------------------------------
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>X-Ray service map (local)</title>
<style>
 body { font-family: Helvetica, Arial, sans-serif; margin: 16px; color: #16191f; }
 #map { overflow: auto; border: 1px solid #d5dbdb; display: inline-block; max-width: 100%; }
 #details { margin-top: 12px; }
 table { border-collapse: collapse; }
 td, th { padding: 3px 10px; border-bottom: 1px solid #eaeded; text-align: left; }
 .node:hover rect { fill: #e9f3ff; }
 .selected rect { fill: #d6ebff; }
</style></head>
<body>
<div id="map">__SVG__</div>
<div id="details"><p>Click a node to see its slowest traces.</p></div>
<script type="application/json" id="map-data">__DATA__</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('map-data').textContent);
  function ms(v) { return v === null ? '-' : v.toFixed(1) + ' ms'; }
  function text(tag, value) { var el = document.createElement(tag); el.textContent = value; return el; }
  function show(id) {
    var node = data.nodes[id];
    document.querySelectorAll('.node').forEach(function (g) {
      g.classList.toggle('selected', g.getAttribute('data-node') === String(id));
    });
    var box = document.getElementById('details');
    box.innerHTML = '';
    box.appendChild(text('h3', node.name + (node.type ? ' (' + node.type + ')' : '')));
    box.appendChild(text('p', node.count + ' requests, ' + node.ok + ' ok, ' + node.errors + ' errors, ' +
      node.throttles + ' throttled, ' + node.faults + ' faults; p50 ' + ms(node.p50_ms) + ', p99 ' +
      ms(node.p99_ms)));
    var table = document.createElement('table');
    table.id = 'slowest';
    var head = document.createElement('tr');
    head.appendChild(text('th', 'trace id')); head.appendChild(text('th', 'duration'));
    table.appendChild(head);
    node.slowest.forEach(function (t) {
      var row = document.createElement('tr');
      var cell = document.createElement('td');
      var link = text('a', t.trace_id);
      link.href = 'traces/' + encodeURIComponent(t.trace_id);
      cell.appendChild(link); row.appendChild(cell);
      row.appendChild(text('td', ms(t.duration_ms)));
      table.appendChild(row);
    });
    box.appendChild(table);
  }
  document.querySelectorAll('.node').forEach(function (g) {
    g.addEventListener('click', function () { show(Number(g.getAttribute('data-node'))); });
  });
})();
</script></body></html>
"""


def render_page(data: Mapping[str, Any]) -> str:
    # "</" cannot end the JSON script element early once escaped.
    payload = json.dumps(data).replace("</", "<\\/")
    return _PAGE.replace("__DATA__", payload).replace("__SVG__", render_svg(data))


# -- WSGI --------------------------------------------------------------------------------------------------
StartResponse = Callable[..., Any]


def _respond(start_response: StartResponse, status: str, ctype: str, body: str) -> Iterable[bytes]:
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def _float_arg(query: dict[str, list[str]], name: str) -> float | None:
    try:
        return float(query[name][0]) if name in query else None
    except ValueError:
        return None


def serve(environ: Mapping[str, Any], start_response: StartResponse, traces: Traces) -> Iterable[bytes]:
    """Answer one request under ``/_local/xray/``."""
    path = str(environ.get("PATH_INFO", ""))[len(PREFIX) :]
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        return _respond(start_response, "405 Method Not Allowed", "text/plain", "GET only\n")
    start, end = _float_arg(query, "start"), _float_arg(query, "end")
    if path in ("/map", "/map/", "", "/"):
        return _respond(
            start_response,
            "200 OK",
            "text/html; charset=utf-8",
            render_page(map_data(traces, start=start, end=end)),
        )
    if path == "/map.json":
        return _respond(
            start_response, "200 OK", "application/json", json.dumps(map_data(traces, start=start, end=end))
        )
    if path == "/map.svg":
        return _respond(
            start_response, "200 OK", "image/svg+xml", render_svg(map_data(traces, start=start, end=end))
        )
    if path.startswith("/traces/"):
        trace_id = urllib.parse.unquote(path[len("/traces/") :])
        docs = traces.get(trace_id)
        if not docs:
            return _respond(
                start_response,
                "404 Not Found",
                "application/json",
                json.dumps({"message": f"no trace {trace_id}"}),
            )
        ordered = sorted(dedupe(docs), key=lambda d: float(d.get("start_time", 0)))
        return _respond(
            start_response,
            "200 OK",
            "application/json",
            json.dumps({"Id": trace_id, "Segments": ordered}, indent=2),
        )
    return _respond(start_response, "404 Not Found", "text/plain", f"nothing at {PREFIX}{path}\n")


__all__ = ["NodeId", "map_data", "render_page", "render_svg", "serve"]
