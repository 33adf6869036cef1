"""The unix-port HAL: flash is a folder, a reset is a process exit, power cuts on demand.

`lcm device simulate` and the tests run the device in the MicroPython unix
port with the device's flash in a folder (`LCM_ROOT`, else the current
directory). A reset exits with EXIT_RESET and the simulator restarts the
process like a board would.

Fault injection (`LCM_FAULT_AT`, `LCM_FLASH_FAIL`): lcm_sim/faults.py, whose
counting flash the HAL uses only when one of them is set (even to 0, which
counts the mutations and cuts none). Otherwise the flash is a board's plain
`Fs`: the simulated board does not carry the injector in its heap.

A board (`LCM_BOARD`, set by `lcm device simulate`; lcm_sim.BOARD_RUN and
BOARD_ONCE): with "run" the HAL has a periodic timer (lcm_sim/boardtimer.py)
that polls the check timer while the app runs, a device without an app waits
for its next check (`waits_without_app`), and when the app returns the
process stays up with its timer running, as a board's REPL does, until the
timer resets it; that timer settles the gesture counter SETTLE_S after the
boot, as on a board, so a power cut (Ctrl-C) before then is still a quick
power cycle even when the app returned at once. With either value, a
process that ends without a reset or a power cut, and with no timer left
running, left the board powered: the gesture counter is settled then, as
the board's timer would settle it QUICK_S seconds later, so the next run's
power-on does not count as a quick power cycle. Without it (the tests), the
process ends when the app returns and nothing polls the check timer unless
the app calls `lcm.idle`. A board without a radio script is on the host's
network from power-on: its log lines go out over UDP (to `log_host`) from
the first one, as a board's do once its Wi-Fi is up.
"""

import hashlib
import os
import time

from lcm_device.hal.board import BoardHal
from lcm_device.hal.fs import Fs
from lcm_sim import BOARD_RUN, EXIT_RESET, RADIO_SCRIPT


class UnixHal(BoardHal):
    board = "unix"
    # Without an app the process ends: `lcm device simulate` restarts it (or stops, --once).
    waits_without_app = False

    def __init__(self, root=None):
        getenv = getattr(os, "getenv", None)
        env = getenv if getenv else (lambda name: os.environ.get(name))
        self.root = (root or env("LCM_ROOT") or os.getcwd()).rstrip("/")
        fault_at, fail = env("LCM_FAULT_AT"), env("LCM_FLASH_FAIL")
        self._faults = None
        if fault_at is None and fail is None:
            self.fs = Fs()  # a board's flash (lcm_device.hal.fs): nothing counts
        else:
            from lcm_sim.faults import FaultyFs

            self.fs = self._faults = FaultyFs(int(fault_at or 0), fail or "")
        self._clock = env("LCM_CLOCK") != "unknown"
        self._mac = env("LCM_MAC")
        # Set by the simulator: why this process started, and a check requested from outside.
        self._cause = env("LCM_BOOT_CAUSE") or "power"
        # A flash of this many KB (the folder lives on a big host disk otherwise).
        self._flash_kb = int(env("LCM_FLASH_KB") or 0)
        self.check_now = env("LCM_CHECK_NOW") == "1"
        self._board = env("LCM_BOARD") or ""
        self.waits_without_app = self.own_timer = self._board == BOARD_RUN
        self._timers = []
        self._resetting = False
        if self._board:
            import sys

            sys.atexit(self._at_exit)
            if not self.has_radio():
                # No radio: the host's network is up from power-on, so the log lines go
                # out over UDP as a board's do once its Wi-Fi joined (wifi.connect_or_setup).
                from lcm_device import log

                log.online(True)
        if env("LCM_DATA_HEAP"):
            # A board running the manager from ROM: only this much heap for data.
            from lcm_sim.rommodel import from_env

            from_env()

    def sync_clock(self):
        """The simulated clock is the host's, or stays unknown (LCM_CLOCK=unknown)."""
        return self._clock

    def reset(self):
        print("lcm-hal: reset")
        self._resetting = True
        raise SystemExit(EXIT_RESET)

    def timer(self, period_ms, callback):
        """A thread-driven periodic timer when simulating a board that runs (LCM_BOARD=run);
        None otherwise (the tests: the app polls with lcm.idle)."""
        if self._board != BOARD_RUN:
            return None
        from lcm_sim.boardtimer import ThreadTimer

        t = ThreadTimer(period_ms, callback)
        self._timers.append(t)
        import sys

        sys.atexit(self._at_exit)  # again: MicroPython keeps one exit function, the last set
        return t

    def _at_exit(self):
        # The main script ended. A reset or a power cut ended the board too; otherwise it is
        # still powered: a board's timer keeps running at the REPL (and settles the gesture
        # count SETTLE_S after the boot), so this process does the same until the timer
        # resets it. Settling here instead would hide a quick power cycle after an app that
        # returns at once. With no timer running, the process ends now and the board is left
        # powered for good: settled now, as its timer would have settled it.
        # An exception out of an exit function is fatal to the unix port: none leaves here.
        if self._resetting or (self._faults is not None and self._faults.dead):
            return
        if not any(t.running for t in self._timers):
            try:
                from lcm_device import gestures

                gestures.settle(self, gestures.QUICK_S)
            except Exception as exc:
                print("lcm-hal: cannot settle the gesture count: " + repr(exc))
            return
        print("lcm-hal: main.py ended; the board stays on, its check timer running")
        try:
            while True:
                time.sleep_ms(1000)
        except BaseException:
            return

    def time(self):
        """Unix seconds (the host's clock), or None when the simulation says it is unknown."""
        return int(time.time()) if self._clock else None

    def unique_id(self):
        if self._mac:
            import binascii

            return binascii.unhexlify(self._mac)
        return hashlib.sha256(self.root.encode()).digest()[:6]

    def wlan(self, mode):
        # The scripted radio (Wi-Fi setup tests); imported only when Wi-Fi is used.
        from lcm_sim.fakeradio import wlan

        return wlan(mode, self.root)

    def partitions(self):
        """ESP32 OTA partitions simulated with files (lcm_sim.simpartition)."""
        from lcm_sim.simpartition import SimPartitions

        return SimPartitions(self.root, self.fs)

    def free_bytes(self):
        """Free flash: LCM_FLASH_KB minus what the folder holds, else the host disk's."""
        from lcm_device.compat import free_bytes

        if self._faults is not None and self._faults.full():
            return 0
        if not self._flash_kb:
            return free_bytes(self.root)
        return self._flash_kb * 1024 - _tree_size(self.root)

    def boot_firmware(self):
        """Play ESP-IDF's bootloader at the start of a boot, once a firmware was written."""
        from lcm_device.compat import exists

        if exists(self.root + "/lcm/state/otadata.json"):
            self.partitions().bootloader()

    def reset_cause(self):
        """ "power" after a power-on or power cut, "reset" after a reset (the simulator knows)."""
        return self._cause

    def portal_args(self):
        """The setup portal's ports from LCM_PORTAL="HTTP,DNS" (on 127.0.0.1), else the defaults."""
        getenv = getattr(os, "getenv", None)
        ports = getenv("LCM_PORTAL") if getenv else os.environ.get("LCM_PORTAL")
        if not ports:
            return {}
        http_port, dns_port = ports.split(",")
        return {"http_port": int(http_port), "dns_port": int(dns_port), "bind": "127.0.0.1"}

    def has_radio(self):
        """Whether a radio script exists; without one the network counts as up.

        The path rule is fakeradio.script_path's, repeated here so that a boot
        without Wi-Fi does not pay for importing the fake radio.
        """
        from lcm_device.compat import exists

        getenv = getattr(os, "getenv", None)
        path = getenv("LCM_RADIO_SCRIPT") if getenv else os.environ.get("LCM_RADIO_SCRIPT")
        return exists(path or self.root + RADIO_SCRIPT)


def _tree_size(path):
    from lcm_device.compat import file_size, is_dir, listdir

    if not is_dir(path):
        return max(file_size(path), 0)
    return sum(_tree_size(path + "/" + name) for name in listdir(path))
