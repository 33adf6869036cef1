"""The app's side of the boot: the app boot after an update boot, and the steps before any app.

The app boot that follows an update boot (the marker APP_NEXT, which holds
the update boot's reset cause) does only this module's steps: remove the
marker, give back the boot /main.py counted against a manager on trial (the
update boot before it judged the manager already: lcm_device.checkboot),
count the app's trial boot with that cause, arm the check timer and return
the app to start. lcm_device.boot imports this module only, not
lcm_device.startup, for it: what an app boot loads is what the app's heap
keeps (its interned names are never freed), and the update boot before it
checked the manager's files moments ago.

A power-on boot ignores the marker (the power went in between: a boot like
any other), and so does a boot that cannot remove it (a read-only flash would
otherwise never check again): those run lcm_device.startup, which uses the
steps below for its own app.

Flash writes (trial counts, boot state, log) survive a full or read-only
flash: the step is logged and the boot goes on to the app (`step`).
"""

from lcm_device import config, mainfile, slots, trial
from lcm_device import log as _logmod
from lcm_device.compat import const, exists, sleep_ms, uptime_s
from lcm_device.hal import get
from lcm_device.log import log, step
from lcm_device.slots import APP_NEXT

_IDLE_POLL_MS = const(1000)  # without an app: how often the boot polls the check schedule


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
    cause = step(_continues, hal, hal.reset_cause() == "power")
    if cause is None:
        try:
            from lcm_device import startup
        except ImportError as exc:
            # Damaged, and imported here, late, where /main.py's fallback does not see it:
            # a reset, whose boot (the marker gone) imports it with lcm_device.boot and
            # falls back to the other slot. Raised, it would stop the board at the REPL.
            log("boot: " + str(exc) + "; resetting")
            hal.reset()
        return startup.run(running)
    cfg = config.load(hal)
    _logmod.setup(hal, cfg)
    return app_boot(hal, cfg, cause)


def _bootloader(hal):
    # It runs at every reset (the unix port plays it: a flash write); what it booted was
    # recorded by the update boot (startup._firmware_booted), which installed no firmware.
    hal.boot_firmware()


def app_boot(hal, cfg, cause):
    """The steps of the app boot after an update boot that ended with reset cause `cause`."""
    step(_continued_trial, hal)
    return step(prepare_app, hal, cfg, None, cause == "power")


def _continues(hal, power):
    """The update boot's reset cause ("power" or "reset") when this is its app boot, else None."""
    path = hal.root + APP_NEXT
    try:
        with open(path, "rb") as f:
            cause = f.read(8)
    except OSError:
        return None
    try:
        hal.fs.remove(path)
    except OSError:
        return None  # a marker that stays would skip every check: a boot like any other
    if power:
        return None  # the power went after the update boot: a boot like any other
    return "power" if cause == b"power" else "reset"


def _continued_trial(hal):
    # /main.py counted this boot against a manager on trial; the update boot before it
    # judged the manager (confirmed it, or did not hold that boot against it).
    st = slots.load(hal)
    if slots.in_trial(st, "mgr") and st.get("mgr_trial"):
        st["mgr_trial"] -= 1
        st["mgr_boots"] = max(0, (st.get("mgr_boots") or 1) - 1)
        slots.save(hal, st)


def prepare_app(hal, cfg, sched, power):
    """Count the app's trial boot and arm the check timer; the app to start, (slot path,
    tag, modules that stay loaded besides lcm_device.boot's), or None."""
    st = slots.load(hal)
    if not st.get("app"):
        log("app: none installed yet")
        _wait_for_check(hal, cfg, sched)
        return None
    on_trial = st.get("app_tag")
    counted = trial.count_boot(hal, st, "app", power, log)
    if counted == "rolled back":
        bad = st.get("app_bad") == on_trial
        log(
            "app: "
            + str(on_trial)
            + (" failed its trial (" + str(st.get("app_bad_why")) + ")" if bad else " removed")
            + "; rolled back to "
            + str(st.get("app_tag"))
        )
    elif counted == "previous":
        log("app: trial boot not counted; running the previous release " + str(st.get("app_tag")))
    if not st.get("app"):
        _wait_for_check(hal, cfg, sched)
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
    else:
        log("app: starting " + str(tag))
    step(mainfile.keep, hal)
    _arm_timer(hal, cfg, sched, trying)
    keep = ()
    if _logmod.is_online() or cfg.get("mqtt_url"):
        # Online (a simulated board without a radio is, from power-on), its socket and
        # state stay: a log loaded again would not know the network is up. With a fleet
        # link, which logs while the app runs (connections, hints), it stays too.
        keep = ("lcm_device.log", "cert_sector.logline")
    return slots.slot_dir(hal, st["app"]), tag, keep


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


def _arm_timer(hal, cfg, sched, trial):
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
    after = int(cfg.get("confirm_after_s") or 30) if trial else None
    checktimer.arm_timer(hal, cfg, sched, also, after)
    return checktimer
