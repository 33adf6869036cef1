"""Checks while an app runs, without the app's cooperation.

The manager's boot calls `arm_timer(hal, cfg)` before it starts the app. A
periodic timer (the HAL's `timer(period_ms, fn)`, else machine.Timer) polls a
`Watcher` every POLL_MS from the main loop: when the schedule says a check is
due and the app has not called `hold()`, it saves the request (so the manager
checks at once) and resets into the manager (`hal.reset(75)`; the unix HAL
exits with 75 and `lcm device simulate` restarts it). While held, the check
waits and happens as soon as the app calls `hold(False)`.

The watcher also refreshes the schedule's saved seconds-remaining once per
_CHECKPOINT_S, and does the boot's chores while the app runs: put back a
/main.py the app removed, settle the gesture counter once the board has been
up SETTLE_S, confirm a trial app after `confirm_after_s`. It holds only the
moments these are due and imports each chore's module when its moment comes:
it is what stays of the manager in the app's heap (lcm_device.boot). Extra
pollers (`also`: the fleet link) run at every tick. The unix port has no
machine.Timer: there the caller polls the returned Watcher itself (`idle`),
unless the simulated board's HAL gives a timer (`lcm device simulate`
without --once: lcm_sim/boardtimer.py).

Kept apart from `schedule` so that the manager, which only computes the
schedule, does not load it, and the app, which only needs this, stays light:
without a schedule from the boot, the timer polls the saved deadline alone
(lcm_device.due, whose class the schedule extends), and never loads the
schedule's rules.
"""

from lcm_device.compat import const, file_size, unload, uptime_s
from lcm_device.due import Due, safe_log

# Timer period of the watcher while an app runs.
POLL_MS = 1000
# Uptime after which a power-on no longer counts as a quick power cycle (gestures.QUICK_S).
SETTLE_S = 4

_CHECKPOINT_S = const(3600)
_EXIT_RESET = const(75)

_held = False


def hold(on=True):
    """The app forbids (True) or allows again (False) a reset into the manager for a check."""
    global _held
    _held = bool(on)


class Watcher:
    """Polled by a timer while the app runs; resets into the manager when a check is due."""

    def __init__(self, hal, sched, also=(), confirm_at=None):
        self.hal = hal
        self.sched = sched
        self.also = also  # more pollers, e.g. the fleet link's `poll(now_s)`
        self.settled = False  # the gesture counter
        self.confirm_at = confirm_at  # uptime at which a trial app is confirmed; None: not one
        self.waiting = False
        self.timer = None  # the board timer that polls it; None: the app polls (idle)

    def poll(self, now_s):
        """One tick: returns True when a reset was asked for."""
        try:
            self.chores(now_s)
        except Exception:
            pass
        for fn in self.also:
            try:
                fn(now_s)
            except Exception:
                pass
        if now_s - self.sched.saved_at >= _CHECKPOINT_S:
            self.sched._save(now_s)
        if not self.sched.due(now_s):
            return False
        if _held:
            if not self.waiting:
                safe_log("schedule: check due, waiting while the app holds")
                self.waiting = True
            return False
        safe_log("schedule: check due, resetting into the manager")
        self.sched.request_now()
        self.hal.reset(_EXIT_RESET)
        return True

    def chores(self, now_s):
        # Each imports its module only when its moment comes (the app's heap).
        if file_size(self.hal.root + "/main.py") <= 0:
            from lcm_device import mainfile

            mainfile.restore(self.hal, safe_log)
        if not self.settled and now_s >= SETTLE_S:
            self.settled = True
            from lcm_device import gestures

            gestures.settle(self.hal, now_s)
            unload(("lcm_device.gestures",), True)
        if self.confirm_at is not None and now_s >= self.confirm_at:
            self.confirm_at = None
            from lcm_device.app import confirm

            confirm()


def idle(ms):
    """Sleep `ms` milliseconds. Where no timer polls the watcher (the unix port) the
    watcher is polled here, so an app that calls `lcm.idle` gets its checks and the
    fleet link (push hints, status) as a board's timer would give them."""
    from lcm_device.compat import sleep_ms, ticks_diff, ticks_ms

    start = ticks_ms()
    while True:
        left = ms - ticks_diff(ticks_ms(), start)
        if left <= 0:
            return
        sleep_ms(min(left, POLL_MS))
        w = current
        if w is not None and w.timer is None:
            w.poll(uptime_s())


current = None  # the watcher armed for the running app


def arm_timer(hal, cfg, sched=None, also=(), confirm_after_s=None):
    """Start polling with a periodic timer where the board has one; returns the Watcher
    (the unix port has no machine.Timer: there the caller polls it). A trial app is
    confirmed `confirm_after_s` seconds from now (None: not a trial)."""
    now = uptime_s()
    if sched is None:
        sched = Due(hal)
        sched.resume(now)
    global current
    confirm_at = None if confirm_after_s is None else now + confirm_after_s
    w = current = Watcher(hal, sched, also, confirm_at)
    # A HAL timer calls back from the main loop (the HAL's business).
    w.timer = hal.timer(POLL_MS, lambda: w.poll(uptime_s()))
    if w.timer is not None:
        return w
    try:
        from machine import Timer
        from micropython import schedule
    except ImportError:
        return w

    # Made once, here: the timer callback may run where allocating is not allowed,
    # so it only queues the poll for the main loop (where machine.reset() works).
    def tick(_arg):
        w.poll(uptime_s())

    def irq(_timer):
        try:
            schedule(tick, None)
        except RuntimeError:
            pass  # the queue is full: the next tick tries again

    for timer_id in (-1, 0):  # -1: virtual timer (ESP8266); 0: hardware timer (ESP32)
        try:
            w.timer = Timer(timer_id)
            w.timer.init(period=POLL_MS, mode=Timer.PERIODIC, callback=irq)
            break
        except Exception:
            continue
    return w
