"""The simulated board: what stands in for hardware when the device code runs on the unix port.

Never shipped to a board (not in factory images, the mip package or the
freeze manifest): the unix HAL (`unix.py`: flash in a folder, resets as
process exits, power cuts on demand), the scripted fake radio
(`fakeradio.py`), ESP32 OTA partitions as files (`simpartition.py`), the ROM
model of a frozen manager (`rommodel.py`), the board's periodic timer (`boardtimer.py`) and the
setup-mode entry point (`setup_mode.py`). `lcm device simulate` and the tests put it on the unix
port's path beside the manager slot, as a board's firmware sits beside its
filesystem.

The constants below are shared with the CPython side of the simulator
(publisher/device/), which imports them from here instead of copying them.
"""

# Exit codes of a simulated boot: a reset (restart me), an injected power cut
# (restart me as after a power-on). 0: the app returned.
EXIT_RESET = 75
EXIT_POWER_CUT = 76
# A reset (or power cut) from the board timer's callback ends the process with this
# signal (lcm_sim/boardtimer.py): an exception cannot leave a scheduled callback.
RESET_SIGNAL = "USR1"
POWER_CUT_SIGNAL = "USR2"
# LCM_BOARD: how much of a board the simulator asks for. "run": the check timer runs,
# a device without an app waits for its next check, and the board stays on after its
# app returns (lcm device simulate without --once). "once": the board is taken as
# staying on after the run, so its power-on is not left counted as a quick power cycle.
BOARD_RUN = "run"
BOARD_ONCE = "once"
# The fake radio's script, below the flash folder (unless $LCM_RADIO_SCRIPT names one).
RADIO_SCRIPT = "/lcm/state/radio.json"
