"""Station first, setup mode as the fallback, in the unix port with the scripted radio.

Changes of the air (a router coming back) are made by rewriting the radio
script after the device has printed that it reached the state under test,
so the order of events never depends on timing.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from lcm_device.wifi import derived_password
from publisher.device.setup_sim import SetupSimError, start_setup
from tests.test_portal_support import (  # noqa: F401  (fixtures)
    FORM,
    RADIO,
    form_body,
    http,
    make_state,
    portal_build,
    read_config,
    set_radio,
    token,
)

STORED = {"wifi_ssid": "home", "wifi_password": RADIO["networks"][1]["password"]}


def radio_with_home(up: bool) -> dict[str, Any]:
    radio = copy.deepcopy(RADIO)
    for net in radio["networks"]:
        if net["ssid"] == "home":
            net["down"] = not up
    return radio


def air(state: Path) -> dict[str, Any]:
    """The setup network as a phone sees it (written by the fake radio)."""
    return json.loads((state / "lcm/state/radio-ap.json").read_text())


def test_station_waits_for_a_router_that_is_still_booting(
    portal_build: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = make_state(tmp_path, {**STORED, "wifi_wait_s": 120}, radio_with_home(up=False))
    sim = start_setup(state, mode="connect", build_dir=portal_build, ready=False)
    try:
        sim.wait_for(r"attempt 1 to join 'home' failed: network not found")
        set_radio(state, radio_with_home(up=True))  # the router has booted
        assert sim.wait() == 0
        out = sim.output()
        assert "RESULT connected" in out
        assert "wifi: connected to 'home'" in out
        assert "portal:" not in out  # never needed the setup network
    finally:
        sim.stop()


def test_falls_back_to_setup_and_leaves_it_when_the_stored_network_returns(
    portal_build: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    cfg = {**STORED, "wifi_wait_s": 1, "wifi_retry_s": 1}
    state = make_state(tmp_path, cfg, radio_with_home(up=False))
    sim = start_setup(state, mode="connect", build_dir=portal_build)
    try:
        assert air(state)["active"] is True
        status, _, page = http(sim.url)
        assert status == 200 and "Set up LCM-B3C4D5" in page
        set_radio(state, radio_with_home(up=True))
        assert sim.wait() == 0
        out = sim.output()
        assert "portal: the stored network is back" in out
        assert "RESULT connected" in out
        assert air(state)["active"] is False  # the setup network is gone
        assert read_config(state) == cfg  # nothing rewritten
    finally:
        sim.stop()


def test_setup_mode_ends_after_its_timeout(portal_build: Path, tmp_path: Path) -> None:  # noqa: F811
    state = make_state(tmp_path, {"setup_timeout_s": 1})
    sim = start_setup(state, build_dir=portal_build)
    try:
        assert sim.wait() == 0
        out = sim.output()
        assert "wifi: setup mode timed out" in out and "RESULT timeout" in out
        assert air(state)["active"] is False
    finally:
        sim.stop()


def test_setup_network_is_wpa2_with_the_derived_password_by_default(
    portal_build: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = make_state(tmp_path, {})
    with start_setup(state, build_dir=portal_build) as sim:
        mac = bytes.fromhex(RADIO["mac"])
        expected = derived_password(mac)
        assert expected == _derive_independently(mac)
        assert sim.ap_name == "LCM-B3C4D5"
        assert sim.ap_password == expected
        shown = air(state)
        assert shown == {
            "active": True,
            "essid": "LCM-B3C4D5",
            "authmode": 3,
            "password": expected,
            "channel": 1,
        }


def _derive_independently(mac: bytes) -> str:
    # docs/portal.md: SHA-256 of "lcm setup network v1:" + MAC, 12 characters of the alphabet.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    digest = hashlib.sha256(b"lcm setup network v1:" + mac).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:12])


@pytest.mark.parametrize(
    ("cfg", "authmode", "password"),
    [
        ({"setup_password": "printed-on-label"}, 3, "printed-on-label"),
        ({"setup_password": "short"}, 3, None),  # invalid: the derived one, and a warning
        ({"setup_open": True}, 0, ""),
        ({"setup_open": "yes"}, 3, None),  # only a real true opens it
    ],
)
def test_setup_network_password_settings(
    portal_build: Path,  # noqa: F811
    tmp_path: Path,
    cfg: dict[str, Any],
    authmode: int,
    password: str | None,
) -> None:
    state = make_state(tmp_path, cfg)
    with start_setup(state, build_dir=portal_build) as sim:
        expected = derived_password(bytes.fromhex(RADIO["mac"])) if password is None else password
        shown = air(state)
        assert shown["authmode"] == authmode
        assert shown["password"] == expected
        if authmode == 0:
            assert "OPEN: setup_open is set" in sim.output()
        if cfg.get("setup_password") == "short":
            assert "setup_password in the config is not 8..63 characters" in sim.output()


def test_success_with_a_new_network_replaces_the_stored_one(
    portal_build: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    cfg = {"wifi_ssid": "gone", "wifi_password": "old-password", "repo": "octo/app"}
    state = make_state(tmp_path, cfg)
    with start_setup(state, build_dir=portal_build) as sim:
        page = http(sim.url)[2]
        assert 'name="repo"' not in page  # repo already provisioned: not offered
        body = form_body({"t": token(page), "ssid": "cafe", "password": "", "repo": "evil/app"})
        status, _, result = http(sim.url + "save", body, FORM)
        assert status == 200 and "<h1>Connected</h1>" in result
        assert sim.wait() == 0
    saved = read_config(state)
    assert saved["wifi_ssid"] == "cafe" and saved["wifi_password"] == ""
    assert saved["repo"] == "octo/app"  # cannot be repointed from the air


def test_bad_radio_script_is_named(portal_build: Path, tmp_path: Path) -> None:  # noqa: F811
    state = make_state(tmp_path, {})
    (state / "lcm/state/radio.json").write_text("{not json")
    with pytest.raises(SetupSimError, match=r"radio script .*radio\.json is not valid JSON"):
        start_setup(state, build_dir=portal_build)
