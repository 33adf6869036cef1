"""Checks while an app runs, without the app's cooperation: what stays of the manager.

lcm_device.timerwork arms it before the app starts (from /main.py in the app
boot after an update boot, from lcm_device.appboot otherwise) and does its
occasional work. This module is all of the check timer that stays in the heap
while the app runs: the next check's deadline as numbers in its globals (no
schedule, no deadline object, no class, no HAL until something needs one) and
the poll. A periodic timer (the HAL's `timer(period_ms, fn)` on a simulated
board, else machine.Timer) calls `poll()` every second from the main loop.
Extra pollers (`also`: the fleet link) run at every tick; at `work_at` (the
next chore or the check), and at once when /main.py or /lcm/pick.py is gone,
the poll loads lcm_device.timerwork, which does what is due (put them back,
settle the gesture counter, confirm a trial app, write the deadline back hourly; when the
check is due and the app has not called `lcm.hold()`, save the request so
the manager checks at once, and reset into it: the unix HAL exits with 75 and
`lcm device simulate` restarts it), then releases it. While held, the check
waits and happens as soon as the app calls `lcm.hold(False)`. The fleet link
reads the deadline through `seconds_until_due` (it is handed this module as
its `sched`) and moves it through lcm_device.timerwork.check_within. The unix port
has no machine.Timer: there the app polls through `lcm.idle`, unless the
simulated board's HAL gives a timer (`lcm device simulate` without --once:
lcm_sim/boardtimer.py).
"""

from lcm_device import compat

# The armed timer's state (lcm_device.timerwork sets it). Few names: each is an entry in
# this module's globals, which stay in the app's heap.
hal = None  # the HAL; None: made when needed (lcm_device.hal.get)
root = None  # the HAL's root (the poll's file check needs no HAL); None: not armed
timer = None  # the board timer that polls; None: the app polls (lcm.idle)
also = ()  # more pollers, e.g. the fleet link's `poll(now_s)`
next_s = 0  # uptime at which the next check is due
work_at = 0  # uptime of the next chore or check (timerwork.work)
chores = None  # the chores' state (timerwork: last write of the deadline, settle, confirm)
held = False  # the app holds off a reset into the manager (lcm.hold); 2: said so in the log
checked_at = None  # uptime of the check run just before the app started (lcm.request_update)
schedule = None  # micropython.schedule, with a machine.Timer


def seconds_until_due(now_s):
    return max(0, next_s - now_s)


def poll(now_s=None):
    """One tick at uptime `now_s` (None: now; the timer's callback); True when a reset was
    asked for."""
    if now_s is None:
        now_s = compat.uptime_s()
    for fn in also:
        try:
            fn(now_s)
        except Exception:
            pass
    if (
        now_s < work_at
        and compat.file_size(root + "/main.py") > 0
        and compat.file_size(root + "/lcm/pick.py") > 0
    ):
        return False
    try:
        from lcm_device.timerwork import work
    except ImportError:  # damaged: no chores and no check until the next boot repairs it
        return False
    try:
        return work(now_s)
    finally:
        compat.unload(["lcm_device.timerwork"], True)


def irq(_timer):
    # A machine.Timer's callback may run where allocating is not allowed (a hard IRQ), so
    # it only queues the poll for the main loop (where machine.reset() works).
    try:
        schedule(poll, None)
    except RuntimeError:
        pass  # the queue is full: the next tick tries again
