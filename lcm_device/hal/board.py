"""What the ESP32 and ESP8266 HALs share: stock MicroPython's `machine` and `network`.

Flash is the board's own filesystem (LittleFS by default, whose rename
replaces its target atomically), rooted at "". Only documented APIs are used
(`machine.reset`, `machine.reset_cause`, `machine.unique_id`,
`machine.RTC().memory`, `network.WLAN`), so the same code runs on every
release of the firmware; tests run it on the unix port with fake modules
that follow the official stubs.
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

    def __init__(self):
        self.fs = Fs()
        self.check_now = False

    def reset(self, code=75):
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

    def rtc_read(self):
        import machine

        return bytes(machine.RTC().memory())

    def rtc_write(self, data):
        import machine

        machine.RTC().memory(data)

    def unique_id(self):
        import machine

        return bytes(machine.unique_id())

    def free_bytes(self):
        """Free bytes of the board's filesystem (os.statvfs)."""
        from lcm_device.compat import free_bytes

        return free_bytes("/")

    def wlan(self, mode):
        import network

        return network.WLAN(network.AP_IF if mode == 1 else network.STA_IF)
