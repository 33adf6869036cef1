"""What ships to a board is board code only; the simulator stays on the host.

The simulated board (lcm_sim: unix HAL, fake radio, simulated partitions,
ROM model) never reaches a factory image, the mip package, a manager slot or
the freeze manifest, and the publisher shares formats with the device
through cert_sector, never by importing lcm_device.
"""

from __future__ import annotations

import re
from pathlib import Path

from publisher.device.image import device_files, mip_package
from publisher.device.settings import DeviceSettings
from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT

SIM_NAMES = re.compile(r"lcm_sim|fakeradio|simpartition|rommodel|hal/unix")


def test_the_factory_image_and_the_mip_package_hold_no_simulator_module() -> None:
    files = device_files(DeviceSettings(board="esp8266", repo="owner/app", app_roots=[]))
    assert any(path.endswith("lcm_device/boot.mpy") for path in files)
    assert [p for p in files if SIM_NAMES.search(p)] == []
    urls = mip_package()["urls"]
    assert [u for u in urls if SIM_NAMES.search(u[0] + u[1])] == []
    assert (REPO_ROOT / "package.json").read_text().count("lcm_sim") == 0


def test_the_freeze_manifest_freezes_board_packages_without_simulator_modules() -> None:
    manifest = (REPO_ROOT / "manifest.py").read_text()
    frozen = re.findall(r'^package\("(\w+)"(?:, opt=3)?\)', manifest, re.M)
    assert frozen == list(DEVICE_PACKAGES)
    for package in frozen:
        paths = [p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / package).rglob("*.py")]
        assert [p for p in paths if SIM_NAMES.search(p)] == []


def test_nothing_in_the_publisher_imports_the_device_package() -> None:
    imports = re.compile(r"^\s*(from|import)\s+lcm_device\b", re.M)
    found = [
        str(p.relative_to(REPO_ROOT))
        for p in sorted(Path(REPO_ROOT / "publisher").rglob("*.py"))
        if imports.search(p.read_text())
    ]
    assert found == []


def test_the_simulator_reads_the_device_defaults_it_compares_with() -> None:
    """`lcm device simulate` reads lcm_device.config.DEFAULTS from the device's source (it may
    not import the device package): the same dict the device boots with."""
    from lcm_device.config import DEFAULTS
    from publisher.device.simulate import device_defaults

    assert device_defaults() == DEFAULTS
