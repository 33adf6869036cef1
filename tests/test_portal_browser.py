"""The captive portal in a real browser: Chromium (Debian) through Playwright, phone-sized.

The device runs in the MicroPython unix port with its data heap at the
24 KB bar (tests/test_portal_support.py, DATA_HEAP). Screenshots go to the
test's folder; docs/img/portal.png is one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from publisher.device.setup_sim import SetupSim
from tests.test_portal_support import (  # noqa: F401  (fixtures)
    HOME_PASSWORD,
    XSS_SSID,
    portal,
    portal_build,
    read_config,
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, java_script_enabled=False)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def choose(page: Page, ssid: str) -> None:
    page.locator("label.n", has_text=ssid).first.locator("input[type=radio]").check()


def test_page_lists_networks_strongest_first_escaped(
    portal: SetupSim,  # noqa: F811
    phone: Page,
    tmp_path: Path,
) -> None:
    phone.goto(portal.url)
    names = phone.locator("label.n span:first-of-type").all_inner_texts()
    # Deduplicated, strongest first, hidden networks not listed, then the hidden-network choice.
    assert names == [
        "home",
        XSS_SSID,
        'Café ☕ & "quotes"',
        "cafe",
        "Other (hidden) network",
    ]
    # The attacker's SSID is text: no script element, no dialog, shown verbatim.
    assert phone.locator("script").count() == 0
    assert phone.get_by_text(XSS_SSID, exact=True).is_visible()
    assert phone.dialogs == []  # type: ignore[attr-defined]
    # Secured networks carry the lock; open ones say so.
    home = phone.locator("label.n", has_text="home").first
    assert home.locator("[aria-label=secured]").count() == 1
    assert phone.locator("label.n", has_text="cafe").first.locator(".l").count() == 0
    assert "open" in phone.locator("label.n", has_text="cafe").first.inner_text()
    # Fits the phone: nothing wider than the 360 px viewport.
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    # Trust on first use is marked as such next to the fingerprint field.
    assert "Trust on first use" in phone.locator("label.w").inner_text()
    phone.screenshot(path=str(tmp_path / "portal.png"), full_page=True)


def test_wrong_password_keeps_old_credentials_then_right_one_connects(
    portal: SetupSim,  # noqa: F811
    phone: Page,
    tmp_path: Path,
) -> None:
    state = portal.state
    before = read_config(state)
    phone.goto(portal.url)
    choose(phone, "home")
    phone.fill("#password", "not-the-password")
    phone.fill("#repo", "octo-org/greenhouse")
    phone.locator("input[name=tofu]").check()
    phone.locator("button[type=submit]", has_text="Connect").click()
    assert phone.locator("h1").inner_text() == "Not connected"
    assert "wrong password" in phone.locator("p.e").inner_text()
    phone.screenshot(path=str(tmp_path / "portal-failed.png"), full_page=True)
    assert read_config(state) == before  # nothing saved
    assert portal.process.poll() is None  # still in setup mode

    phone.locator("button", has_text="Back").click()
    choose(phone, "home")
    phone.fill("#password", HOME_PASSWORD)
    phone.fill("#repo", "octo-org/greenhouse")
    phone.select_option("#channel", "beta")
    phone.locator("input[name=tofu]").check()
    phone.locator("button[type=submit]", has_text="Connect").click()
    assert phone.locator("h1").inner_text() == "Connected"
    phone.screenshot(path=str(tmp_path / "portal-connected.png"), full_page=True)
    assert portal.wait() == 0
    assert "RESULT connected" in portal.output()
    cfg = read_config(state)
    assert cfg["wifi_ssid"] == "home"
    assert cfg["wifi_password"] == HOME_PASSWORD
    assert cfg["repo"] == "octo-org/greenhouse"
    assert cfg["channel"] == "beta"
    assert cfg["app_trust_first_use"] is True


def test_validation_error_is_shown_and_typed_values_kept(
    portal: SetupSim,  # noqa: F811
    phone: Page,
) -> None:
    phone.goto(portal.url)
    choose(phone, "home")
    phone.fill("#password", HOME_PASSWORD)
    phone.fill("#repo", "not a repo <b>")
    phone.locator("input[name=tofu]").check()
    phone.locator("button[type=submit]", has_text="Connect").click()
    assert "repository is owner/name" in phone.locator("p.e").inner_text()
    assert phone.input_value("#repo") == "not a repo <b>"  # escaped in the value, kept
    assert phone.locator("b", has_text="not a repo").count() == 0
    assert phone.input_value("#password") == ""  # a password is never echoed back
    assert portal.process.poll() is None
