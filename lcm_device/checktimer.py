"""Checks while an app runs, without the app's cooperation: what stays of the manager.

The manager's boot calls `arm_timer(hal, cfg, sched, also, confirm_after_s)`
before it starts the app. It takes the next check's deadline from `sched` (the
boot's schedule) or, without one, from the saved state (lcm_device.due), keeps
it as numbers in this module's globals and lets the schedule go: while the app
runs, this module is all of the check timer in the heap (no schedule, no
deadline object, no class), with the HAL. A periodic timer (the HAL's
`timer(period_ms, fn)`, else machine.Timer) calls `poll(now_s)` every POLL_MS
from the main loop: when the check is due and the app has not called `hold()`,
it saves the request (so the manager checks at once) and resets into the
manager (`hal.reset()`; the unix HAL exits with 75 and `lcm device simulate`
restarts it). While held, the check waits and happens as soon as the app
calls `hold(False)`.

The poll also writes the deadline back as seconds-remaining once per
_CHECKPOINT_S (through lcm_device.due, imported for the write), and does the
boot's chores: put back a /main.py the app removed, settle the gesture counter
once the board has been up SETTLE_S, confirm a trial app after
`confirm_after_s`. Each chore imports its module when its moment comes. Extra
pollers (`also`: the fleet link) run at every tick; the fleet link sees the
deadline through `due`, `seconds_until_due` and `check_within` (it is handed
this module as its `sched`). The unix port has no machine.Timer: there the
app polls through `idle`, unless the simulated board's HAL gives a timer
(`lcm device simulate` without --once: lcm_sim/boardtimer.py).
"""

from lcm_device.compat import const, file_size, unload, uptime_s

# Timer period of the poll while an app runs.
POLL_MS = 1000
# Uptime after which a power-on no longer counts as a quick power cycle (gestures.QUICK_S).
SETTLE_S = 4

_CHECKPOINT_S = const(3600)

# The armed timer's state (arm_timer sets it).
hal = None
timer = None  # the board timer that polls; None: the app polls (idle)
also = ()  # more pollers, e.g. the fleet link's `poll(now_s)`
next_s = 0  # uptime at which the next check is due
requested = False  # a check was asked for: due at once
saved_at = 0  # uptime of the deadline's last write
settled = False  # the gesture counter
confirm_at = None  # uptime at which a trial app is confirmed; None: not one
_held = False
_waiting = False


def hold(on=True):
    """The app forbids (True) or allows again (False) a reset into the manager for a check."""
    global _held
    _held = bool(on)


def seconds_until_due(now_s):
    return 0 if requested else max(0, next_s - now_s)


def due(now_s):
    return seconds_until_due(now_s) == 0


def check_within(now_s, left):
    """Move the next check to at most `left` seconds from now (a push hint); saved."""
    global next_s
    if next_s > now_s + left:
        next_s = now_s + left
        _save(now_s)


def poll(now_s):
    """One tick: returns True when a reset was asked for."""
    global _waiting, requested
    try:
        _chores(now_s)
    except Exception:
        pass
    for fn in also:
        try:
            fn(now_s)
        except Exception:
            pass
    if now_s - saved_at >= _CHECKPOINT_S:
        _save(now_s)
    if not due(now_s):
        return False
    from lcm_device.due import request_check, safe_log

    if _held:
        if not _waiting:
            safe_log("schedule: check due, waiting while the app holds")
            _waiting = True
        return False
    safe_log("schedule: check due, resetting into the manager")
    requested = True
    request_check(hal)  # kept across the reset: the manager checks at once
    hal.reset()
    return True


def _save(now_s):
    # The deadline as lcm_device.due saves it (seconds remaining, the wall clock), whose
    # failures count it keeps: loaded for the write and released after, unless something
    # else had it loaded (the fleet link's schedule).
    global saved_at
    saved_at = now_s
    import sys

    had = "lcm_device.due" in sys.modules
    from lcm_device.due import Due

    d = Due(hal)
    d.next = next_s
    d.save(now_s)
    if not had:
        unload(("lcm_device.due",), True)


def _chores(now_s):
    global settled, confirm_at
    # Each imports its module only when its moment comes (the app's heap).
    if file_size(hal.root + "/main.py") <= 0:
        from lcm_device import mainfile
        from lcm_device.due import safe_log

        mainfile.restore(hal, safe_log)
    if not settled and now_s >= SETTLE_S:
        settled = True
        from lcm_device import gestures

        gestures.settle(hal, now_s)
        unload(("lcm_device.gestures",), True)
    if confirm_at is not None and now_s >= confirm_at:
        confirm_at = None
        from lcm_device.app import confirm

        confirm()


def idle(ms):
    """Sleep `ms` milliseconds. Where no timer polls (the unix port) the timer is polled
    here, so an app that calls `lcm.idle` gets its checks and the fleet link (push
    hints, status) as a board's timer would give them."""
    from lcm_device.compat import sleep_ms, ticks_diff, ticks_ms

    start = ticks_ms()
    while True:
        left = ms - ticks_diff(ticks_ms(), start)
        if left <= 0:
            return
        sleep_ms(min(left, POLL_MS))
        if hal is not None and timer is None:
            poll(uptime_s())


def arm_timer(board_hal, cfg, sched=None, pollers=(), confirm_after_s=None):
    """Start polling with a periodic timer where the board has one (the unix port has no
    machine.Timer: there the app polls, `idle`). `sched`: the boot's schedule, whose
    deadline is taken (None: the saved one, lcm_device.due). A trial app is confirmed
    `confirm_after_s` seconds from now (None: not a trial). Returns this module's
    timer, or None."""
    global hal, timer, also, next_s, requested, saved_at, settled, confirm_at, _waiting
    now = uptime_s()
    if sched is None:
        from lcm_device.due import Due

        sched = Due(board_hal)
        sched.resume(now)
    hal, also = board_hal, pollers
    next_s, requested, saved_at = sched.next, sched.requested, sched.saved_at
    settled = _waiting = False
    confirm_at = None if confirm_after_s is None else now + confirm_after_s
    sched = None
    # A HAL timer calls back from the main loop (the HAL's business).
    timer = board_hal.timer(POLL_MS, _tick)
    if timer is None:
        timer = _machine_timer()
    return timer


def _tick(_arg=None):
    # Called by the HAL's timer (no argument) and by micropython.schedule (one).
    poll(uptime_s())


def _machine_timer():
    try:
        from machine import Timer
        from micropython import schedule
    except ImportError:
        return None

    # The timer callback may run where allocating is not allowed, so it only queues the
    # poll for the main loop (where machine.reset() works).
    def irq(_timer):
        try:
            schedule(_tick, None)
        except RuntimeError:
            pass  # the queue is full: the next tick tries again

    for timer_id in (-1, 0):  # -1: virtual timer (ESP8266); 0: hardware timer (ESP32)
        try:
            t = Timer(timer_id)
            t.init(period=POLL_MS, mode=Timer.PERIODIC, callback=irq)
            return t
        except Exception:
            continue
    return None
