"""`lcm fleet serve` in Debian's Chromium (Playwright): the page without JavaScript, then live
updates with it, fed by a real mosquitto. A screenshot goes to the test's folder
(docs/img/fleet.png is one of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.mqttbroker import PUBLISHER, VIEWER, Broker, running_broker
from tests.test_portal_browser import CHROMIUM_ARGS

REPO = "acme/widget"
XSS = "<img src=x onerror=alert(1)>"


def _status(dev: str, app: str, **kw: Any) -> dict[str, Any]:
    now = int(time.time())
    st = {"id": dev, "state": "online", "app": app, "slot": "app1", "trial": False, "bad": None,
          "manager": "v0.9.0", "checked": now - 30, "result": ["idle", "installed"],
          "error": None, "heap": 81234, "interval": 14400, "time": now - 30}  # fmt: skip
    st.update(kw)
    return st


class Fleet:
    """Device accounts on the broker, each publishing its retained status as a device does."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def status(self, dev: str, st: dict[str, Any]) -> None:
        if dev not in self.broker.devices:
            self.broker.add_device(REPO, dev, "pw")
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev)
        c.username_pw_set(dev, "pw")
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        c.publish(f"lcm/{REPO}/status/{dev}", json.dumps(st), qos=1, retain=True).wait_for_publish(
            5
        )
        c.disconnect()
        c.loop_stop()

    def hint(self, text: str) -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        c.username_pw_set(*PUBLISHER)
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        c.publish(f"lcm/{REPO}/release", text.encode(), qos=1, retain=True).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, Fleet]]:
    with running_broker(tmp_path) as broker:
        fleet = Fleet(broker)
        fleet.hint("v1.1.0 rollout 50")
        fleet.status("240ac4000001", _status("240ac4000001", "v1.1.0"))
        fleet.status("240ac4000002", _status("240ac4000002", "v1.1.0", trial=True))
        fleet.status("240ac4000003", _status("240ac4000003", "v1.0.0", bad="v1.1.0",
                     result=["idle", "refused"], error="app: v1.1.0 failed: " + XSS))  # fmt: skip
        fleet.status("240ac4000004", _status("240ac4000004", "v1.0.0", interval=3600,
                     time=int(time.time()) - 3 * 3600))  # fmt: skip
        fleet.status("240ac4000005", _status("240ac4000005", "v1.0.0", state="offline"))
        env = {**os.environ, "LCM_MQTT_USER": VIEWER[0], "LCM_MQTT_PASSWORD": VIEWER[1],
               "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-c", "from publisher.cli import main; main()", "fleet", "serve",
             "--mqtt", broker.url, "--repo", REPO, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("dashboard: http://127.0.0.1:"), line
            url = line.split()[1]
            time.sleep(1.0)  # the retained messages arrive
            yield url, fleet
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_without_and_with_javascript(
    dashboard: tuple[str, Fleet], browser: Browser, tmp_path: Path
) -> None:
    url, fleet = dashboard
    # Without JavaScript: the server-rendered page has everything.
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    page.goto(url)
    rows = page.locator("#devices tbody tr")
    assert rows.count() == 5
    assert page.locator("#rollout h2").inner_text() == "Roll-out of v1.1.0: 50 %"
    assert [page.locator(f"#ro-{k}").inner_text() for k in ("on", "trial", "rolled_back")] == [
        "1", "1", "1",
    ]  # fmt: skip
    assert "v1.1.0" in (page.locator("#versions").text_content() or "")
    stale = page.locator("#stale").inner_text()
    assert "240ac4000004" in stale and "240ac4000001" not in stale
    # Offline (its last will) 30 s ago: shown as offline, not yet overdue.
    assert "240ac4000005" not in stale
    assert "offline" in page.locator('tr[data-device="240ac4000005"]').inner_text()
    # A device's error text is shown as text, never as markup.
    assert XSS in page.locator('tr[data-device="240ac4000003"]').inner_text()
    assert page.locator("#devices img").count() == 0
    ctx.close()
    # With JavaScript: a new status shows up without a reload.
    ctx = browser.new_context(viewport={"width": 1100, "height": 820}, device_scale_factor=1)
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    # Locator assertions run in Playwright's own world: the page's CSP (no eval) allows them.
    expect(page.locator("#live")).to_have_text("live")
    page.screenshot(path=str(tmp_path / "fleet.png"), full_page=True)
    fleet.status("240ac4000004", _status("240ac4000004", "v1.1.0"))
    fleet.status("240ac4000002", _status("240ac4000002", "v1.1.0"))
    expect(page.locator("#ro-on")).to_have_text("3", timeout=10000)
    assert "240ac4000004" not in page.locator("#stale").inner_text()
    assert page.locator("#devices tbody tr").count() == 5
    assert dialogs == []
    ctx.close()
