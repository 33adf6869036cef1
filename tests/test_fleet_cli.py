"""`lcm release publish --mqtt` and `lcm fleet status` against `lcm host` and a real mosquitto."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from typer.testing import CliRunner

from publisher import console, signing
from publisher.cli import app
from tests.hostserver import running_host
from tests.keyfactory import make_sector
from tests.mqttbroker import PUBLISHER, VIEWER, Broker, running_broker
from tests.test_release_publish import write_app

TOKEN = "lcm-test-token-fleet"
REPO = "acme/widget"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with (
        running_host(tmp_path, token=TOKEN, repos=(REPO,)) as host,
        running_broker(tmp_path) as broker,
    ):
        _, _, root = signing.generate(tmp_path / "keys", "root", None)
        key, _, signer = signing.generate(tmp_path / "keys", "release", None)
        sector = tmp_path / "certs.sector"
        sector.write_bytes(make_sector(REPO, [root], [signer]))
        yield {
            "broker": broker,
            "env": {"GITHUB_TOKEN": TOKEN, "LCM_GITHUB_API": host.api_url},
            "publish": [
                "release", "publish", str(write_app(tmp_path / "app", {"main.py": b"x = 1\n"})),
                "--repo", REPO, "--key", str(key), "--certs", str(sector), "--retry-delay", "0",
            ],
        }  # fmt: skip


def lcm(args: list[str], env: dict[str, str], code: int = 0) -> Any:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == code, result.output
    return result


def retained(broker: Broker, topic: str, user: tuple[str, str] = VIEWER) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="check")
    c.username_pw_set(*user)
    c.on_message = lambda _c, _u, m: got.__setitem__(m.topic, m.payload)
    c.connect("127.0.0.1", broker.port)
    c.subscribe(topic)
    c.loop_start()
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()
    return got


def test_publish_sends_the_retained_hint_once_live_with_credentials_from_the_environment(
    rig: dict[str, Any],
) -> None:
    broker: Broker = rig["broker"]
    env = {**rig["env"], "LCM_MQTT_USER": PUBLISHER[0], "LCM_MQTT_PASSWORD": PUBLISHER[1]}
    out = json.loads(
        lcm([*rig["publish"], "--tag", "v1.0.0", "--mqtt", broker.url, "--json"], env).stdout
    )
    assert (out["state"], out["hint"]) == ("published", "v1.0.0")
    assert retained(broker, "lcm/acme/widget/release") == {"lcm/acme/widget/release": b"v1.0.0"}
    # The broker refuses: a wrong password, an account its ACL does not let write
    # the release topic. The release itself is published (and stays so); the command
    # says why the hint did not go out and exits 1.
    bad = {**env, "LCM_MQTT_PASSWORD": "wrong"}
    r = lcm([*rig["publish"], "--tag", "v1.0.1", "--mqtt", broker.url], bad, code=1)
    assert "refused the connection" in r.output and "LCM_MQTT_PASSWORD" in r.output
    viewer = {**env, "LCM_MQTT_USER": VIEWER[0], "LCM_MQTT_PASSWORD": VIEWER[1]}
    r = lcm([*rig["publish"], "--tag", "v1.0.2", "--mqtt", broker.url], viewer, code=1)
    assert "refused the hint on lcm/acme/widget/release: Not authorized" in r.output
    assert retained(broker, "lcm/acme/widget/release") == {"lcm/acme/widget/release": b"v1.0.0"}
    # The hint alone, as the failed runs' messages say to send it.
    r = lcm(["fleet", "hint", "--mqtt", broker.url, "--repo", REPO, "v1.0.2 rollout 50"], env)
    assert "push hint 'v1.0.2 rollout 50' published" in r.output
    assert retained(broker, "lcm/acme/widget/release") == {
        "lcm/acme/widget/release": b"v1.0.2 rollout 50"
    }
    # Credentials in the URL (they would land in `ps` and shell history) are refused.
    url = f"mqtt://{PUBLISHER[0]}:{PUBLISHER[1]}@127.0.0.1:{broker.port}"
    r = lcm([*rig["publish"], "--tag", "v1.0.3", "--mqtt", url], env, code=1)
    assert "put no credentials in the broker URL" in r.output


def test_rollout_says_which_hint_it_sent(rig: dict[str, Any]) -> None:
    # As publish --mqtt and fleet hint do: a user sees that the devices were woken.
    broker: Broker = rig["broker"]
    env = {**rig["env"], "LCM_MQTT_USER": PUBLISHER[0], "LCM_MQTT_PASSWORD": PUBLISHER[1]}
    lcm([*rig["publish"], "--tag", "v1.0.0", "--rollout", "10"], env)
    key = rig["publish"][rig["publish"].index("--key") + 1]
    rollout = ["release", "rollout", "v1.0.0", "50", "--repo", REPO, "--key", key]
    r = lcm([*rollout, "--mqtt", broker.url], env)
    assert f"push hint 'v1.0.0 rollout 50' published to {broker.url}" in r.output, r.output
    assert retained(broker, "lcm/acme/widget/release") == {
        "lcm/acme/widget/release": b"v1.0.0 rollout 50"
    }


def test_fleet_status_shows_every_device_and_names_hostile_statuses(
    rig: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker: Broker = rig["broker"]
    now = int(time.time())
    statuses = {
        "240ac4000001": {"id": "240ac4000001", "state": "online", "app": "v1.1.0",
                         "trial": False, "manager": None, "result": ["idle", "installed"],
                         "error": None, "interval": 14400, "time": now - 60},
        "240ac4000002": {"id": "240ac4000002", "state": "online", "app": "v1.0.0",
                         "trial": False, "result": ["idle", "refused"],
                         "error": "app: refused v1.1.0: Refused: bad [b]markup[/b] "
                                  "\x1b]0;pwned\x07\x1b[2J",
                         "interval": 3600, "time": now - 3 * 3600},
    }  # fmt: skip
    for dev in statuses:
        broker.add_device(REPO, dev, "pw")
    for dev, st in statuses.items():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev)
        c.username_pw_set(dev, "pw")
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        c.publish(f"lcm/{REPO}/status/{dev}", json.dumps(st), qos=1, retain=True).wait_for_publish()
        if dev.endswith("1"):
            c.publish(f"lcm/{REPO}/status/{dev}", b"\xff not json", qos=1, retain=True)
            c.publish(
                f"lcm/{REPO}/status/{dev}", json.dumps(st), qos=1, retain=True
            ).wait_for_publish()
        c.disconnect()
        c.loop_stop()
    broker.add_device(REPO, "240ac4000003", "pw")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d3")
    c.username_pw_set("240ac4000003", "pw")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(f"lcm/{REPO}/status/240ac4000003", b"[1, 2]", qos=1, retain=True).wait_for_publish()
    c.disconnect()
    c.loop_stop()
    env = {"LCM_MQTT_USER": VIEWER[0], "LCM_MQTT_PASSWORD": VIEWER[1]}
    args = ["fleet", "status", "--mqtt", broker.url, "--repo", REPO]
    data = json.loads(lcm([*args, "--json"], env).stdout)
    devices = {d["id"]: d for d in data["devices"]}
    assert set(devices) == {"240ac4000001", "240ac4000002", "240ac4000003"}
    assert devices["240ac4000001"]["app"] == "v1.1.0" and not devices["240ac4000001"]["stale"]
    assert devices["240ac4000002"]["stale"]  # 3 h silent with a 1 h interval
    assert devices["240ac4000003"]["problem"] == "status is not a JSON object"
    # The console reads COLUMNS when it is made (at import) if it is set then, as it is
    # in pytest-xdist's workers (80): its width is fixed; this table needs 200 columns.
    monkeypatch.setattr(console.out, "_width", None)
    text = lcm([*args], {**env, "COLUMNS": "200"}).stdout
    assert "240ac4000002" in text and "not seen" in text and "[b]markup[/b]" in text
    # A status cannot drive the maintainer's terminal: its control characters are shown.
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in text.replace("\n", ""), text
    # In 80 columns (a pipe) the device ids are whole: the other columns wrap instead.
    narrow = lcm([*args], {**env, "COLUMNS": "80"}).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80, narrow
    for dev in ("240ac4000001", "240ac4000002", "240ac4000003"):
        assert dev in narrow, narrow
    assert "…" not in narrow, narrow  # wrapped or folded, never cut short
    # Wrapped between words, never inside one: "installe" / "d" cannot be read back.
    words = {w for line in narrow.splitlines() for w in line.replace("│", " ").split()}
    assert {"installed", "refused", "Refused:", "[b]markup[/b]", "seen"} <= words, narrow
    # A wrong password: a clear message, exit 1.
    r = lcm(args, {**env, "LCM_MQTT_PASSWORD": "nope"}, code=1)
    assert "refused the connection" in r.output


def test_fleet_status_watch_shows_a_change_live_and_stops_on_interrupt(rig: dict[str, Any]) -> None:
    import signal
    import subprocess
    import sys
    import threading

    broker: Broker = rig["broker"]
    broker.add_device(REPO, "240ac4000009", "pw")
    env = {**os.environ, "LCM_MQTT_USER": VIEWER[0], "LCM_MQTT_PASSWORD": VIEWER[1],
           "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", "from publisher.cli import main; main()", "fleet", "status",
         "--mqtt", broker.url, "--repo", REPO, "--watch"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        while text not in "".join(lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.1)

    try:
        wait_for("acme/widget: 0 device(s)")  # the first table: it is watching
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d9")
        c.username_pw_set("240ac4000009", "pw")
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        st = {"id": "240ac4000009", "state": "online", "app": "v7.7.7", "interval": 60}
        c.publish(f"lcm/{REPO}/status/240ac4000009", json.dumps(st), qos=1).wait_for_publish()
        c.disconnect()
        c.loop_stop()
        wait_for("v7.7.7")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert "240ac4000009" in "".join(lines)


def publish_as(broker: Broker, device: str, topic: str, payload: bytes, user=None) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device}-p")
    c.username_pw_set(*(user or (device, "pw")))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish()
    c.disconnect()
    c.loop_stop()


def test_statuses_built_to_break_the_tools_are_named_and_the_others_still_listed(
    rig: dict[str, Any],
) -> None:
    """4 KB of "[" (JSON nested past the parser's depth) killed paho's network thread: a
    traceback, and the dashboard stopped updating; a number of 400 digits overflowed
    float(); a status of megabytes was read whole; a hint's escape sequences reached the
    terminal. Each device's status is its own retained message: one device breaks
    nothing for the others."""
    broker: Broker = rig["broker"]
    now = int(time.time())
    good = {"id": "240ac40000ff", "state": "online", "app": "v1.0.0", "interval": 3600,
            "time": now}  # fmt: skip
    hostile = {
        "240ac4000001": b"[" * 4000,
        "240ac4000002": json.dumps({**good, "time": 10**400, "interval": 10**400}).encode(),
        "240ac4000003": json.dumps({**good, "pad": "x" * 200_000}).encode(),
        "240ac40000ff": json.dumps(good).encode(),
    }
    for dev, payload in hostile.items():
        broker.add_device(REPO, dev, "pw")
        publish_as(broker, dev, f"lcm/{REPO}/status/{dev}", payload)
    publish_as(broker, "p", f"lcm/{REPO}/release", b"v1\x1b]0;PWNED\x07\x1b[31m", PUBLISHER)
    env = {"LCM_MQTT_USER": VIEWER[0], "LCM_MQTT_PASSWORD": VIEWER[1]}
    args = ["fleet", "status", "--mqtt", broker.url, "--repo", REPO]
    data = json.loads(lcm([*args, "--json"], env).stdout)
    devices = {d["id"]: d for d in data["devices"]}
    # The one of 200 KB is not delivered (the tools ask for packets of at most 8 KB).
    assert set(devices) == {"240ac4000001", "240ac4000002", "240ac40000ff"}, devices
    assert devices["240ac4000001"]["problem"] == "status is not JSON"
    assert devices["240ac4000002"]["time"] is None and devices["240ac4000002"]["interval"] is None
    assert devices["240ac40000ff"]["app"] == "v1.0.0"
    assert data["release"]["tag"] == "v1\\x1b]0;PWNED\\x07\\x1b[31m"
    text = lcm(args, env).stdout
    assert "Traceback" not in text and "\x1b" not in text and "\x07" not in text, repr(text)


@pytest.mark.parametrize("width", [80, 200])
def test_fleet_status_never_cuts_long_tags(width: int) -> None:
    """Tags up to 64 characters did not fit a table of 80 columns: Rich cut the tags,
    dropped the state and check columns and cut "last seen" (found by review). When the
    rows cannot fit whole, one block of lines per device is printed instead."""
    from io import StringIO

    from rich.console import Console

    from publisher.commands.fleet import table
    from publisher.fleet.view import DeviceStatus, FleetView

    view = FleetView(REPO)
    now = int(time.time())
    tags = ("v1.2.3-beta.4+build.20260101", "v0.9.0-rc.1+abcdef")
    view.devices["240ac4000002"] = DeviceStatus(
        id="240ac4000002", state="online", app=tags[0], manager=tags[1],
        result=["installed", "idle"], error="app: refused v9: Refused: a reason",
        time=now, received=now, checked=now,
    )  # fmt: skip
    buf = StringIO()
    Console(width=width, file=buf, force_terminal=False).print(table(view, width), soft_wrap=False)
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width, text
    assert "…" not in text, text
    words = {w for line in text.splitlines() for w in line.replace("│", " ").split()}
    assert {*tags, "online", "installed", "idle", "seen", "Refused:"} <= words, text
