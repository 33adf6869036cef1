"""Staged roll-outs end to end: `lcm release publish --rollout`, `lcm release rollout`, the
push hint through mosquitto, and simulated devices (MicroPython unix port) on `lcm host`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cert_sector.rollout import bucket
from publisher import signing
from publisher.cli import app
from tests.device.fleetkit import LiveDevice, idle_app
from tests.hostserver import TEST_TOKEN, running_host
from tests.keyfactory import make_sector
from tests.mqttbroker import PUBLISHER, running_broker

REPO = "acme/widget"


def _macs() -> tuple[str, list[str]]:
    """One device inside 10 % of v1.1.0 and of v1.2.0, two outside both (by the same hash
    the devices use): found by counting, so the test states which devices must move."""
    inside, outside = None, []
    for n in range(1, 2000):
        mac = f"240ac4{n:06x}"
        b = (bucket(mac, REPO, "v1.1.0"), bucket(mac, REPO, "v1.2.0"))
        if inside is None and max(b) < 10:
            inside = mac
        elif min(b) >= 10 and len(outside) < 2:
            outside.append(mac)
        if inside and len(outside) == 2:
            return inside, outside
    raise AssertionError("no device ids found")


def test_a_10_percent_rollout_reaches_its_share_then_100_then_a_halt(
    tmp_path: Path, mpy: Any
) -> None:
    inside, outside = _macs()
    keys = tmp_path / "keys"
    _, _, root = signing.generate(keys, "root", None)
    key, _, signer = signing.generate(keys, "release", None)
    sector = tmp_path / "certs.sector"
    sector.write_bytes(make_sector(REPO, [root], [signer]))
    with running_host(tmp_path) as host, running_broker(tmp_path) as broker:
        env = {
            "GITHUB_TOKEN": TEST_TOKEN,
            "LCM_GITHUB_API": host.api_url,
            "LCM_MQTT_URL": broker.url,
            "LCM_MQTT_USER": PUBLISHER[0],
            "LCM_MQTT_PASSWORD": PUBLISHER[1],
        }

        def lcm(*args: str) -> dict[str, Any]:
            result = CliRunner().invoke(app, [*args, "--json"], env=env)
            assert result.exit_code == 0, result.output
            return json.loads(result.stdout)

        def publish(version: str, *extra: str) -> dict[str, Any]:
            folder = tmp_path / f"app-{version}"
            for name, data in idle_app(version).items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            return lcm(
                "release", "publish", str(folder), "--repo", REPO, "--tag", f"v{version}",
                "--key", str(key), "--certs", str(sector), "--retry-delay", "0", *extra,
            )  # fmt: skip

        publish("1.0.0")
        devs = []
        for mac in [inside, *outside]:
            broker.add_device(REPO, mac, "pw")
            devs.append(
                LiveDevice(
                    tmp_path / mac,
                    mpy,
                    host,
                    REPO,
                    root.public_key,
                    mac,
                    mqtt_url=broker.url,
                    mqtt_user=mac,
                    mqtt_password="pw",
                    push_spread_s=1,
                    push_min_gap_s=3,
                )
            )
        try:
            for d in devs:
                d.start()
            for d in devs:
                d.wait_for(r"APP v1\.0\.0 running", 60)
                d.wait_for(r"mqtt: connected", 30)
            # 10 %: the hint reaches all three; only the device whose hash is below 10 takes it.
            marks = [len(d.lines) for d in devs]
            assert publish("1.1.0", "--rollout", "10")["hint"] == "v1.1.0 rollout 10"
            devs[0].wait_for(r"v1\.1\.0 rolls out to 10 %, this device included", 60, marks[0])
            devs[0].wait_for(r"APP v1\.1\.0 running", 60, marks[0])
            for d, mark in zip(devs[1:], marks[1:], strict=True):
                d.wait_for(r"v1\.1\.0 rolls out to 10 %, not to this device yet", 60, mark)
                d.wait_for(r"APP v1\.0\.0 running", 30, mark)
                assert d.boot_state()["app_tag"] == "v1.0.0"
            # 100 %: a signed widening, its hint, and every device takes it.
            marks = [len(d.lines) for d in devs]
            out = lcm("release", "rollout", "v1.1.0", "100", "--repo", REPO, "--key", str(key))
            assert (out["sequence"], out["share"], out["previous"]) == (2, 100, "10 %")
            for d, mark in zip(devs[1:], marks[1:], strict=True):
                d.wait_for(r"v1\.1\.0 rolls out to 100 %, this device included", 60, mark)
                d.wait_for(r"APP v1\.1\.0 running", 60, mark)
            assert all(d.boot_state()["app_tag"] == "v1.1.0" for d in devs)
            # Halted: the device on it keeps it (and takes the next release); the others
            # never take it, whatever hint comes.
            marks = [len(d.lines) for d in devs]
            publish("1.2.0", "--rollout", "10")
            devs[0].wait_for(r"APP v1\.2\.0 running", 60, marks[0])
            for d, mark in zip(devs[1:], marks[1:], strict=True):
                d.wait_for(r"v1\.2\.0 rolls out to 10 %, not to this device yet", 60, mark)
            marks = [len(d.lines) for d in devs]
            out = lcm("release", "rollout", "v1.2.0", "--halt", "--repo", REPO, "--key", str(key))
            assert (out["halted"], out["hint"]) == (True, "v1.2.0 rollout halted")
            for d, mark in zip(devs[1:], marks[1:], strict=True):
                d.wait_for(r"the roll-out of v1\.2\.0 is halted; not installing it", 60, mark)
            # Widening after a halt is refused (a halt is final).
            refused = CliRunner().invoke(
                app, ["release", "rollout", "v1.2.0", "50", "--repo", REPO, "--key", str(key)],
                env=env,
            )  # fmt: skip
            assert refused.exit_code == 1 and "is halted: publish a fixed release" in refused.output
            marks = [len(d.lines) for d in devs]
            publish("1.3.0")
            for d, mark in zip(devs, marks, strict=True):
                d.wait_for(r"APP v1\.3\.0 running", 60, mark)
            assert [d.boot_state().get("app_bad") for d in devs] == [None, None, None]
            assert "v1.2.0" not in "".join(
                line for d in devs[1:] for line in d.lines if "APP" in line
            )
        finally:
            for d in devs:
                d.stop()
