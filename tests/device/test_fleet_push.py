"""Push hints and fleet status: simulated devices (MicroPython unix port) against `lcm host`
and a real mosquitto with passwords and an ACL (tests/mqttbroker.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.device.enginekit import Repo
from tests.device.fleetkit import LiveDevice, idle_app
from tests.hostserver import running_host
from tests.mqttbroker import PUBLISHER, VIEWER, Broker, running_broker

MACS = ("240ac4000001", "240ac4000002", "240ac4000003")


def _client(broker: Broker, user: tuple[str, str], name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.username_pw_set(*user)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def hint(broker: Broker, tag: str, user: tuple[str, str] = PUBLISHER) -> None:
    c = _client(broker, user, "hinter")
    c.publish("lcm/acme/widget/release", tag.encode(), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


class Statuses:
    """Every retained status of the repo, as the dashboard sees them."""

    def __init__(self, broker: Broker) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="viewer")
        self.c.username_pw_set(*VIEWER)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *_: c.subscribe("lcm/acme/widget/status/+")
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.latest[msg.topic.rsplit("/", 1)[1]] = json.loads(msg.payload)

    def wait(self, dev: str, timeout: float = 30, **want: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.latest.get(dev, {})
            if all(st.get(k) == v for k, v in want.items()):
                return st
            time.sleep(0.1)
        raise AssertionError(f"status of {dev}: {self.latest.get(dev)} never had {want}")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Any, Broker, Repo]]:
    with running_host(tmp_path) as host, running_broker(tmp_path) as broker:
        repo = Repo(host)
        repo.publish("1.0.0", idle_app("1.0.0"))
        yield host, broker, repo


def _devices(tmp_path: Path, mpy: Any, host: Any, broker: Broker, repo: Repo, n: int, **cfg: Any):
    devs = []
    for mac in MACS[:n]:
        broker.add_device(repo.name, mac, "pw-" + mac)
        settings = {
            "mqtt_url": broker.url,
            "mqtt_user": mac,
            "mqtt_password": "pw-" + mac,
            "push_spread_s": 2,
            "push_min_gap_s": 5,
        }
        settings.update(cfg)
        devs.append(
            LiveDevice(tmp_path / mac, mpy, host, repo.name, repo.root.public_key, mac, **settings)
        )
    return devs


def test_a_release_reaches_three_devices_through_the_hint_and_a_forged_one_installs_nothing(
    rig: tuple[Any, Broker, Repo], tmp_path: Path, mpy: Any
) -> None:
    host, broker, repo = rig
    devs = _devices(tmp_path, mpy, host, broker, repo, 3)
    statuses = Statuses(broker)
    try:
        for d in devs:
            d.start()
        for d in devs:
            st = statuses.wait(d.id, 60, app="v1.0.0", state="online")
            assert st["trial"] is False or st["trial"] is True
            assert st["result"] == ["idle", "installed"], st
        # A forged hint (a device account cannot write the release topic: the broker
        # drops it), then the publisher's hint naming a version that does not exist.
        hint(broker, "v9.9.9", user=(MACS[0], "pw-" + MACS[0]))
        assert "Denied PUBLISH from hinter" in broker.log_text()
        marks = [len(d.lines) for d in devs]
        hint(broker, "v9.9.9")
        for d, mark in zip(devs, marks, strict=True):
            d.wait_for(r"push: hint v9\.9\.9", 30, mark)
            d.wait_for(r"app: v1\.0\.0 is installed, nothing new", 30, mark)
            statuses.wait(d.id, 30, app="v1.0.0", state="online", result=["idle", "idle"])
        # The real release, then its hint: every device installs it within the spread.
        repo.publish("1.1.0", idle_app("1.1.0"))
        marks = [len(d.lines) for d in devs]
        hint(broker, "v1.1.0")
        for d, mark in zip(devs, marks, strict=True):
            d.wait_for(r"APP v1\.1\.0 running", 60, mark)
            statuses.wait(d.id, 30, app="v1.1.0", state="online")
            assert d.boot_state()["app_tag"] == "v1.1.0"
    finally:
        for d in devs:
            d.stop()
        statuses.close()
    # Stopped without a DISCONNECT: the broker published each device's last will.
    statuses = Statuses(broker)
    try:
        for d in devs:
            statuses.wait(d.id, 10, state="offline", app="v1.1.0")
    finally:
        statuses.close()


def test_broker_restart_oversized_message_and_an_offline_device_catching_up(
    rig: tuple[Any, Broker, Repo], tmp_path: Path, mpy: Any
) -> None:
    host, broker, repo = rig
    (dev,) = _devices(tmp_path, mpy, host, broker, repo, 1)
    statuses = Statuses(broker)
    try:
        dev.start()
        statuses.wait(dev.id, 60, app="v1.0.0", state="online")
        # An oversized message (over the device's 512-byte buffer): a named error, a reconnect.
        mark = len(dev.lines)
        c = _client(broker, PUBLISHER, "big")
        c.publish("lcm/acme/widget/release", b"v" * 2000, qos=1).wait_for_publish(5)
        c.disconnect()
        dev.wait_for(r"mqtt: connection lost: LimitError: a packet of 20\d\d bytes", 20, mark)
        dev.wait_for(r"mqtt: connected", 30, mark)
        # The broker restarts: the device reconnects by itself.
        mark = len(dev.lines)
        broker.restart()
        dev.wait_for(r"mqtt: connection lost: NetworkError", 20, mark)
        dev.wait_for(r"mqtt: connected", 30, mark)
        statuses.close()
        statuses = Statuses(broker)
        statuses.wait(dev.id, 30, app="v1.0.0", state="online")
        # Offline while a release and its retained hint are published: it catches up
        # from the retained hint at its next power-on (its schedule alone would wait hours).
        dev.stop()
        repo.publish("1.1.0", idle_app("1.1.0"))
        hint(broker, "v1.1.0")
        mark = len(dev.lines)
        dev.start()
        dev.wait_for(r"check: not due", 30, mark)
        dev.wait_for(r"push: hint v1\.1\.0", 30, mark)
        dev.wait_for(r"APP v1\.1\.0 running", 60, mark)
        statuses.wait(dev.id, 30, app="v1.1.0", state="online")
    finally:
        dev.stop()
        statuses.close()


def test_the_broker_refuses_a_device_with_wrong_credentials_or_a_topic_outside_its_acl(
    rig: tuple[Any, Broker, Repo], tmp_path: Path, mpy: Any
) -> None:
    host, broker, repo = rig
    broker.add_device(repo.name, MACS[1], "pw-" + MACS[1])
    # Wrong password: CONNACK refuses, the device logs it and backs off.
    bad = LiveDevice(
        tmp_path / "bad",
        mpy,
        host,
        repo.name,
        repo.root.public_key,
        MACS[0],
        mqtt_url=broker.url,
        mqtt_user=MACS[0],
        mqtt_password="wrong",
    )
    # Right credentials of another device: its own status topic is outside that
    # account's ACL, so the broker refuses every status it publishes (and says so).
    other = LiveDevice(
        tmp_path / "other",
        mpy,
        host,
        repo.name,
        repo.root.public_key,
        MACS[2],
        mqtt_url=broker.url,
        mqtt_user=MACS[1],
        mqtt_password="pw-" + MACS[1],
    )
    statuses = Statuses(broker)
    try:
        bad.start()
        other.start()
        bad.wait_for(r"mqtt: RefusedError: the broker refused the connection: not authorised", 60)
        bad.wait_for(r"mqtt: retrying in \d+ s", 10)
        other.wait_for(r"mqtt: connected", 60)
        # MQTT 5: the broker's PUBACK says no, and the device logs it.
        other.wait_for(
            r"mqtt: the broker refused the message to lcm/acme/widget/status/"
            + MACS[2]
            + ": not authorised",
            30,
        )
        deadline = time.monotonic() + 10
        while "Denied PUBLISH from lcm-" + MACS[2] not in broker.log_text():
            assert time.monotonic() < deadline, broker.log_text()[-2000:]
            time.sleep(0.2)
        assert MACS[2] not in statuses.latest and MACS[0] not in statuses.latest
    finally:
        bad.stop()
        other.stop()
        statuses.close()
