"""The update boot: the checks, then a reset into the app boot (lcm_device.boot).

lcm_device.startup finds a check due; lcm_device.boot then releases the
boot's steps (startup, appboot, the schedule: their code and objects would
sit in the heap through the checks) and runs this module. It brings the
network up, runs the checks (manager first, then app: lcm_device.update),
records the outcome (schedule, fleet status), judges a manager on trial and
marks a new firmware valid, releases the engine's modules, checks the
manager's own files (`repair_manager`), then leaves the marker
slots.APP_NEXT and resets: the app starts in a boot that never imported the
engine. A boot with no check due runs `confirm_manager` and `repair_manager`
too (lcm_device.startup).

A manager on trial (counted by /main.py) is confirmed once a check of it
reached the server and got an answer (a release or none: idle, refused or
installed): the proof that the new manager can still update. A check that
fails or crashes talking to the network or a server is not held against it
(a server chooses what it sends); only failing to import or start, or an
exception in the boot's own steps, is. A trial that never reaches a server
is confirmed after slots.max_trial_boots boots without a fault of its own.
"""

import sys

from lcm_device import config, slots
from lcm_device.compat import collect, ticks_ms, unload, uptime_s
from lcm_device.hal.fs import write_atomic
from lcm_device.log import log, step
from lcm_device.slots import APP_NEXT

# What a check imports (the network and the setup portal, the update engine, the
# verifier, TLS), released after the checks: module name prefixes. Named, not found by
# comparing sys.modules before and after: a list of every module loaded before, held
# through the check, was its peak's largest object after the buffer (about 20 names on
# a board, every module of the manager in the ROM model, which imports them all first).
# One string each, split where used: a tuple constant is an object in RAM through the
# checks on a board (frozen or ROMFS), a string is not.
_CHECK_MODULES = (
    "lcm_device.wifi lcm_device.portal lcm_device.update lcm_device.install"
    " lcm_device.metadata lcm_device.slotfill lcm_device.fetch lcm_device.http"
    " lcm_device.trust lcm_device.firstpin lcm_device.rollout lcm_device.firmware"
    " cert_sector. ssl"
)
# Of those, what the boot had before the check (the boot state and log formats).
_BOOT_FORMATS = "cert_sector.bootstate cert_sector.logline cert_sector.errors"


def run(hal, power, buf, running):
    """Check with the buffer `buf`, then reset into the app boot (never returns on a
    board); `running`: the manager slot this code runs from (lcm_device.boot.RUNNING).
    Where the marker cannot be left, the app runs in this boot: what
    appboot.prepare_app returns."""
    step(_checks, hal, buf, running)  # a full flash or a MemoryError: logged, the boot goes on
    buf = None
    # After the checks, whose buffers need the heap whole: a module the damage took
    # away makes this boot's check fail (logged), and the next boot's work.
    step(repair_manager, hal, running)
    try:
        write_atomic(hal.fs, hal.root + APP_NEXT, b"power" if power else b"reset")
    except OSError:
        # No marker, no reset: the app runs in this boot.
        from lcm_device.appboot import prepare_app

        return step(prepare_app, hal, config.load(hal), None, power)
    hal.reset()


def _checks(hal, buf, running):
    """The checks and their outcome; resets at once after a manager install, and on a
    fault of the manager's or the firmware's own (a failed trial boot)."""
    cfg = config.load(hal)
    now = uptime_s()
    if not _network(hal, cfg):
        log("check: no network")
        _fleet_record(hal, cfg, ["failed"], "check: no network")
        _manager_trial(hal, ("no network",), running)
        _record(hal, cfg, now, False)
        return
    try:
        from lcm_device.update import BUF_SIZE, Updater
    except ImportError as exc:  # a damaged manager: the app still runs (repair: next boot)
        log("check: the update engine does not import: " + str(exc))
        return

    if len(buf) < BUF_SIZE:
        buf = bytearray(BUF_SIZE)  # startup's _CHECK_BUF out of date: correct, at a cost in heap
    results = []
    last = [None, None]  # the engine's last log line; the last refusal or failure

    def note(text):
        last[0] = text
        log(text)

    # One budget for the boot's two checks (docs/threat-model.md, "Check budget"): the app
    # check's clock starts with the manager check's, so no server keeps the app down for
    # the two budgets added up.
    started = ticks_ms()
    for kind in ("mgr", "app"):
        updater = Updater(hal, cfg, kind, buf, note)
        updater.started = started
        result = updater.check()
        updater = None
        results.append(result)
        if result in ("refused", "failed", "crashed", "broken"):
            last[1] = last[0]
        collect()
        if result == "installed" and kind == "mgr":
            hal.reset()  # the new manager's own update boot comes next (it is on trial)
    Updater = buf = None
    mine, kept = tuple(_CHECK_MODULES.split()), _BOOT_FORMATS.split()
    unload([n for n in sys.modules if n.startswith(mine) and n not in kept], True)
    mine = kept = None
    _fleet_record(hal, cfg, results, last[1])
    st = slots.load(hal)
    if "crashed" in results and st.get("fw_pending"):
        log("firmware: crashed on trial; resetting (a failed trial boot)")
        hal.reset()
    if "broken" in results and slots.in_trial(st, "mgr") and running in (None, st["mgr"]):
        # Its own fault, not a server's: a failed trial boot.
        log("manager: a module of its own does not import; resetting (a failed trial boot)")
        hal.reset()
    st = None
    # A manager in trial does not check its own repo (results[0] is "idle" unasked).
    _manager_trial(hal, results[1:], running)
    _firmware_valid(hal)
    _record(hal, cfg, now, "failed" not in results)
    if results[-1] == "installed":
        hal.reset()  # the new app's trial boot: a boot like any other (no marker)


def _record(hal, cfg, now, reached):
    # The schedule's record of this check (a schedule on flash, made again here: the boot's
    # was released with the boot's steps). No schedule module: nothing to record.
    try:
        from lcm_device.schedule import Schedule
    except ImportError:
        return
    sched = Schedule(hal, cfg)
    if reached:
        sched.record_success(now)
    else:
        sched.record_failure(now)


def _fleet_record(hal, cfg, results, error):
    # With a broker configured, the fleet status reports the last check
    # (lcm_device.fleet: imported after the engine is unloaded, never during it).
    if not cfg.get("mqtt_url"):
        return
    from lcm_device import fleet
    from lcm_device.compat import free_heap

    fleet.record_check(hal, results, error, free_heap())


def _network(hal, cfg):
    if not hal.has_radio():
        return True  # the unix port without a radio script: the host's network is up
    try:
        from lcm_device import wifi

        up = wifi.connect_or_setup(hal, cfg, **hal.portal_args()) is not None
    except ImportError:
        log("wifi: no Wi-Fi module in this manager")
        return False
    if up and hal.time() is None:
        # A known clock lets the engine refuse expired cert sectors (rule S7).
        log("clock: set from NTP" if hal.sync_clock() else "clock: unknown (NTP failed)")
    return up


def _manager_trial(hal, results, running):
    """Rule (manager trial): a server's answer to a check (idle, refused, installed)
    proves the manager can still update: confirmed. A check that failed or crashed
    (the network, or whatever a server sent) is not held against it (one that is
    "broken", a module of its own missing, resets the board in _checks): the trial stays
    open, at most slots.max_trial_boots boots, then the manager is confirmed, having
    started and run that often without a fault of its own."""
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


def _firmware_valid(hal):
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
