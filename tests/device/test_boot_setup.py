"""The button held at power-on puts the device in setup mode through the real boot.

The button is a fake pin behind the HAL (held down), the sleeps of its 5 s
hold are skipped, the radio is the unix HAL's scripted fake, and the portal
runs on loopback ports (LCM_PORTAL). A phone's part is played with urllib:
load the page, pick the network, submit. The boot then checks at once and
installs the app's first release from `lcm host`.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from publisher.device.setup_sim import free_port
from publisher.device.simulate import provision
from tests.device.enginekit import Repo, app_files, start_device
from tests.hostserver import running_host
from tests.test_portal_support import FORM, form_body, http, token

PASSWORD = "correct horse"

BUTTON_HELD = """
from lcm_device import compat
compat.sleep_ms = lambda ms: None  # the button's 5 s hold passes at once

class HeldButton:
    def value(self):
        return 0  # active low: pressed

from lcm_device.hal import get
get().pin = lambda number: HeldButton()
from lcm_device import boot
boot.main()
"""


def start(state: Path, mpy: Any, http_port: int, dns_port: int) -> subprocess.Popen[str]:
    script = state.parent / "button_held.py"
    script.write_text(BUTTON_HELD)
    env = {"LCM_PORTAL": f"{http_port},{dns_port}"}
    return start_device(state, mpy, str(script), path=(mpy.build,), env=env)


def test_button_held_at_power_on_runs_setup_then_checks(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = tmp_path / "device"
        provision(
            state,
            web_url=host.url,
            repo=repo.name,
            roots=[repo.root.public_key],
            build=mpy.build,
            settings={
                "http_timeout_ms": 2000,
                "button_pin": 0,
                "check_interval_s": 86400,
                "power_on_window_s": 86400,
            },
        )
        radio = {
            "mac": "a4cf12b3c4d5",
            "networks": [{"ssid": "home", "rssi": -50, "auth": 3, "password": PASSWORD}],
        }
        (state / "lcm/state/radio.json").write_text(json.dumps(radio))
        # Checked before: the next check is hours away (a uniform draw over a day).
        schedule = {"failures": 0, "remaining": 86400, "wall": None}
        (state / "lcm/state/schedule.json").write_text(json.dumps(schedule))
        http_port = free_port(socket.SOCK_STREAM)
        proc = start(state, mpy, http_port, free_port(socket.SOCK_DGRAM))
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        try:
            while not any("portal: http://" in line for line in seen):
                line = lines.get(timeout=120)  # a hang guard, not a timed assertion
                assert line is not None, "\n".join(seen)
                seen.append(line)
            url = f"http://127.0.0.1:{http_port}/"
            page = http(url)[2]
            body = form_body({"t": token(page), "ssid": "home", "password": PASSWORD})
            status, _, done = http(url + "save", body, FORM)
            assert status == 200 and "<h1>Connected</h1>" in done, done
            code = proc.wait(timeout=300)
        finally:
            proc.kill()
            proc.wait()
        while (line := lines.get(timeout=60)) is not None:
            seen.append(line)

    out = "\n".join(seen)
    assert "button: setup" in out
    assert "wifi: leaving setup mode, connected to 'home'" in out, out
    # The schedule said a day; the setup asked for a check at once, and it installed.
    assert "app: switched to app0 (v1.0.0), trial boot next" in out, out
    assert code == 75, out
    cfg = json.loads((state / "lcm/state/config.json").read_text())
    assert cfg["wifi_ssid"] == "home" and cfg["wifi_password"] == PASSWORD
