"""The API apps use, imported as `lcm` (the manager slot holds a tiny `lcm.py` re-exporting it).

import lcm
lcm.confirm()          # this (trial) version works: keep it
lcm.request_update()   # check for an update now (resets into the manager; one a minute)
lcm.status()           # {"app": tag, "slot": ..., "trial": bool, "manager": tag, ...}
lcm.hold()             # do not reset me into the manager for a check now (lcm.hold(False): do)
lcm.idle(ms)           # sleep; where no timer runs (unix port) lcm's check timer runs meanwhile
"""

from lcm_device import slots
from lcm_device.compat import const

# A requested check resets into the manager at once only this long after the last check:
# an app that asks as it starts would otherwise reset into a check every few seconds.
_REQUEST_FLOOR_S = const(60)


def _hal():
    from lcm_device.hal import get

    return get()


def _log(text):
    try:
        from lcm_device.log import log

        log(text)
    except ImportError:
        print(text)


def confirm():
    """Confirm the running app if it is in trial; True when this call confirmed it."""
    hal = _hal()
    st = slots.load(hal)
    tag = st.get("app_tag")
    try:
        if slots.confirm(hal, st, "app"):
            _log("app: confirmed " + str(tag))
            return True
    except OSError as exc:
        # A full or read-only flash: the trial stays open (the app keeps running, and a
        # later boot confirms it once the flash takes writes again).
        _log("app: cannot confirm " + str(tag) + " now: OSError " + str(exc.args[0]))
    return False


def request_update():
    """Ask for an update check now: saved across the reset, then the manager runs it.

    One a minute at most: asked less than a minute after a check (an app that asks as it
    starts, the check having run just before), the check timer resets into the next one
    when the minute is up, and the app runs on meanwhile (the seconds until then are
    returned). A check the timer had planned sooner stays sooner."""
    from lcm_device.compat import uptime_s

    try:
        from lcm_device import checktimer as ct
    except ImportError:  # damaged: the manager's check repairs it, so reset into it now
        ct = None
    now = uptime_s()
    if ct is not None and ct.checked_at is not None and now < ct.checked_at + _REQUEST_FLOOR_S:
        at = ct.checked_at + _REQUEST_FLOOR_S
        ct.next_s = min(ct.next_s, at)
        ct.work_at = min(ct.work_at, at)
        wait = max(0, ct.next_s - now)
        _log("app: update check requested: in %d s (one a minute at most)" % wait)
        return wait
    hal = _hal()
    try:
        # due alone (not the schedule): the request is a file, it needs no setting.
        from lcm_device.due import request_check

        request_check(hal)
    except ImportError:
        pass
    _log("app: update check requested")
    hal.reset()


def idle(ms):
    """Sleep `ms` milliseconds. Where no board timer polls the check timer (the unix
    port) it is polled here, so an app that calls `lcm.idle` gets its checks and the
    fleet link (push hints, status) as a board's timer would give them."""
    from lcm_device import checktimer
    from lcm_device.compat import sleep_ms, ticks_diff, ticks_ms

    start = ticks_ms()
    while True:
        left = ms - ticks_diff(ticks_ms(), start)
        if left <= 0:
            return
        sleep_ms(min(left, 1000))  # the board timer's period (lcm_device.timerwork.POLL_MS)
        if checktimer.root is not None and checktimer.timer is None:  # armed, no timer polls
            checktimer.poll()


def hold(on=True):
    """While held, a due check waits instead of resetting the board (lcm_device.checktimer)."""
    # Imported here: the boot has loaded it already for the app's check timer.
    from lcm_device import checktimer

    if on:
        if not checktimer.held:  # (2: held, and the wait logged)
            checktimer.held = True
    elif checktimer.held:
        checktimer.held = False
        checktimer.work_at = 0  # the next poll looks again: a check held off happens then


def status():
    st = slots.load(_hal())
    return {
        "app": st.get("app_tag"),
        "slot": st.get("app"),
        "trial": slots.in_trial(st, "app"),
        "previous": st.get("app_prev_tag"),
        "refused": st.get("app_bad"),
        "manager": st.get("mgr_tag"),
        "manager_slot": st.get("mgr"),
    }
