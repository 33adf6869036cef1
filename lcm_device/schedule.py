"""When to check for updates: a jittered interval, back-off on failure, no stampede at power-on.

All times passed in are seconds on one monotonic base (`uptime_s()` on the
device, a simulated clock in the fleet benchmark). Boards often have no real
clock, so what survives a reboot is not a deadline but the *seconds remaining*
until the next check (`remaining`), saved with every change and refreshed by
`checkpoint()` at most once per _CHECKPOINT_S. At boot the deadline is rebuilt
as `now + remaining` (minus the time elapsed since the save when the wall
clock was known at both ends). The saved value can only be stale by the
time the device ran after the last save, so a crash loop delays a check by at
most _CHECKPOINT_S, never fires one early.

Rules (the maths is in docs/lifecycle.md):
- after a successful check: the next one in `check_interval_s` +/- 25 %;
- after the n-th consecutive failure: full jitter, uniform in
  [_MIN_S, min(cap, _BASE_S * 2**n)], cap = 2 x interval (so a failing
  server is never asked more often, on average, than a healthy one);
- at power-on: uniform over `power_on_window_s` (default: the interval), so a
  fleet switched on together keeps its steady-state rate (LCM checked 1 s
  after every power-on);
- a requested check (app, gesture, timer) is due at once, and stays requested
  across a reset until a check is recorded;
- no saved state (new or factory-reset device): due within _MIN_S.

`arm_timer(hal, cfg)` lets checks happen while an app runs: a periodic timer
polls a `Watcher`; when a check is due and the app has not called `hold()`,
it saves the request and resets into the manager (exit code 75 on the unix
port, see docs/device.md).
"""

import json

from lcm_device.compat import const, random_bytes, ticks_diff, ticks_ms
from lcm_device.hal.fs import makedirs, write_atomic

PATH = "/lcm/state/schedule.json"
DEFAULT_INTERVAL_S = 14400
MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 30 * 86400
# Largest schedule.json read back (it is about 80 bytes).
MAX_STATE_BYTES = 192
# Timer period of the watcher while an app runs.
POLL_MS = 1000

_BASE_S = const(30)
_MIN_S = const(10)
_JITTER_PCT = const(25)
_MAX_DOUBLINGS = const(20)
_CHECKPOINT_S = const(3600)
_EXIT_RESET = const(75)

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
        self.requested = False
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
            self.requested = state["requested"] is True
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
            left = int(self.rand() * _MIN_S)
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

    def request_now(self, now_s):
        """Ask for a check as soon as possible (kept across a reset)."""
        self.requested = True
        self._save(now_s)

    def checkpoint(self, now_s):
        """Refresh the saved seconds-remaining once per _CHECKPOINT_S (called by the watcher)."""
        if now_s - self.saved_at >= _CHECKPOINT_S:
            self._save(now_s)

    def _set(self, now_s, left):
        self.requested = False
        self.next = now_s + left
        self._save(now_s)

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
            "requested": self.requested,
            "wall": self.wall,
        }
        try:
            makedirs(self.hal.fs, self.hal.root + "/lcm/state")
            write_atomic(self.hal.fs, self.hal.root + PATH, json.dumps(state))
        except Exception as exc:
            # A full or failing flash must not stop the check itself.
            _log("schedule: cannot save state: " + repr(exc))


def _log(text):
    # Imported when needed: the manager has loaded it already, and a test or a
    # tight heap that only computes the schedule does not pay for it. Logging
    # never stops the caller (not even a MemoryError while importing).
    try:
        from lcm_device.log import log

        log(text)
    except Exception:
        pass


def request_check(hal, cfg):
    """Save a check request; the manager acts on it at its next boot (app's `check now`)."""
    Schedule(hal, cfg).request_now(uptime_s())


_last_ticks = ticks_ms()
_uptime_ms = 0


def uptime_s():
    """Seconds since this module was imported. ticks_ms wraps (every ~12 days on
    MicroPython), so elapsed ticks are accumulated: call it at least every few days
    (the watcher polls every POLL_MS)."""
    global _last_ticks, _uptime_ms
    t = ticks_ms()
    _uptime_ms += ticks_diff(t, _last_ticks)
    _last_ticks = t
    return _uptime_ms // 1000


_held = False


def hold(on=True):
    """The app forbids (True) or allows again (False) a reset into the manager for a check."""
    global _held
    _held = bool(on)


class Watcher:
    """Polled by a timer while the app runs; resets into the manager when a check is due."""

    def __init__(self, hal, sched, also=()):
        self.hal = hal
        self.sched = sched
        self.also = also  # more pollers, e.g. the gesture counter's `settle(now_s)`
        self.waiting = False

    def poll(self, now_s):
        """One tick: returns True when a reset was asked for."""
        for fn in self.also:
            try:
                fn(now_s)
            except Exception:
                pass
        self.sched.checkpoint(now_s)
        if not self.sched.due(now_s):
            return False
        if _held:
            if not self.waiting:
                _log("schedule: check due, waiting while the app holds")
                self.waiting = True
            return False
        _log("schedule: check due, resetting into the manager")
        self.sched.request_now(now_s)
        self.hal.reset(_EXIT_RESET)
        return True


def arm_timer(hal, cfg, sched=None, also=()):
    """Start polling with a periodic timer where the board has one; returns the Watcher
    (the unix port has no machine.Timer: there the caller polls it)."""
    if sched is None:
        sched = Schedule(hal, cfg)
        sched.on_boot(uptime_s(), False)
    w = Watcher(hal, sched, also)
    timer = getattr(hal, "timer", None)
    if timer is not None:
        # A HAL timer calls back from the main loop (the HAL's business).
        w.timer = timer(POLL_MS, lambda: w.poll(uptime_s()))
        return w
    try:
        from machine import Timer
    except ImportError:
        return w
    for timer_id in (-1, 0):  # -1: virtual timer (ESP8266); 0: hardware timer (ESP32)
        try:
            w.timer = Timer(timer_id)
            w.timer.init(period=POLL_MS, mode=Timer.PERIODIC, callback=lambda _t: _later(w))
            break
        except Exception:
            continue
    return w


def _later(w):
    # machine.Timer callbacks may run in interrupt context: poll from the main
    # loop instead (machine.reset() from there resets the board as it should).
    try:
        from micropython import schedule

        schedule(lambda _: w.poll(uptime_s()), None)
    except Exception:
        pass
