"""The next check's moment as it is saved: read back, tested, kept fresh, asked for now.

lcm_device.schedule's rules set it (jitter, back-off, power-on window); the
check timer (lcm_device.checktimer), which keeps the deadline as numbers while
the app runs, loads this module to read it at arm time and to write it back,
and releases it between (the app's heap). The saved state and its rules are schedule's (docstring
there): `remaining` seconds, saved with the wall clock when it is known, so a
reboot rebuilds the deadline as `now + remaining` (minus the time off, when
the wall clock was known at both ends), and never fires early.
"""

import json

from lcm_device.compat import exists
from lcm_device.hal.fs import makedirs, write_atomic

PATH = "/lcm/state/schedule.json"
# An empty file: a check was asked for (app, gesture, button, timer). Creating it
# needs no schedule code, so asking is cheap; the next recorded check removes it.
REQUEST = "/lcm/state/check.now"
MAX_INTERVAL_S = 30 * 86400
# Largest schedule.json read back (it is about 80 bytes).
MAX_STATE_BYTES = 192
MAX_FAILURES = 20


class Due:
    """The saved deadline of one device; `hal=None` keeps it in memory only (benchmark)."""

    def __init__(self, hal):
        self.hal = hal
        self.failures = 0
        self.requested = hal is not None and exists(hal.root + REQUEST)
        self.remaining = None  # seconds to the next check at the last save; None: no state
        self.wall = None  # wall clock at the last save, when known
        self.next = 0  # deadline on this boot's monotonic base
        if hal is None:
            return
        try:
            with open(hal.root + PATH) as f:
                state = json.loads(f.read(MAX_STATE_BYTES))
            failures = int(state["failures"])
            remaining = int(state["remaining"])
            wall = state.get("wall")
            wall = None if wall is None else int(wall)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # Missing or damaged: no state (a MemoryError is not damage: it propagates).
            return
        self.failures = max(0, min(failures, MAX_FAILURES))
        self.remaining = max(0, min(remaining, MAX_INTERVAL_S))
        self.wall = wall

    def resume(self, now_s):
        """The deadline after a reset (no power-on): the saved one, less the time off when
        the wall clock tells it; at once when requested or without state. Saved."""
        left = 0  # requested, or a new device (no app yet: check at its first boot)
        if not self.requested and self.remaining is not None:
            left = self.remaining
            now_wall = self._wall()
            if now_wall is not None and self.wall is not None and now_wall >= self.wall:
                left = max(0, left - (now_wall - self.wall))
        self.next = now_s + left
        self.save(now_s)

    def due(self, now_s):
        return self.seconds_until_due(now_s) == 0

    def seconds_until_due(self, now_s):
        if self.requested:
            return 0
        return max(0, self.next - now_s)

    def _wall(self):
        try:
            return self.hal.time()
        except Exception:
            return None

    def save(self, now_s):
        """Write the deadline as seconds remaining from `now_s` (with the wall clock)."""
        self.remaining = max(0, self.next - now_s)
        if self.hal is None:
            return
        self.wall = self._wall()
        state = {
            "failures": self.failures,
            "remaining": self.remaining,
            "wall": self.wall,
        }
        try:
            makedirs(self.hal.fs, self.hal.root + "/lcm/state")
            write_atomic(self.hal.fs, self.hal.root + PATH, json.dumps(state).encode())
        except Exception as exc:
            # A full or failing flash must not stop the check itself.
            safe_log("schedule: cannot save state: " + repr(exc))


def safe_log(text):
    # Imported when needed: the manager has loaded it already, and a test or a
    # tight heap that only computes the schedule does not pay for it. Logging
    # never stops the caller (not even a MemoryError while importing).
    try:
        from lcm_device.log import log

        log(text)
    except Exception:
        pass


def request_check(hal):
    """Ask for a check at the manager's next boot (the app's `check now`): creates REQUEST."""
    makedirs(hal.fs, hal.root + "/lcm/state")
    hal.fs.open_write(hal.root + REQUEST).close()
