"""The check timer's work that does not stay in the heap: arming it, its chores, the check.

lcm_device.checktimer stays loaded while the app runs and keeps the state;
this module is loaded to arm it before the app starts (`arm`) and by the poll
when something is due (`work`, at checktimer.work_at, and at once when
/main.py is gone), then released: put back /main.py and /lcm/pick.py when the
app removed them, settle the gesture counter once the board has been up
SETTLE_S, confirm a trial app after `confirm_after_s`, write the deadline back
as seconds-remaining once per _CHECKPOINT_S (lcm_device.due, loaded for the
write), and at the deadline reset into the manager for the check, unless the
app holds it off. Each chore imports its module when its moment comes; one
that needs the HAL makes it (lcm_device.hal.get), where the boot did not hand
one over."""

from lcm_device import checktimer as ct
from lcm_device.compat import const, unload, uptime_s

# Timer period of the poll while an app runs.
POLL_MS = 1000
# Uptime after which a power-on no longer counts as a quick power cycle (gestures.QUICK_S).
SETTLE_S = 4

_CHECKPOINT_S = const(3600)
# checktimer.chores, a list (one name in the check timer's globals): the uptime of the
# deadline's last write, whether the gesture counter is settled, and the uptime at which a
# trial app is confirmed (None: not one).
_SAVED = const(0)
_SETTLED = const(1)
_CONFIRM = const(2)


def arm(
    root, left_s, confirm_after_s, hal_timer, settled=False, hal=None, pollers=(), checked=False
):
    """Arm the check timer: the next check `left_s` seconds from now, a trial app confirmed
    `confirm_after_s` seconds from now (None: not a trial), the gesture counter `settled`
    already or not, `pollers` run at each tick; `checked`: a check ran just before (an app's
    request waits a minute: lcm.request_update). `hal_timer`: the board's timer is the
    HAL's (a simulated board), else machine.Timer. Returns the timer, or None (the app
    polls: lcm.idle)."""
    if ct.timer is not None:
        # Armed again in one boot (/main.py armed it, then fell back to a boot like any
        # other): one timer polls, not two.
        ct.timer.deinit()
        ct.timer = None
    now = uptime_s()
    ct.hal, ct.root, ct.also, ct.next_s, ct.held = hal, root, pollers, now + left_s, False
    ct.checked_at = now if checked else None
    confirm_at = None if confirm_after_s is None else now + confirm_after_s
    ct.chores = [now, settled, confirm_at]
    _plan()
    ct.timer = _board().timer(POLL_MS, ct.poll) if hal_timer else None
    if ct.timer is None:
        ct.timer = _machine_timer()
    return ct.timer


def work(now_s):
    """What is due at `now_s`: the chores, then the check (True: a reset was asked for);
    then the moment of the next (checktimer.work_at)."""
    try:
        _chores(now_s)
    except Exception:
        pass
    if now_s >= ct.next_s:
        from lcm_device.due import request_check, safe_log

        if not ct.held:
            safe_log("schedule: check due, resetting into the manager")
            board = _board()
            try:
                request_check(board)  # kept across the reset: the manager checks at once
            except OSError as exc:
                # A read-only or full flash: the reset goes on, and the boot finds the
                # check due by the saved schedule (raising here retried it every second).
                safe_log("schedule: cannot ask for the check: OSError " + str(exc.args[0]))
            board.reset()
            return True
        if ct.held is True:
            safe_log("schedule: check due, waiting while the app holds")
            ct.held = 2  # said so; lcm.hold(False) makes the next poll check
    _plan()
    return False


def _chores(now_s):
    from lcm_device import mainfile
    from lcm_device.due import safe_log

    chores = ct.chores
    mainfile.restore(_board(), safe_log)  # when /main.py or /lcm/pick.py is gone
    if not chores[_SETTLED] and now_s >= SETTLE_S:
        chores[_SETTLED] = True
        from lcm_device import gestures

        gestures.settle(_board(), now_s)
        unload(["lcm_device.gestures"], True)
    if chores[_CONFIRM] is not None and now_s >= chores[_CONFIRM]:
        chores[_CONFIRM] = None
        from lcm_device.app import confirm

        confirm()
    if now_s - chores[_SAVED] >= _CHECKPOINT_S:
        save(now_s)


def check_within(now_s, left):
    """Move the next check to at most `left` seconds from now (a push hint); saved."""
    if ct.next_s > now_s + left:
        ct.next_s = now_s + left
        save(now_s)
        _plan()


def save(now_s):
    """Write the deadline as lcm_device.due saves it (seconds remaining, the wall clock),
    whose failures count it keeps: loaded for the write and released after, unless
    something else had it loaded (the fleet link's schedule)."""
    import sys

    ct.chores[_SAVED] = now_s
    had = "lcm_device.due" in sys.modules
    from lcm_device.due import Due

    d = Due(_board())
    d.next = ct.next_s
    d.save(now_s)
    if not had:
        unload(["lcm_device.due"], True)


def _plan():
    # The next moment the poll loads this module: the check's (unless it is due and the
    # app holds it off), the gesture counter's, a trial's confirmation, the next write.
    chores = ct.chores
    at = chores[_SAVED] + _CHECKPOINT_S
    if ct.held != 2:  # held and said so: lcm.hold(False) makes the next poll look again
        at = min(at, ct.next_s)
    if not chores[_SETTLED]:
        at = min(at, SETTLE_S)
    if chores[_CONFIRM] is not None:
        at = min(at, chores[_CONFIRM])
    ct.work_at = at


def _board():
    if ct.hal is not None:
        return ct.hal
    from lcm_device.hal import get

    return get()


def _machine_timer():
    try:
        from machine import Timer
        from micropython import schedule
    except ImportError:
        return None
    ct.schedule = schedule
    for timer_id in [-1, 0]:  # -1: virtual timer (ESP8266); 0: hardware timer (ESP32)
        try:
            t = Timer(timer_id)
            t.init(period=POLL_MS, mode=Timer.PERIODIC, callback=ct.irq)
            return t
        except Exception:
            continue
    return None
