"""The ESP32 and ESP8266 HALs, run on the unix port with fake `machine`/`network`/`esp32`/`esp`
modules that follow the official stubs (micropython-esp32-stubs, micropython-esp8266-stubs):
the code that ships to boards has run at least once."""

from __future__ import annotations

from typing import Any

import pytest

FAKES = """
import sys

class _Module:
    pass

calls = []

machine = _Module()
machine.PWRON_RESET = 1
machine.HARD_RESET = 2
machine.WDT_RESET = 3
machine.DEEPSLEEP_RESET = 4
machine.SOFT_RESET = 5
machine.cause = 1

class _Reset(Exception):
    pass

def _reset():
    calls.append("reset")
    raise _Reset()

machine.reset = _reset
machine.reset_cause = lambda: machine.cause
machine.unique_id = lambda: b"\\xa4\\xcf\\x12\\xb3\\xc4\\xd5"

network = _Module()
network.STA_IF = 0
network.AP_IF = 1

class WLAN:
    def __init__(self, interface_id=0):
        self.interface_id = interface_id

network.WLAN = WLAN

class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    def __init__(self, id, block_size=4096):
        self.id = id
    def get_next_update(self):
        return Partition("ota_1")
    def info(self):
        return (0, 0, 0x200000, 0x1F0000, self.id, False)
    @staticmethod
    def mark_app_valid_cancel_rollback():
        calls.append("valid")

esp32 = _Module()
esp32.Partition = Partition
esp = _Module()
esp.osdebug = lambda level: None

sys.modules["machine"] = machine
sys.modules["network"] = network
"""

EXERCISE = """
from lcm_device.hal import get
hal = get()
print("class", type(hal).__name__, hal.board, repr(hal.root))
print("cause", hal.reset_cause())
machine.cause = machine.SOFT_RESET
print("cause", hal.reset_cause())
print("id", hal.unique_id())
print("wlan", hal.wlan(0).interface_id, hal.wlan(1).interface_id)
t = hal.time()
print("time", t is None or t > 1704067200, hal.free_bytes() > 0)
try:
    hal.reset()
except _Reset:
    print("reset", calls)
import os
d = "{work}/flash"
hal.fs.mkdir(d)
f = hal.fs.open_write(d + "/a")
f.write(b"one")
f.close()
hal.fs.rename(d + "/a", d + "/b")
f = hal.fs.open_append(d + "/b")
f.write(b"two")
f.close()
print("fs", open(d + "/b").read(), os.listdir(d))
hal.fs.remove(d + "/b")
hal.fs.rmdir(d)
"""


@pytest.mark.parametrize("board", ["esp32", "esp8266"])
def test_board_hal_runs_against_stub_shaped_modules(mpy: Any, board: str) -> None:
    install = 'sys.modules["esp32"] = esp32\n' if board == "esp32" else 'sys.modules["esp"] = esp\n'
    extra = ""
    if board == "esp32":
        extra = (
            "P = hal.partitions()\n"
            "print('ota', P(P.RUNNING).id, P(P.RUNNING).get_next_update().id)\n"
            "P.mark_app_valid_cancel_rollback()\nprint('valid', calls)\n"
        )
    else:
        extra = "print('ota', hal.partitions())\n"
    code = FAKES + install + EXERCISE.replace("{work}", str(mpy.workdir)) + extra
    out = mpy.run(code).stdout.splitlines()
    cls = "Esp32Hal" if board == "esp32" else "Esp8266Hal"
    assert out[0] == f"class {cls} {board} ''"
    assert out[1:3] == ["cause power", "cause reset"]
    assert out[3] == "id b'\\xa4\\xcf\\x12\\xb3\\xc4\\xd5'"
    assert out[4] == "wlan 0 1"
    assert out[5] == "time True True"
    assert out[6] == "reset ['reset']"
    assert out[7] == "fs onetwo ['b']"
    if board == "esp32":
        assert out[8:] == ["ota 1 ota_1", "valid ['reset', 'valid']"]
    else:
        assert out[8:] == ["ota None"]


NTP = """
ntptime = _Module()
ntptime.fail = False
def _settime():
    calls.append("ntp timeout " + str(ntptime.timeout))
    if ntptime.fail:
        raise OSError(110)
ntptime.settime = _settime
sys.modules["ntptime"] = ntptime
sys.modules["esp32"] = esp32
from lcm_device.hal import get
hal = get()
print("synced", hal.sync_clock())
ntptime.fail = True
print("synced", hal.sync_clock())
print(calls)
"""


def test_board_clock_set_from_ntp_and_failure_is_not_an_error(mpy: Any) -> None:
    out = mpy.run(FAKES + NTP).stdout.splitlines()
    # The unix port's clock is already set, so the HAL reports a known time after the call.
    assert out == ["synced True", "synced False", "['ntp timeout 2', 'ntp timeout 2']"]
