"""The app's side of the boot: the app boot after an update boot, and the steps before any app.

The app boot that follows an update boot (the marker APP_NEXT, marker_for:
the update boot's reset cause, then the settings this boot needs,
APP_BOOT_SETTINGS, and the app as JSON), when /main.py does not start it
itself (lcm_device.appstart: the marker names no manager slot, or /main.py is
older), does only this module's steps: remove the marker, give back the boot
/lcm/pick.py counted against a manager on trial (the update boot before it
judged the manager already: lcm_device.checkboot), count the app's trial boot
with that cause unless the update boot did (count_app), arm the check timer
and return the app to start. lcm_device.boot
imports this module only, not lcm_device.startup, for it: what an app boot
loads is what the app's heap keeps (its interned names are never freed), and
the update boot before it checked the manager's files moments ago. So it
loads neither the config module (the settings are in the marker; a fleet link
needs them all and loads it) nor the log, unless it has something to say: an
app on trial, a roll-back, a step that failed (the update boot before it
logged the check, and names the app it found installed).

A power-on boot ignores the marker (the power went in between: a boot like
any other), and so does a boot that cannot remove it (a read-only flash would
otherwise never check again): those run lcm_device.startup, which uses the
steps below for its own app.

Flash writes (trial counts, boot state, log) survive a full or read-only
flash: the step is logged and the boot goes on to the app (compat.step).
"""

import json
import sys

from lcm_device import slots
from lcm_device.compat import const, exists, sleep_ms, step, unload, uptime_s
from lcm_device.hal import get
from lcm_device.slots import APP_NEXT

# What the app boot reads of the config, written into the marker by the update boot.
# One string, split where used: a tuple constant is an object in RAM on a board.
APP_BOOT_SETTINGS = "confirm_after_s check_interval_s mqtt_url"
_MAX_MARKER = const(512)
_IDLE_POLL_MS = const(1000)  # without an app: how often the boot polls the check schedule


def log(text):
    """Log `text`, loading the log for it (the app boot has none loaded until it speaks)."""
    from lcm_device.log import log as _log

    _log(text)


def after_update():
    """Whether this boot may be the app boot after an update boot: its marker is there. A
    look only, in /main.py's root (the current folder): no HAL is made when lcm_device.boot
    is imported. `run` reads the HAL's root and the reset cause; where they say otherwise
    (a power-on, another root) it hands the boot to startup."""
    import os

    return exists(os.getcwd().rstrip("/") + APP_NEXT)


def run(running):
    """The app boot after an update boot; returns what prepare_app does. A power-on or a
    marker that cannot be removed makes it a boot like any other (startup)."""
    hal = get()
    step(_bootloader, hal)
    marker = step(_continues, hal, hal.reset_cause() == "power")
    if marker is None:
        try:
            from lcm_device import startup
        except ImportError as exc:
            # Damaged, and imported here, late, where /main.py's fallback does not see it:
            # a reset, whose boot (the marker gone) imports it with lcm_device.boot and
            # falls back to the other slot. Raised, it would stop the board at the REPL.
            log("boot: " + str(exc) + "; resetting")
            hal.reset()
        return startup.run(running)
    return app_boot(hal, _settings(hal, marker), marker)


def _fields(marker):
    # The marker's JSON (marker_for), or None: an older manager's marker (its cause alone).
    try:
        fields = json.loads(marker.split(b"\n")[1])
    except (IndexError, ValueError):
        return None
    return fields if isinstance(fields, dict) else None


def _settings(hal, marker):
    # The update boot's settings from the marker; the config itself for a fleet link (it
    # reads many) and for a marker without them (an older manager's update boot).
    cfg = _fields(marker)
    if cfg is None or cfg.get("mqtt_url"):
        from lcm_device import config

        cfg = config.load(hal)
    return cfg


def marker_for(cfg, power, app=None, running=None, check_in=0, hal_timer=False, settled=False):
    """The marker the update boot leaves for its app boot (lcm_device.checkboot): its reset
    cause, then the settings as JSON. With `app`, counted already (count_app), the JSON
    also holds what the app boot needs to start it (the app's slot and tag, the next check
    in `check_in` seconds, when to confirm a trial app, whether the board's timer is the
    HAL's and whether the gesture counter is settled), and a third line names the
    manager slot `running`: /main.py then starts the app itself (lcm_device.appstart).
    Without it (None: a fleet link, a firmware on trial) this module starts it."""
    settings = {}
    for key in APP_BOOT_SETTINGS.split():
        settings[key] = cfg.get(key)
    slot = b""
    if app is not None:
        settings["app"], settings["app_tag"], settings["check_in"] = app[0], app[1], check_in
        settings["confirm_in"] = int(cfg.get("confirm_after_s") or 30) if app[2] else None
        settings["hal_timer"], settings["settled"] = hal_timer, settled
        if running:
            slot = b"\n" + running.encode()
    return (b"power" if power else b"reset") + b"\n" + json.dumps(settings).encode() + slot


def _bootloader(hal):
    # It runs at every reset (the unix port plays it: a flash write); what it booted was
    # recorded by the update boot (startup._firmware_booted), which installed no firmware.
    hal.boot_firmware()


def app_boot(hal, cfg, marker):
    """The steps of the app boot after an update boot that left `marker`."""
    step(_continued_trial, hal)
    # The update boot's reset cause: a power-on there forgives the app's boot before it.
    power = marker.split(b"\n", 1)[0] == b"power"
    app = _fields(marker)
    if app is not None and app.get("app"):
        # Counted by the update boot (a /main.py older than the marker did not start it).
        app = app["app"], app["app_tag"], app.get("confirm_in") is not None
    else:
        app = None
    return step(prepare_app, hal, cfg, None, power, False, app)


def _continues(hal, power):
    """The update boot's marker (bytes) when this is its app boot, else None."""
    path = hal.root + APP_NEXT
    try:
        with open(path, "rb") as f:
            marker = f.read(_MAX_MARKER)
    except OSError:
        return None
    try:
        hal.fs.remove(path)
    except OSError:
        return None  # a marker that stays would skip every check: a boot like any other
    if power:
        return None  # the power went after the update boot: a boot like any other
    return marker


def _continued_trial(hal):
    # /main.py counted this boot against a manager on trial; the update boot before it
    # judged the manager (confirmed it, or did not hold that boot against it).
    st = slots.load(hal)
    if slots.in_trial(st, "mgr") and st.get("mgr_trial"):
        st["mgr_trial"] -= 1
        st["mgr_boots"] = max(0, (st.get("mgr_boots") or 1) - 1)
        slots.save(hal, st)


def count_app(hal, power):
    """Count the app's trial boot, logging a roll-back; (slot, tag, on trial) of the
    app to start, or None: no app installed. The update boot does it for its app boot
    before its reset (marker_for), so that the app boot need not load this module."""
    from lcm_device import trial

    st = slots.load(hal)
    if not st.get("app"):
        return None
    on_trial = st.get("app_tag")
    counted = trial.count_boot(hal, st, "app", power, log)
    if counted == "rolled back":
        bad = st.get("app_bad") == on_trial
        log(
            "app: "
            + str(on_trial)
            + (" failed its trial (" + str(st.get("app_bad_why")) + ")" if bad else " removed")
            + (
                "; rolled back to " + str(st["app_tag"])
                if st.get("app_tag")
                else "; no release before it"
            )
        )
    elif counted == "previous":
        log("app: trial boot not counted; running the previous release " + str(st.get("app_tag")))
    if not st.get("app"):
        return None
    tag = st.get("app_tag")
    trying = slots.in_trial(st, "app")
    if trying:
        log(
            "app: trial boot "
            + str(st["app_trial"])
            + " of "
            + str(st.get("trial_boots", 3))
            + " for "
            + str(tag)
        )
    return st["app"], tag, trying


def prepare_app(hal, cfg, sched, power, announce=True, app=None, check_in=None):
    """Count the app's trial boot (unless `app`, counted already: count_app) and arm the
    check timer; the app to start, (slot path, tag, modules that stay loaded besides
    lcm_device.boot's), or None. `announce`: log "app: starting" (the app boot after an
    update boot does not: the log stays unloaded). `check_in`: seconds to the next check
    as this boot's check decided (arm_timer)."""
    if app is None:
        app = count_app(hal, power)
    if app is None:
        log("app: none installed yet")
        _wait_for_check(hal, cfg, sched)
        return None
    if announce and not app[2]:
        log("app: starting " + str(app[1]))
    from lcm_device import mainfile

    step(mainfile.keep, hal)
    mainfile = None
    _arm_timer(hal, cfg, sched, app[2], check_in)
    keep = ()
    # The log is loaded when a line was logged (or by the HAL); only then can it be online.
    logged = sys.modules.get("lcm_device.log")
    if (logged is not None and logged.is_online()) or cfg.get("mqtt_url"):
        # Online (a simulated board without a radio is, from power-on), its socket and
        # state stay: a log loaded again would not know the network is up. With a fleet
        # link, which logs while the app runs (connections, hints), it stays too.
        keep = ("lcm_device.log", "cert_sector.logline")
    return slots.slot_dir(hal, app[0]), app[1], keep


def _wait_for_check(hal, cfg, sched):
    """No app to run: stay up until the next check is due, then reset into the manager.

    Returning would leave a board idle until someone resets it (a device whose
    first check failed would never check again). The unix HAL does not wait:
    `lcm device simulate` restarts it as a board's reset would, and its
    `--once` run ends here.
    """
    if not hal.waits_without_app:
        return
    checktimer = _arm_timer(hal, cfg, sched, False)
    if checktimer is None:
        # No life-cycle modules in this manager: check again after one interval.
        left = cfg.get("check_interval_s") or 14400
        log("app: waiting " + str(left) + " s for the next check")
        for _ in range(left):
            sleep_ms(1000)
        hal.reset()
    left = checktimer.seconds_until_due(uptime_s())
    log("app: waiting " + str(left) + " s for the next check")
    # A board's timer polls the check timer (during this sleep); without one, this loop does.
    by_timer = checktimer.timer is not None
    while True:
        sleep_ms(_IDLE_POLL_MS)
        if not by_timer:
            checktimer.poll(uptime_s())


def _arm_timer(hal, cfg, sched, trial, check_in=None):
    """While the app runs: scheduled checks, the boot's chores and, with a broker
    configured, the fleet link (lcm_device.checktimer, returned armed; None without it).
    It polls from a timer on boards; the unix port has no timer, so there a trial app is
    confirmed by lcm.confirm(), by its main module returning, or while it calls
    lcm.idle()."""
    try:
        from lcm_device import checktimer
    except ImportError as exc:
        # Damaged past the boot's self-check (no good copy): no checks while the app runs.
        log("app: no check timer (" + str(exc) + "); the next check at the next boot")
        return None
    also = ()
    if cfg.get("mqtt_url"):
        # Push hints and status while the app runs (lcm_device.fleet), on the timer's
        # deadline (it moves it for a push hint).
        from lcm_device.fleet import Agent

        also = (Agent(hal, cfg, checktimer).poll,)
    arm_timer(hal, sched, also, int(cfg.get("confirm_after_s") or 30) if trial else None, check_in)
    return checktimer


def arm_timer(hal, sched=None, pollers=(), confirm_after_s=None, check_in=None):
    """Arm lcm_device.checktimer with the boot's HAL and the deadline of `sched` (the
    boot's schedule; None: `check_in`, the seconds this boot's check decided, else the
    saved one, lcm_device.due), `pollers` run at each tick, a trial app confirmed
    `confirm_after_s` seconds from now (None: not a trial). Returns the board timer, or
    None (the app polls: lcm.idle)."""
    from lcm_device.timerwork import arm

    now = uptime_s()
    # No schedule of its own: this boot checked (the update boot, or the app boot after it).
    after_check = sched is None
    if check_in is not None:
        # What the check decided, not what the flash holds: on a full flash its record
        # was not saved, and the saved deadline is the check's own (now): a check again
        # at once, at every boot.
        left = check_in
    else:
        if after_check:
            from lcm_device.due import Due

            sched = Due(hal)
            sched.resume(now)
        left = 0 if sched.requested else max(0, sched.next - now)
    timer = arm(hal.root, left, confirm_after_s, hal.own_timer, False, hal, pollers, after_check)
    unload(["lcm_device.timerwork"], True)
    return timer
