"""When to check for updates: a jittered interval, back-off on failure, no stampede at power-on.

All times passed in are seconds on one monotonic base (`uptime_s()` on the
device, a simulated clock in the fleet benchmark). Boards often have no real
clock, so what survives a reboot is not a deadline but the *seconds remaining*
until the next check (`remaining`), saved with every change and refreshed
hourly while an app runs (`lcm_device.checktimer`). At boot the deadline is
rebuilt as `now + remaining` (minus the time elapsed since the save when the
wall clock was known at both ends). The saved value can only be stale by the
time the device ran after the last save, so a crash loop delays a check by
at most that hour, never fires one early.

Rules (the maths is in docs/lifecycle.md):
- after a successful check: the next one in `check_interval_s` +/- 25 %;
- after the n-th consecutive failure: full jitter, uniform in
  [_MIN_S, min(cap, _BASE_S * 2**n)], cap = 2 x interval (so a failing
  server is never asked more often, on average, than a healthy one);
- at power-on: uniform over `power_on_window_s` (default: the interval), so a
  fleet switched on together keeps its steady-state rate (LCM checked 1 s
  after every power-on);
- a requested check (app, gesture, timer: the REQUEST file) is due at once,
  and stays requested across resets until a check is recorded;
- no saved state (new or factory-reset device): due at once.

Checks while an app runs: `lcm_device.checktimer.arm_timer(hal, cfg)`.
"""

import json

from lcm_device.compat import const, exists, random_bytes, ticks_diff, ticks_ms
from lcm_device.hal.fs import makedirs, remove_if_exists, write_atomic

PATH = "/lcm/state/schedule.json"
# An empty file: a check was asked for (app, gesture, button, timer). Creating it
# needs no schedule code, so asking is cheap; the next recorded check removes it.
REQUEST = "/lcm/state/check.now"
DEFAULT_INTERVAL_S = 14400
MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 30 * 86400
# Largest schedule.json read back (it is about 80 bytes).
MAX_STATE_BYTES = 192

# Back-off base: a check is never urgent, and after a network outage the retries
# of the devices that failed come back at about ln(outage / base) times the steady
# rate (docs/lifecycle.md), so the base is minutes, not seconds.
_BASE_S = const(300)
_MIN_S = const(10)
_JITTER_PCT = const(25)
_MAX_DOUBLINGS = const(20)

_seeded = False


def uniform():
    """A float in [0, 1) from the board's RNG, seeded once from os.urandom so that
    devices of one fleet never draw the same jitter."""
    global _seeded
    import random

    if not _seeded:
        b = random_bytes(4)
        random.seed((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])
        _seeded = True
    return random.getrandbits(24) / 16777216


class Schedule:
    """The check schedule of one device; `hal=None` keeps it in memory only (benchmark)."""

    def __init__(self, hal, cfg, rand=None):
        self.hal = hal
        try:
            interval = int(cfg.get("check_interval_s", DEFAULT_INTERVAL_S))
        except (TypeError, ValueError):
            interval = DEFAULT_INTERVAL_S
        self.interval = min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S)
        try:
            window = int(cfg.get("power_on_window_s", self.interval))
        except (TypeError, ValueError):
            window = self.interval
        self.window = min(max(window, 0), MAX_INTERVAL_S)
        self.cap = 2 * self.interval
        self.rand = rand or uniform
        self.failures = 0
        self.requested = hal is not None and exists(hal.root + REQUEST)
        self.remaining = None  # seconds to the next check at the last save; None: no state
        self.wall = None  # wall clock at the last save, when known
        self.next = 0  # deadline on this boot's monotonic base
        self.saved_at = 0
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
        self.failures = max(0, min(failures, _MAX_DOUBLINGS))
        self.remaining = max(0, min(remaining, MAX_INTERVAL_S))
        self.wall = wall

    def on_boot(self, now_s, power_on):
        """Rebuild the deadline at boot; `power_on` is False after a reset or a soft reboot."""
        if self.requested:
            left = 0
        elif self.remaining is None:
            left = 0  # a new device has no app yet: check at its first boot
        elif power_on:
            left = int(self.rand() * self.window)
        else:
            left = self.remaining
            now_wall = self._wall()
            if now_wall is not None and self.wall is not None and now_wall >= self.wall:
                left = max(0, left - (now_wall - self.wall))
        self.next = now_s + left
        self._save(now_s)

    def due(self, now_s):
        return self.seconds_until_due(now_s) == 0

    def seconds_until_due(self, now_s):
        if self.requested:
            return 0
        return max(0, self.next - now_s)

    def record_success(self, now_s):
        """A check reached the server (whether or not it found an update)."""
        self.failures = 0
        spread = self.interval * _JITTER_PCT // 100
        self._set(now_s, self.interval - spread + int(self.rand() * 2 * spread))

    def record_failure(self, now_s):
        """A check failed (no network, server error, refused data): back off with full jitter."""
        self.failures = min(self.failures + 1, _MAX_DOUBLINGS)
        ceiling = min(self.cap, _BASE_S << self.failures)
        self._set(now_s, max(_MIN_S, int(self.rand() * ceiling)))

    def check_within(self, now_s, left):
        """Move the next check to at most `left` seconds from now (a push hint)."""
        if self.next > now_s + left:
            self.next = now_s + left
            self._save(now_s)

    def request_now(self):
        """Ask for a check as soon as possible (kept across a reset)."""
        self.requested = True
        if self.hal is not None:
            request_check(self.hal)

    def _set(self, now_s, left):
        self.next = now_s + left
        self._save(now_s)
        if self.requested:
            # After the save: a cut in between only repeats the check.
            self.requested = False
            if self.hal is not None:
                remove_if_exists(self.hal.fs, self.hal.root + REQUEST)

    def _wall(self):
        try:
            return self.hal.time()
        except Exception:
            return None

    def _save(self, now_s):
        self.remaining = max(0, self.next - now_s)
        self.saved_at = now_s
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


def request_check(hal, cfg=None):
    """Ask for a check at the manager's next boot (the app's `check now`): creates REQUEST.
    (`cfg` is accepted for callers that pass it; the request needs no setting.)"""
    makedirs(hal.fs, hal.root + "/lcm/state")
    hal.fs.open_write(hal.root + REQUEST).close()


_last_ticks = ticks_ms()
_uptime_ms = 0


def uptime_s():
    """Seconds since this module was imported. ticks_ms wraps (every ~12 days on
    MicroPython), so elapsed ticks are accumulated: call it at least every few days
    (the check timer polls every second)."""
    global _last_ticks, _uptime_ms
    t = ticks_ms()
    _uptime_ms += ticks_diff(t, _last_ticks)
    _last_ticks = t
    return _uptime_ms // 1000
