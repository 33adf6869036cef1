"""The HAL's closed interface: every member the device code may use, with the boards' defaults.

`BoardHal` names all of them (docs/device.md, "HAL"); the ESP32, ESP8266
and unix HALs subclass it and override what differs, so the device code
calls members plainly and never probes for one. The defaults are stock
MicroPython's `machine` and `network` on a board:

Flash is the board's own filesystem (LittleFS by default, whose rename
replaces its target atomically), rooted at "". Only documented APIs are used
(`machine.reset`, `machine.reset_cause`, `machine.unique_id`,
`machine.RTC().memory`, `machine.Pin`, `network.WLAN`), so the same code
runs on every release of the firmware; tests run it on the unix port with
fake modules that follow the official stubs.
"""

import time

from lcm_device.hal.fs import Fs

# Seconds from 1970-01-01 to 2000-01-01: ports whose time epoch is 2000.
_EPOCH_2000 = 946684800
# Before this (2024-01-01, Unix seconds) the clock was never set (no NTP yet).
_CLOCK_SET_AFTER = 1704067200


class BoardHal:
    board = "board"
    root = ""
    # Without an app the boot waits for the next check, then resets (boot._wait_for_check).
    waits_without_app = True
    # A check asked for from outside at this boot (the simulator's LCM_CHECK_NOW).
    check_now = False
    # Whether `timer()` gives the board's periodic timer (a simulated board); False: the
    # check timer arms machine.Timer itself (the app boot then needs no HAL for it).
    own_timer = False

    def __init__(self):
        self.fs = Fs()

    def reset(self):
        import machine

        machine.reset()

    def reset_cause(self):
        """ "power" after a power-on (what gestures count), else "reset"."""
        import machine

        return "power" if machine.reset_cause() == machine.PWRON_RESET else "reset"

    def time(self):
        """Unix seconds once the clock has been set (NTP), else None."""
        t = int(time.time())
        if time.gmtime(0)[0] == 2000:
            t += _EPOCH_2000
        return t if t >= _CLOCK_SET_AFTER else None

    def sync_clock(self):
        """Set the clock from NTP once the network is up (stock `ntptime`); True on success.

        Without it the clock stays unknown and cert-sector expiry (rule S7)
        cannot be enforced; a failure is not an error, the next boot tries again.
        """
        try:
            import ntptime

            ntptime.timeout = 2
            ntptime.settime()
        except (ImportError, OSError, OverflowError):
            return False
        return self.time() is not None

    def unique_id(self):
        import machine

        return bytes(machine.unique_id())

    def free_bytes(self):
        """Free bytes of the board's filesystem (os.statvfs)."""
        from lcm_device.compat import free_bytes

        return free_bytes(self.root or "/")

    def wlan(self, mode):
        import network

        return network.WLAN(network.AP_IF if mode == 1 else network.STA_IF)

    def has_radio(self):
        """Whether the network must be brought up by the radio (always, on a board)."""
        return True

    def portal_args(self):
        """Keyword arguments of wifi.setup_mode: a board serves on ports 80 and 53."""
        return {}

    def partitions(self):
        """The OTA partitions (`esp32.Partition`-like) for firmware releases; None: files only."""
        return None

    def boot_firmware(self):
        """At the start of a boot, after ESP-IDF's bootloader ran: nothing to do on a board."""

    def timer(self, period_ms, callback):
        """A periodic timer calling `callback()` from the main loop, or None: then
        lcm_device.checktimer arms `machine.Timer` itself."""
        return None

    def pin(self, number):
        """The button's input pin (pull-up, pressed = 0)."""
        from machine import Pin

        return Pin(int(number), Pin.IN, Pin.PULL_UP)
