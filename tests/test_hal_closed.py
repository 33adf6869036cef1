"""The HAL is closed: one base class names every member the device code may use.

Every HAL (ESP32, ESP8266, unix) subclasses `BoardHal` and adds no public
member of its own, and the device code never probes a HAL for a member.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lcm_device.hal.board import BoardHal
from lcm_device.hal.esp32 import Esp32Hal
from lcm_device.hal.esp8266 import Esp8266Hal
from lcm_sim.unix import UnixHal

REPO = Path(__file__).resolve().parent.parent
PROBE = re.compile(r"\b(getattr|hasattr)\(\s*(self\.)?hal\b")


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize("hal", [Esp32Hal, Esp8266Hal, UnixHal])
def test_every_hal_is_a_board_hal_with_no_member_of_its_own(hal: type) -> None:
    assert issubclass(hal, BoardHal)
    assert public(hal) - public(BoardHal) == set()


def test_the_documented_members_are_the_base_class_members() -> None:
    text = (REPO / "docs" / "device.md").read_text()
    section = text.split("## HAL (`lcm_device/hal/`)")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)", row.split(" | ")[0])}
    assert public(BoardHal) | {"fs"} == documented


def test_no_device_module_probes_the_hal() -> None:
    probes = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "lcm_device").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PROBE.search(line)
    ]
    assert probes == []
