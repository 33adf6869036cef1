"""Push over MQTT against polling: simulated devices (MicroPython unix port), `lcm host`, mosquitto.

Prints:
- the time from `publish` returning to all N devices running the new release
  confirmed, with the push hint (`push_spread_s` at its default, 60 s; the
  check interval at its default, 4 h, so only the hint can wake them) and
  with polling alone (no broker, the check interval at its minimum, 60 s:
  at the default 4 h the wait is up to 1.25 x 4 h, see docs/lifecycle.md);
- the broker's packets per device per day at rest: measured on one device
  with a short keep-alive and check interval over a window, split into
  keep-alive packets (per keep-alive period) and packets per check cycle
  (status `checking`, DISCONNECT, CONNECT, CONNACK, SUBSCRIBE, SUBACK, the
  retained hint, status `online` and its PUBACK), then scaled to the defaults
  (`mqtt_keepalive_s` 300, `check_interval_s` 14400).

Usage: python bench/bench_fleet_mqtt.py [--devices N]   (default 3)
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from publisher.micropython import build_mpy
from tests.device.enginekit import Repo
from tests.device.fleetkit import LiveDevice, idle_app
from tests.hostserver import running_host
from tests.mqttbroker import PUBLISHER, running_broker

DAY = 86400


def _hint(broker, tag: str) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    c.username_pw_set(*PUBLISHER)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(f"lcm/{Repo.name}/release", tag.encode(), qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _fleet(tmp: Path, mpy, host, repo, broker, n: int, first: int, **cfg) -> list[LiveDevice]:
    devs = []
    for i in range(n):
        mac = f"240ac4{first + i:06x}"
        if broker is not None:
            broker.add_device(repo.name, mac, "pw")
            cfg.update(mqtt_url=broker.url, mqtt_user=mac, mqtt_password="pw")
        devs.append(LiveDevice(tmp / mac, mpy, host, repo.name, repo.root.public_key, mac, **cfg))
    return devs


def _until_all(devs: list[LiveDevice], tag: str, timeout: float, start: float) -> float:
    """Seconds from `start` until every device runs `tag`, confirmed."""
    while time.monotonic() - start < timeout:
        if all(d.boot_state().get("app_tag") == tag and d.boot_state().get("app_trial") is None
               for d in devs):  # fmt: skip
            return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"not all devices on {tag} within {timeout} s")


def rollout_times(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        mpy = SimpleNamespace(build=build_mpy(tmp / "mpy"), heap=None)
        with running_host(tmp) as host, running_broker(tmp) as broker:
            repo = Repo(host)
            repo.publish("1.0.0", idle_app("1.0.0"))
            pushed = _fleet(tmp / "push", mpy, host, repo, broker, n, 1)
            polled = _fleet(tmp / "poll", mpy, host, repo, None, n, 100, check_interval_s=60)
            try:
                for d in [*pushed, *polled]:
                    d.start()
                _until_all([*pushed, *polled], "v1.0.0", 120, time.monotonic())
                for d in pushed:
                    d.wait_for(r"mqtt: connected", 60)
                for d in polled:  # each has just checked: its next check is 45-75 s away
                    d.wait_for(r"APP v1\.0\.0 running", 60)
                repo.publish("1.1.0", idle_app("1.1.0"))
                _hint(broker, "v1.1.0")  # what `lcm release publish --mqtt` does last
                start = time.monotonic()
                with_hint = _until_all(pushed, "v1.1.0", 180, start)
                polling = _until_all(polled, "v1.1.0", 240, start)
            finally:
                for d in [*pushed, *polled]:
                    d.stop()
    return with_hint, polling


_KINDS = (
    ("PINGREQ", r"Received PINGREQ from (lcm-\w+)"),
    ("PINGRESP", r"Sending PINGRESP to (lcm-\w+)"),
    ("PUBLISH in", r"Received PUBLISH from (lcm-\w+)"),
    ("PUBLISH out", r"Sending PUBLISH to (lcm-\w+)"),
    ("PUBACK out", r"Sending PUBACK to (lcm-\w+)"),
    ("CONNECT", r"New client connected from \S+ as (lcm-\w+)"),
    ("CONNACK", r"Sending CONNACK to (lcm-\w+)"),
    ("SUBSCRIBE", r"Received SUBSCRIBE from (lcm-\w+)"),
    ("SUBACK", r"Sending SUBACK to (lcm-\w+)"),
    ("DISCONNECT", r"Received DISCONNECT from (lcm-\w+)"),
)


def rest_messages(window_s: float = 150, keepalive_s: int = 4, interval_s: int = 60) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        mpy = SimpleNamespace(build=build_mpy(tmp / "mpy"), heap=None)
        with running_host(tmp) as host, running_broker(tmp) as broker:
            repo = Repo(host)
            repo.publish("1.0.0", idle_app("1.0.0"))
            _hint(broker, "v1.0.0")
            (dev,) = _fleet(
                tmp, mpy, host, repo, broker, 1, 1,
                check_interval_s=interval_s, mqtt_keepalive_s=keepalive_s,
            )  # fmt: skip
            dev.start()
            try:
                dev.wait_for(r"APP v1\.0\.0 running", 60)
                dev.wait_for(r"mqtt: connected", 30)
                mark = len(broker.log_text().splitlines())
                connects = dev.text().count("mqtt: connected")
                time.sleep(window_s)
                lines = broker.log_text().splitlines()[mark:]
                cycles = dev.text().count("mqtt: connected") - connects
            finally:
                dev.stop()
    counts = {kind: sum(1 for ln in lines if re.search(rx, ln)) for kind, rx in _KINDS}
    pings = counts["PINGREQ"] + counts["PINGRESP"]
    per_cycle = (sum(counts.values()) - pings) / max(cycles, 1)
    publishes = (counts["PUBLISH in"] + counts["PUBLISH out"]) / max(cycles, 1)
    # A PINGREQ goes after keepalive/2 of silence, noticed at the next 1 s poll: the
    # measured period minus keepalive/2 is that granularity, the same at any keep-alive.
    period = window_s / max(counts["PINGREQ"], 1)
    late = period - keepalive_s / 2
    print(
        f"at rest, one device, {window_s:.0f} s with keep-alive {keepalive_s} s and check "
        f"interval {interval_s} s: {cycles} check cycle(s)"
    )
    for kind, _ in _KINDS:
        print(f"  {kind:<12} {counts[kind]}")
    print(f"  a PINGREQ every {period:.1f} s; {per_cycle:.1f} packets per check cycle")
    day_pings = 2 * DAY / (300 / 2 + late)
    day_checks = per_cycle * DAY / 14400
    print(
        f"scaled to the defaults (keep-alive 300 s, check interval 4 h): "
        f"{day_pings:.0f} keep-alive packets + {day_checks:.0f} check-cycle packets "
        f"= {day_pings + day_checks:.0f} packets per device per day, of which "
        f"{publishes * DAY / 14400:.0f} PUBLISH messages"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=3)
    args = parser.parse_args()
    with_hint, polling = rollout_times(args.devices)
    print(f"{args.devices} devices, publish returned -> all confirmed on the new release:")
    print(f"  with the push hint (spread 60 s, interval 4 h): {with_hint:.1f} s")
    print(f"  polling alone (interval 60 s, the minimum):     {polling:.1f} s")
    print("  polling alone at the default 4 h interval: up to 5 h (median 2 h, docs/lifecycle.md)")
    rest_messages()


if __name__ == "__main__":
    main()
