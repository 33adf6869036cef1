"""The portal's HTML, streamed in small pieces (never built whole: 24 KB heap).

Plain HTML and inline CSS: no JavaScript, no external resources, one column
that reads on a 360 px phone. Every string that came from the air (SSIDs) or
from the form goes through `esc`.
"""

from lcm_device.compat import const

_MAX_LISTED = const(24)
_STYLE = (
    "<style>"
    "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:32em;padding:12px;"
    "color:#1a1a1a;background:#f6f7f9}"
    "h1{font-size:1.3em;margin:.2em 0 .6em}"
    "fieldset{background:#fff;border:1px solid #d5d8dd;border-radius:10px;margin:0 0 14px;"
    "padding:6px 12px 12px}"
    "legend{font-weight:600;padding:0 4px}"
    "label{display:block;margin:8px 0 2px}"
    ".n{display:flex;align-items:center;gap:10px;margin:0;padding:11px 2px;"
    "border-bottom:1px solid #eee}"
    ".n span{flex:1;overflow-wrap:anywhere}"
    ".s{color:#2a7;letter-spacing:-2px}.s i{color:#ccc;font-style:normal}"
    # A padlock drawn in CSS: phones' emoji fonts vary, and images are not allowed (CSP).
    ".l{display:inline-block;position:relative;width:11px;height:8px;margin:6px 8px 0;"
    "background:#444;border-radius:2px}.l:before{content:'';position:absolute;left:1px;"
    "top:-7px;width:5px;height:6px;border:2px solid #444;border-bottom:0;"
    "border-radius:5px 5px 0 0}"
    "input[type=text],input[type=password],select{width:100%;box-sizing:border-box;"
    "padding:10px;font-size:16px;border:1px solid #bbb;border-radius:6px}"
    "button{width:100%;padding:13px;font-size:17px;border:0;border-radius:8px;"
    "background:#0a66c2;color:#fff;margin:4px 0}"
    "button.r{background:#e8eaee;color:#1a1a1a}"
    ".e{background:#fde2e1;border:1px solid #e5a4a0;border-radius:8px;padding:10px}"
    ".ok{background:#dff5e3;border:1px solid #8fd19e;border-radius:8px;padding:10px}"
    ".w{background:#fff4d6;border-radius:6px;padding:8px;font-size:.92em}"
    "code{overflow-wrap:anywhere}small{color:#555}"
    "</style>"
)


_ESCAPED = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def esc(out, text):
    """Write `text` safe inside HTML element content and double- or single-quoted attributes.

    A character at a time: no escaped copy is made. A refilled form value of 1 KB
    of quotes would need 6 KB at once, which a crowded air's heap did not have (the
    error page was cut off by a MemoryError)."""
    for c in text:
        out.write(_ESCAPED.get(c, c))


def head(out, title):
    out.write(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>"
    )
    esc(out, title)
    out.write("</title>")
    out.write(_STYLE)
    out.write("</head><body>")


def tail(out):
    out.write("</body></html>")


def _bars(rssi):
    n = 4 if rssi >= -55 else 3 if rssi >= -67 else 2 if rssi >= -78 else 1
    return (
        '<span class="s" aria-label="signal '
        + str(n)
        + ' of 4">'
        + "▮" * n
        + ("<i>" + "▮" * (4 - n) + "</i>" if n < 4 else "")
        + "</span>"
    )


def utf8(raw):
    """`raw` as str when it is UTF-8 (RFC 3629), else UnicodeError. MicroPython's decode
    lets overlong forms, surrogates and code points past U+10FFFF through, which then
    reached the saved config (CPython cannot read it)."""
    n = len(raw)
    i = 0
    while i < n:
        c = raw[i]
        i += 1
        if c < 0x80:
            continue
        # (continuation bytes, the range of the first of them) by the lead byte
        if 0xC2 <= c <= 0xDF:
            k, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            k, lo, hi = 2, 0xA0 if c == 0xE0 else 0x80, 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            k, lo, hi = 3, 0x90 if c == 0xF0 else 0x80, 0x8F if c == 0xF4 else 0xBF
        else:
            raise UnicodeError
        if i + k > n or not lo <= raw[i] <= hi:
            raise UnicodeError
        for j in range(i + 1, i + k):
            if not 0x80 <= raw[j] <= 0xBF:
                raise UnicodeError
        i += k
    return str(raw, "utf-8")


def printable(text):
    """No control characters (C0 and DEL): what a network name may hold (form.check_ssid)."""
    return all(0x20 <= ord(ch) != 0x7F for ch in text)


def networks(scan):
    """(ssid, rssi, secured) strongest first, one per name; hidden names, names that are
    not UTF-8 and names with control characters (the form refuses them) skipped.

    A name is skipped when a network before it in the sorted scan has it (listed, or
    skipped for the same reason): no list of the names seen, which grew block by block
    while the page was written, in a heap the scan had cut up (a crowded air's page
    failed for a 256-byte block in the 24 KB data heap)."""
    scan.sort(key=lambda net: -net[3])
    listed = 0
    for i in range(len(scan)):
        if listed >= _MAX_LISTED:
            return
        raw = scan[i][0]
        if not raw:
            continue
        for j in range(i):
            if scan[j][0] == raw:
                break
        else:
            try:
                ssid = utf8(bytes(raw))
            except UnicodeError:
                continue
            if not printable(ssid):
                continue
            listed += 1
            yield ssid, scan[i][3], scan[i][4] != 0


def _field(out, label, name, value, kind="text", extra=""):
    out.write('<label for="' + name + '">' + label + "</label>")
    out.write('<input type="' + kind + '" id="' + name + '" name="' + name + '" value="')
    esc(out, value)
    out.write('"' + extra + ">")


def form_page(out, device, scan, token, cfg, fields=None, error=None):
    """The setup form; `fields` refills what the user typed (never the password)."""
    fields = fields or {}
    head(out, "Set up " + device)
    out.write("<h1>Set up ")
    esc(out, device)
    out.write("</h1>")
    if error:
        out.write('<p class="e" role="alert">')
        esc(out, error)
        out.write("</p>")
    out.write('<form method="post" action="/save"><input type="hidden" name="t" value="')
    esc(out, token)
    out.write('"><fieldset><legend>Wi-Fi network</legend>')
    chosen = fields.get("ssid")
    listed = 0
    for ssid, rssi, secured in networks(scan):
        listed += 1
        out.write('<label class="n"><input type="radio" name="ssid" value="')
        esc(out, ssid)
        out.write('"' + (" checked" if ssid == chosen else "") + "><span>")
        esc(out, ssid)
        out.write(
            '</span><i class="l" role="img" aria-label="secured" title="secured"></i>'
            if secured
            else "</span><small>open</small>"
        )
        out.write(_bars(rssi) + "</label>")
    if not listed:
        out.write("<p><small>No networks found. Refresh, or enter a hidden one.</small></p>")
    out.write('<label class="n"><input type="radio" name="ssid" value=""')
    out.write((" checked" if not chosen else "") + "><span>Other (hidden) network</span></label>")
    _field(
        out,
        "Hidden network name",
        "hidden_ssid",
        fields.get("hidden_ssid", ""),
        extra=' maxlength="32" autocapitalize="none" autocorrect="off"',
    )
    _field(out, "Password", "password", "", "password", ' maxlength="64" autocomplete="off"')
    out.write("</fieldset>")
    if not cfg.get("repo"):
        _app_fields(out, cfg, fields)
    _optional_fields(out, fields)
    out.write('<button type="submit">Connect</button></form>')
    out.write(
        '<form method="get" action="/"><button class="r" type="submit">'
        "Refresh network list</button></form>"
    )
    tail(out)


def _app_fields(out, cfg, fields):
    out.write("<fieldset><legend>App</legend>")
    _field(
        out,
        "Repository (owner/name)",
        "repo",
        fields.get("repo", ""),
        extra=' maxlength="201" autocapitalize="none" autocorrect="off" placeholder="owner/name"',
    )
    beta = fields.get("channel") == "beta"
    out.write(
        '<label for="channel">Channel</label><select id="channel" name="channel">'
        '<option value="stable">stable</option><option value="beta"'
        + (" selected" if beta else "")
        + ">beta</option></select>"
    )
    if not cfg.get("app_roots"):
        _field(
            out,
            "Root key fingerprint (from the app's maintainer)",
            "fingerprint",
            fields.get("fingerprint", ""),
            extra=' maxlength="96" autocapitalize="none" placeholder="key id, 16+ hex digits"',
        )
        out.write(
            '<label class="w"><input type="checkbox" name="tofu" value="1"'
            + (" checked" if fields.get("tofu") == "1" else "")
            + "> <b>Trust on first use</b> instead: the device will trust whatever "
            "root key the repository's first release names. Only safe if nobody can "
            "tamper with the download the first time.</label>"
        )
    out.write("</fieldset>")


def _optional_fields(out, fields):
    out.write("<details><summary>Optional settings</summary><fieldset>")
    _field(
        out,
        "Log host (UDP, empty = broadcast)",
        "log_host",
        fields.get("log_host", ""),
        extra=' maxlength="64" autocapitalize="none"',
    )
    _field(
        out,
        "Update check interval (hours, 1-168)",
        "interval_h",
        fields.get("interval_h", ""),
        extra=' inputmode="numeric" maxlength="3"',
    )
    _field(out, "MQTT broker (push, status)", "mqtt_url", fields.get("mqtt_url", ""))
    _field(out, "MQTT user", "mqtt_user", fields.get("mqtt_user", ""))
    _field(out, "MQTT password", "mqtt_password", "", "password")
    out.write("</fieldset></details>")


def result_page(out, device, ssid, reason):
    """After an attempt: connected (setup ends) or why not (the old settings are kept)."""
    if reason is None:
        head(out, device + ": connected")
        out.write('<h1>Connected</h1><p class="ok">')
        esc(out, device)
        out.write(" joined <b>")
        esc(out, ssid)
        out.write("</b> and saved the settings.")
        out.write(
            "</p><p>The setup network closes now. Your phone goes back to its usual "
            "network by itself.</p>"
        )
    else:
        head(out, device + ": not connected")
        out.write('<h1>Not connected</h1><p class="e" role="alert">Could not join <b>')
        esc(out, ssid)
        out.write("</b>: ")
        esc(out, reason)
        out.write(".</p>")
        out.write(
            "<p>Nothing was changed. Check the password and try again.</p>"
            '<form method="get" action="/"><button type="submit">Back</button></form>'
        )
    tail(out)


def message_page(out, title, text):
    head(out, title)
    out.write("<h1>")
    esc(out, title)
    out.write('</h1><p class="e">')
    esc(out, text)
    out.write(
        '</p><form method="get" action="/"><button type="submit">Back to setup</button></form>'
    )
    tail(out)
