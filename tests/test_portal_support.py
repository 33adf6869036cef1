"""Shared pieces of the portal tests: the radio script, a state folder, the running device.

(No tests here; the name keeps it inside the portal's test files.)
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from publisher.device.setup_sim import SetupSim, start_setup
from publisher.micropython import UNIX_PACKAGES, build_mpy

XSS_SSID = "<script>alert(1)</script>"
HOME_PASSWORD = "p&ss w%rd+\"'😀x"  # every character the form encoding must carry
HIDDEN_PASSWORD = "attic-secret"
# What a board has free for the portal's data once the code is frozen (the bar).
DATA_HEAP = 24 * 1024

RADIO: dict[str, Any] = {
    "mac": "a4cf12b3c4d5",
    "networks": [
        {"ssid": "cafe", "rssi": -82, "auth": 0},
        {"ssid": "home", "rssi": -71, "auth": 3, "password": HOME_PASSWORD},
        {"ssid": XSS_SSID, "rssi": -60, "auth": 0},
        {"ssid": "home", "rssi": -45, "auth": 3, "password": HOME_PASSWORD},
        {"ssid": 'Café ☕ & "quotes"', "rssi": -66, "auth": 3, "password": "unused-pass"},
        {"ssid": "attic", "rssi": -50, "auth": 3, "hidden": True, "password": HIDDEN_PASSWORD},
    ],
}


def dumps(value: Any) -> str:
    # UTF-8, not \u escapes: MicroPython's json does not join surrogate pairs (emoji).
    return json.dumps(value, ensure_ascii=False)


def make_state(root: Path, config: dict[str, Any] | None = None, radio: dict | None = None) -> Path:
    state = root / "state"
    (state / "lcm/state").mkdir(parents=True, exist_ok=True)
    (state / "lcm/state/radio.json").write_text(dumps(radio or RADIO), encoding="utf-8")
    if config is not None:
        (state / "lcm/state/config.json").write_text(dumps(config), encoding="utf-8")
    return state


def read_config(state: Path) -> dict[str, Any]:
    path = state / "lcm/state/config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def set_radio(state: Path, radio: dict[str, Any]) -> None:
    """Change the air while the device runs (atomically: the device rereads the file)."""
    tmp = state / "lcm/state/radio.json.tmp"
    tmp.write_text(dumps(radio), encoding="utf-8")
    tmp.replace(state / "lcm/state/radio.json")


@pytest.fixture(scope="session")
def portal_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mpy(tmp_path_factory.mktemp("portal-mpy"), UNIX_PACKAGES)


@pytest.fixture
def portal(portal_build: Path, device_root: Path) -> Iterator[SetupSim]:
    """A device in setup mode with old credentials stored, within the data-heap bar."""
    state = make_state(device_root, {"wifi_ssid": "old-net", "wifi_password": "old-password"})
    sim = start_setup(state, build_dir=portal_build, data_heap=DATA_HEAP)
    try:
        yield sim
    finally:
        sim.stop()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(NoRedirect)


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) without following redirects."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with _opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def token(page: str) -> str:
    m = re.search(r'name="t" value="([0-9a-f]{32})"', page)
    assert m, page[:500]
    return m.group(1)


def form_body(fields: dict[str, str]) -> bytes:
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
