"""What follows a check: its outcome recorded and the manager judged.

Imported by the update boot (lcm_device.checkboot) once the engine's modules are
released, so none of this is in the heap through the checks; a boot with no check due
runs `confirm_manager` and `repair_manager` too (lcm_device.startup).

A manager on trial (counted by /main.py) is confirmed once a check of it
reached the server and got an answer (a release or none: idle, refused or
installed): the proof that the new manager can still update. A check that
fails or crashes talking to the network or a server is not held against it
(a server chooses what it sends); only failing to import or start, or an
exception in the boot's own steps, is. A trial that never reaches a server
is confirmed after slots.max_trial_boots boots without a fault of its own.
"""

import sys

from lcm_device import slots
from lcm_device.compat import unload
from lcm_device.log import log


def record_schedule(hal, cfg, now, reached, wait=0):
    # The schedule's record of this check (a schedule on flash, made again here: the boot's
    # was released with the boot's steps); `wait`: the seconds a server asked for
    # (Retry-After) when it failed. No schedule module: nothing to record.
    try:
        from lcm_device.schedule import Schedule
    except ImportError:
        return
    sched = Schedule(hal, cfg)
    if reached:
        sched.record_success(now)
    else:
        sched.record_failure(now, wait)
    # What it decided, for the app boot's marker: on a full flash the save failed, and
    # the file still says 0 (the check's start), which would reset into a check again
    # at once, every boot.
    return sched.next - now


def fleet_record(hal, cfg, results, error):
    # With a broker configured, the fleet status reports the last check
    # (lcm_device.fleet: imported after the engine is unloaded, never during it).
    if not cfg.get("mqtt_url"):
        return
    from lcm_device import fleet
    from lcm_device.compat import free_heap

    fleet.record_check(hal, results, error, free_heap())


def manager_trial(hal, results, running):
    """Rule (manager trial): a server's answer to a check (idle, refused, installed)
    proves the manager can still update: confirmed. A check that failed or crashed
    (the network, or whatever a server sent) is not held against it (one that is
    "broken", a module of its own missing, resets the board: lcm_device.checkboot): the
    trial stays open, at most slots.max_trial_boots boots, then the manager is confirmed,
    having started and run that often without a fault of its own."""
    st = slots.load(hal)
    if not slots.in_trial(st, "mgr"):
        return
    if [r for r in results if r in ("idle", "refused", "installed")]:
        confirm_manager(hal, running, "")
    elif (st.get("mgr_boots") or 0) >= slots.max_trial_boots(st):
        confirm_manager(
            hal, running, "after " + str(st["mgr_boots"]) + " boots without a fault of its own"
        )
    else:
        # /main.py counted this boot as held against the manager until it proves
        # otherwise; it got this far without a fault of its own: not held.
        st["mgr_trial"] = max(0, (st.get("mgr_trial") or 0) - 1)
        slots.try_save(hal, st, log)
        log(
            "manager: in trial; no server answered ("
            + ", ".join(results)
            + "), not held against it; trial boot "
            + str(st.get("mgr_boots"))
            + " of at most "
            + str(slots.max_trial_boots(st))
        )


def firmware_valid(hal):
    st = slots.load(hal)
    if st.get("fw_pending"):
        hal.partitions().mark_app_valid_cancel_rollback()
        st["fw_pending"] = False
        slots.save(hal, st)
        log("firmware: " + str(st.get("fw_tag")) + " marked valid")


def repair_manager(hal, running):
    """Check the active manager slot's files against its signed manifest; repair them from
    the other slot (lcm_device.repair). When /main.py had to fall back to the other
    slot, this is what makes the active one start again at the next boot."""
    st = slots.load(hal, log)
    if running is not None and st["mgr"] != running:
        log("boot: running manager " + running + ", not the active " + st["mgr"])
    from lcm_device.compat import file_size

    if file_size(slots.manifest_path(hal, st["mgr"])) < 0:
        return  # the factory slot, or a frozen manager: nothing to check against
    # What it imports (the manifest parser) is released before the app, as after a check.
    loaded = list(sys.modules)
    try:
        from lcm_device import repair

        repair.manager_files(hal, st["mgr"], slots.inactive(st, "mgr"), log)
    except ImportError:
        pass
    except Exception as exc:  # a damaged manifest: /main.py's fallback is what is left
        log("manager: self-check failed: " + exc.__class__.__name__ + ": " + str(exc))
    repair = None
    unload([name for name in sys.modules if name not in loaded], release=True)


def confirm_manager(hal, running, how):
    st = slots.load(hal)
    if slots.in_trial(st, "mgr"):
        if running is not None and st["mgr"] != running:
            return  # the manager on trial did not start: /main.py runs another one
        tag = st.get("mgr_tag")
        try:
            slots.confirm(hal, st, "mgr")
        except OSError as exc:  # full or read-only flash: confirmed at a later boot
            log("manager: cannot confirm " + str(tag) + " now: OSError " + str(exc.args[0]))
            return
        log("manager: confirmed " + str(tag) + (" " + how if how else ""))


def app_boot_figures(hal, cfg, check_in=None):
    """(seconds to the next check: `check_in` as this boot's check decided it, else as
    saved, whether the gesture counter is settled) for the app boot's marker. Here, not
    in lcm_device.checkboot: its code would be in the heap through the checks. Settled:
    gestures off, or this boot has been up long enough to settle it (a check over Wi-Fi
    is); else the app boot's check timer does it, with a HAL made for it."""
    from lcm_device.compat import uptime_s
    from lcm_device.due import Due

    left = check_in
    if left is None:
        due = Due(hal)
        left = 0 if due.requested or due.remaining is None else due.remaining
        due = None
    if cfg.get("gestures") is False:
        return left, True
    from lcm_device import gestures

    now = uptime_s()
    if now < gestures.QUICK_S:
        return left, False
    gestures.settle(hal, now)
    return left, True
