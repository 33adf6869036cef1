"""The update boot: the checks, then a reset into the app boot (lcm_device.boot).

lcm_device.startup runs it when a check is due. It brings the network up,
runs the checks (manager first, then app: lcm_device.update), records the
outcome (schedule, fleet status), judges a manager on trial and marks a new
firmware valid, releases the engine's modules, checks the manager's own
files (startup.repair_manager), then leaves the marker startup.APP_NEXT and
resets: the app starts in a boot that never imported the engine.

A manager on trial (counted by /main.py) is confirmed once a check of it
reached the server and got an answer (a release or none: idle, refused or
installed): the proof that the new manager can still update. A check that
fails or crashes talking to the network or a server is not held against it
(a server chooses what it sends); only failing to import or start, or an
exception in the boot's own steps, is. A trial that never reaches a server
is confirmed after slots.max_trial_boots boots without a fault of its own.
"""

import sys

from lcm_device import config, slots, startup
from lcm_device.compat import collect, ticks_ms, unload
from lcm_device.hal.fs import write_atomic
from lcm_device.startup import APP_NEXT, confirm_manager, log, repair_manager, step

# What a check imports (the network and the setup portal, the update engine, the
# verifier, TLS), released after the checks: module name prefixes. Named, not found by
# comparing sys.modules before and after: a list of every module loaded before, held
# through the check, was its peak's largest object after the buffer (about 20 names on
# a board, every module of the manager in the ROM model, which imports them all first).
_CHECK_MODULES = (
    "lcm_device.wifi",
    "lcm_device.portal",
    "lcm_device.update",
    "lcm_device.install",
    "lcm_device.fetch",
    "lcm_device.http",
    "lcm_device.trust",
    "lcm_device.firstpin",
    "lcm_device.rollout",
    "lcm_device.firmware",
    "cert_sector.",
    "ssl",
)
# Of those, what the boot had before the check (the boot state and log formats).
_BOOT_FORMATS = ("cert_sector.bootstate", "cert_sector.logline", "cert_sector.errors")


def run(hal, sched, power, buf):
    """Check with the buffer `buf`, then reset into the app boot (never returns on a
    board)."""
    cfg = config.load(hal)
    step(_checks, hal, cfg, sched, buf)
    buf = cfg = None
    # After the checks, whose buffers need the heap whole: a module the damage took
    # away makes this boot's check fail (logged), and the next boot's work.
    step(repair_manager, hal)
    try:
        write_atomic(hal.fs, hal.root + APP_NEXT, b"power" if power else b"reset")
    except OSError:
        return  # no marker, no reset: the app runs in this boot (lcm_device.startup)
    hal.reset()


def _checks(hal, cfg, sched, buf):
    """The checks and their outcome; resets at once after a manager install, and on a
    fault of the manager's or the firmware's own (a failed trial boot)."""
    now = 0
    if sched is not None:
        from lcm_device.schedule import uptime_s

        now = uptime_s()
    if not _network(hal, cfg):
        log("check: no network")
        _fleet_record(hal, cfg, ["failed"], "check: no network")
        _manager_trial(hal, ("no network",))
        if sched is not None:
            sched.record_failure(now)
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
    unload(
        [n for n in sys.modules if n.startswith(_CHECK_MODULES) and n not in _BOOT_FORMATS], True
    )
    _fleet_record(hal, cfg, results, last[1])
    st = slots.load(hal)
    if "crashed" in results and st.get("fw_pending"):
        log("firmware: crashed on trial; resetting (a failed trial boot)")
        hal.reset()
    running = startup.RUNNING
    if "broken" in results and slots.in_trial(st, "mgr") and running in (None, st["mgr"]):
        # Its own fault, not a server's: a failed trial boot.
        log("manager: a module of its own does not import; resetting (a failed trial boot)")
        hal.reset()
    st = None
    # A manager in trial does not check its own repo (results[0] is "idle" unasked).
    _manager_trial(hal, results[1:])
    _firmware_valid(hal)
    if sched is not None:
        if "failed" in results:
            sched.record_failure(now)
        else:
            sched.record_success(now)
    if results[-1] == "installed":
        hal.reset()  # the new app's trial boot: a boot like any other (no marker)


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


def _manager_trial(hal, results):
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
        confirm_manager(hal)
    elif (st.get("mgr_boots") or 0) >= slots.max_trial_boots(st):
        confirm_manager(hal, "after " + str(st["mgr_boots"]) + " boots without a fault of its own")
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
