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
  server is never asked more often, on average, than a healthy one); when a
  server said how long to wait (Retry-After, in seconds), the draw starts
  there, still at most the cap;
- at power-on: uniform over `power_on_window_s` (default: the interval; from
  1 s, never in the boot the power came back in; 0: at once), so a fleet
  switched on together keeps its steady-state rate (LCM checked 1 s after
  every power-on);
- a requested check (app, gesture, timer: the REQUEST file) is due at once,
  and stays requested across resets until a check is recorded;
- no saved state (new or factory-reset device): due at once.

Checks while an app runs: `lcm_device.checktimer.arm_timer(hal, cfg)`.
"""

from lcm_device.compat import const, random_bytes, uptime_s  # noqa: F401 (uptime_s: callers)
from lcm_device.due import (  # noqa: F401 (PATH, REQUEST, request_check, safe_log: callers)
    MAX_FAILURES,
    MAX_INTERVAL_S,
    PATH,
    REQUEST,
    Due,
    request_check,
    safe_log,
)
from lcm_device.hal.fs import remove_if_exists

DEFAULT_INTERVAL_S = 14400
MIN_INTERVAL_S = 60

# Back-off base: a check is never urgent, and after a network outage the retries
# of the devices that failed come back at about ln(outage / base) times the steady
# rate (docs/lifecycle.md), so the base is minutes, not seconds.
_BASE_S = const(300)
_MIN_S = const(10)
_JITTER_PCT = const(25)

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


class Schedule(Due):
    """The check schedule of one device; `hal=None` keeps it in memory only (benchmark)."""

    def __init__(self, hal, cfg, rand=None):
        Due.__init__(self, hal)
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

    def on_boot(self, now_s, power_on):
        """Rebuild the deadline at boot; `power_on` is False after a reset or a soft reboot."""
        if power_on and not self.requested and self.remaining is not None:
            # At least 1 s: a draw of 0 would check in the very boot the power came back
            # (as LCM did), which a boot's decision and its tests must not meet at random.
            left = 1 + int(self.rand() * (self.window - 1)) if self.window else 0
            self.next = now_s + left
            self.save(now_s)
        else:
            self.resume(now_s)

    def record_success(self, now_s):
        """A check reached the server (whether or not it found an update)."""
        self.failures = 0
        spread = self.interval * _JITTER_PCT // 100
        self._set(now_s, self.interval - spread + int(self.rand() * 2 * spread))

    def record_failure(self, now_s, wait_s=0):
        """A check failed (no network, server error, refused data): back off with full jitter,
        the draw counted from a server's Retry-After `wait_s` (never sooner than it asked,
        still spread) and bounded by the cap (a server that asks for longer, hostile or
        not, holds the device no longer than a failing one would)."""
        self.failures = min(self.failures + 1, MAX_FAILURES)
        ceiling = min(self.cap, _BASE_S << self.failures)
        self._set(now_s, max(_MIN_S, min(self.cap, wait_s + int(self.rand() * ceiling))))

    def _set(self, now_s, left):
        self.next = now_s + left
        self.save(now_s)
        if self.requested:
            # After the save: a cut in between only repeats the check.
            self.requested = False
            if self.hal is not None:
                remove_if_exists(self.hal.fs, self.hal.root + REQUEST)
