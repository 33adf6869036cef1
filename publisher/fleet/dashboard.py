"""`lcm fleet serve`: a local web page of the fleet, live from the broker's retained messages.

No build step, no external files: the server renders the whole page as HTML
(it works without JavaScript; a `<noscript>` refresh reloads it every 10 s)
and `/app.js`, a dozen lines, swaps in a freshly rendered fragment pushed by
`/events` (server-sent events) whenever a message changes the view.

  GET /            the page
  GET /fleet.json  the same data as JSON (what `lcm fleet status --json` prints)
  GET /events      text/event-stream: one `data:` line (the fragment, as JSON) per change
  GET /app.js      the live-update script

Every value shown comes from a device and is escaped (`html.escape`); the
page sends a Content-Security-Policy that allows only its own script and
styles, so even a missed escape could not run a script.
"""

from __future__ import annotations

import html
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from publisher.fleet.view import DeviceStatus, FleetView

_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'"
_KEEPALIVE_S = 15.0
_COLORS = ("#2b6cb0", "#38a169", "#d69e2e", "#805ad5", "#e53e3e", "#319795", "#718096")

APP_JS = b"""// lcm fleet: replace the fleet section with each fragment the server pushes.
(function () {
  var box = document.getElementById("fleet");
  var live = document.getElementById("live");
  if (!window.EventSource || !box) { return; }
  var es = new EventSource("/events");
  es.onmessage = function (e) { box.innerHTML = JSON.parse(e.data); live.textContent = "live"; };
  es.onerror = function () { live.textContent = "reconnecting"; };
})();
"""

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1a202c;background:#f7fafc}
header{background:#1a365d;color:#fff;padding:.8em 1.2em;display:flex;gap:1em;align-items:baseline}
header h1{font-size:1.2em;margin:0}#live{margin-left:auto;font-size:.85em;opacity:.8}
main{padding:1em 1.2em;max-width:1100px}section{background:#fff;border:1px solid #e2e8f0;
border-radius:6px;padding:.8em 1em;margin-bottom:1em}h2{font-size:1em;margin:0 0 .6em}
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{text-align:left;padding:.3em .5em;
border-bottom:1px solid #edf2f7;vertical-align:top}th{color:#4a5568;font-weight:600}
.bar{display:flex;height:22px;border-radius:4px;overflow:hidden;background:#edf2f7}
.bar span{display:block;height:100%}.legend{display:flex;gap:1.2em;flex-wrap:wrap;margin-top:.4em;
font-size:.9em}.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.3em}
.stale{color:#c53030;font-weight:600}.off{color:#718096}.err{color:#9b2c2c;font-size:.88em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1em;
margin-bottom:1em}
.grid section{margin:0}.muted{color:#718096}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(max(seconds, 0))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def _state(d: DeviceStatus, now: float) -> str:
    if d.problem:
        return f'<span class="stale">{_e(d.problem)}</span>'
    word = _e(d.state) + (" (trial)" if d.trial else "")
    if d.state == "offline":
        return f'<span class="off">{word}</span>'
    if d.stale(now):
        return f'{word} <span class="stale">not seen</span>'
    return word


def fragment(view: FleetView) -> str:
    """The live part of the page: roll-out progress, versions, silent devices, the table."""
    devices = view.snapshot()[0]
    now = time.time()
    parts = ['<div class="grid">', _progress(view, devices), _versions(view, devices), "</div>"]
    stale = [d for d in devices if d.stale(now)]
    parts.append('<section id="stale"><h2>Not seen for longer than their check interval</h2>')
    if stale:
        parts.append("<ul>")
        for d in stale:
            seen = d.last_seen()
            parts.append(
                f"<li><b>{_e(d.id)}</b>: {_e(d.state)}, last status "
                f"{_age(None if seen is None else now - seen)} ago "
                f"(interval {_age(d.interval)})</li>"
            )
        parts.append("</ul>")
    else:
        parts.append('<p class="muted">none</p>')
    parts.append("</section>")
    parts.append(f'<section><h2>Devices ({len(devices)})</h2><table id="devices"><thead><tr>')
    for col in ("device", "app", "manager", "state", "last seen", "last check", "last error"):
        parts.append(f"<th>{col}</th>")
    parts.append("</tr></thead><tbody>")
    for d in devices:
        seen = d.last_seen()
        parts.append(
            f'<tr data-device="{_e(d.id)}"><td>{_e(d.id)}</td><td>{_e(d.app or "-")}</td>'
            f"<td>{_e(d.manager or '(factory)')}</td><td>{_state(d, now)}</td>"
            f"<td>{_age(None if seen is None else now - seen)}</td>"
            f"<td>{_e('/'.join(d.result) or '-')}</td>"
            f'<td class="err">{_e(d.error)}</td></tr>'
        )
    parts.append("</tbody></table></section>")
    return "".join(parts)


def _progress(view: FleetView, devices: list[DeviceStatus]) -> str:
    ro = view.rollout
    if ro.tag is None:
        return '<section id="rollout"><h2>Release</h2><p class="muted">no hint yet</p></section>'
    stage = "halted" if ro.halted else "the whole fleet" if ro.share is None else f"{ro.share} %"
    p = view.progress()
    total = max(len(devices), 1)
    segs = [
        ("on", "on it (confirmed)", "#38a169"),
        ("trial", "in trial", "#d69e2e"),
        ("rolled_back", "rolled back", "#e53e3e"),
        ("other", "not yet", "#cbd5e0"),
    ]
    bar = "".join(
        f'<span style="width:{100 * p[k] / total:.1f}%;background:{c}" title="{t}: {p[k]}"></span>'
        for k, t, c in segs
        if p[k]
    )
    legend = "".join(
        f'<span><i class="sw" style="background:{c}"></i>{t}: <b id="ro-{k}">{p[k]}</b></span>'
        for k, t, c in segs
    )
    return (
        f'<section id="rollout"><h2>Roll-out of {_e(ro.tag)}: {_e(stage)}</h2>'
        f'<div class="bar" role="img" aria-label="roll-out progress">{bar}</div>'
        f'<div class="legend">{legend}</div></section>'
    )


def _versions(view: FleetView, devices: list[DeviceStatus]) -> str:
    counts = view.versions()
    total = max(len(devices), 1)
    rows = []
    for i, (version, n) in enumerate(counts.items()):
        color = _COLORS[i % len(_COLORS)]
        y = 6 + i * 26
        width = 4 + 250 * n / total
        rows.append(
            f'<text x="0" y="{y + 14}" font-size="13">{_e(version)}</text>'
            f'<rect x="110" y="{y}" width="{width:.1f}" height="18" rx="3" fill="{color}"/>'
            f'<text x="{116 + width:.1f}" y="{y + 14}" font-size="13">{n}</text>'
        )
    height = 12 + 26 * max(len(counts), 1)
    svg = (
        f'<svg id="versions" viewBox="0 0 400 {height}" width="100%" height="{height}" '
        f'role="img" aria-label="devices per app version">{"".join(rows)}</svg>'
    )
    return f"<section><h2>App versions</h2>{svg}</section>"


def page(view: FleetView) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>lcm fleet: {_e(view.repo)}</title>"
        '<noscript><meta http-equiv="refresh" content="10"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        f"<header><h1>lcm fleet</h1><span>{_e(view.repo)}</span>"
        '<span id="live">static (reloads every 10 s)</span></header>'
        f'<main><div id="fleet">{fragment(view)}</div></main>'
        '<script src="/app.js"></script></body></html>'
    )


def as_json(view: FleetView) -> dict[str, Any]:
    devices, ro, _ = view.snapshot()
    now = time.time()
    return {
        "repo": view.repo,
        "release": ro.__dict__,
        "progress": view.progress(),
        "versions": view.versions(),
        "devices": [d.as_json(now) for d in devices],
    }


class _Handler(BaseHTTPRequestHandler):
    view: FleetView
    stopping: threading.Event
    server_version = "lcm-fleet"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a dashboard left open would fill the terminal

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "text/html; charset=utf-8", page(self.view).encode())
        elif path == "/app.js":
            self._send(200, "text/javascript; charset=utf-8", APP_JS)
        elif path == "/fleet.json":
            body = json.dumps(as_json(self.view), indent=1).encode()
            self._send(200, "application/json", body)
        elif path == "/events":
            self._events()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = -1
        try:
            while not self.stopping.is_set():
                changes = self.view.wait_change(seen, _KEEPALIVE_S)
                if changes == seen:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    seen = changes
                    data = json.dumps(fragment(self.view))
                    self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def make_server(view: FleetView, bind: str, port: int) -> ThreadingHTTPServer:
    """The dashboard's HTTP server (not yet serving); port 0 picks a free one."""
    handler = type("FleetHandler", (_Handler,), {"view": view, "stopping": threading.Event()})
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    return server
