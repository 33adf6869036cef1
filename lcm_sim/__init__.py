"""The simulated board: what stands in for hardware when the device code runs on the unix port.

Never shipped to a board (not in factory images, the mip package or the
freeze manifest): the unix HAL (`unix.py`: flash in a folder, resets as
process exits, power cuts on demand), the scripted fake radio
(`fakeradio.py`), ESP32 OTA partitions as files (`simpartition.py`), the ROM
model of a frozen manager (`rommodel.py`) and the setup-mode entry point
(`setup_mode.py`). `lcm device simulate` and the tests put it on the unix
port's path beside the manager slot, as a board's firmware sits beside its
filesystem.

The constants below are shared with the CPython side of the simulator
(publisher/device/), which imports them from here instead of copying them.
"""

# Exit codes of a simulated boot: a reset (restart me), an injected power cut
# (restart me, RTC memory lost). 0: the app returned.
EXIT_RESET = 75
EXIT_POWER_CUT = 76
# RTC memory: a file in the flash folder that survives a reset, not a power cut.
RTC_FILE = "/.rtc"
# The fake radio's script, below the flash folder (unless $LCM_RADIO_SCRIPT names one).
RADIO_SCRIPT = "/lcm/state/radio.json"
