"""The update boot: the checks, then a reset into the app boot (lcm_device.boot).

lcm_device.startup finds a check due; lcm_device.boot then releases the
boot's steps (startup, appboot, the schedule: their code and objects would
sit in the heap through the checks) and runs this module. It brings the
network up, runs the checks (manager first, then app: lcm_device.update),
releases the engine's modules, then records the outcome (schedule, fleet
status), judges a manager on trial, marks a new firmware valid and checks
the manager's own files (lcm_device.aftercheck, imported only then), counts
the app's trial boot, then leaves the marker slots.APP_NEXT and resets: the
app starts in a boot that never imported the engine, from /main.py alone.
"""

import sys

from lcm_device import slots
from lcm_device.compat import collect, step, ticks_ms, unload, uptime_s
from lcm_device.hal.fs import write_atomic
from lcm_device.log import log
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
_BOOT_FORMATS = "cert_sector.bootstate cert_sector.logline"


def run(hal, power, buf, running):
    """Check with the buffer `buf`, then reset into the app boot (never returns on a
    board); `running`: the manager slot this code runs from (lcm_device.boot.RUNNING).
    Where the marker cannot be left, the app runs in this boot: what
    appboot.prepare_app returns."""
    check_in = None  # seconds to the next check as the outcome decided (None: unrecorded)
    try:
        # A full flash or a MemoryError: logged, the boot goes on.
        check_in = step(_checks, hal, buf, running)
        buf = None
        # After the checks, whose buffers need the heap whole: a module the damage took
        # away makes this boot's check fail (logged), and the next boot's work.
        from lcm_device.aftercheck import repair_manager

        step(repair_manager, hal, running)
    except ImportError as exc:
        # lcm_device.aftercheck damaged (the engine's own import is handled in _checks):
        # the outcome goes unrecorded, the app runs (lcm_device.startup says what follows).
        log("check: the manager's self-check does not import: " + str(exc))
    buf = None
    from lcm_device import config
    from lcm_device.appboot import count_app, marker_for

    cfg = config.load(hal)
    # The app boot's trial boot, counted here so that /main.py can start the app alone:
    # not with a fleet link (the app boot connects it) or a firmware on trial (a board's
    # bootloader judges it at the reset; the unix HAL plays that in the boot's steps).
    app = step(count_app, hal, power)
    if cfg.get("mqtt_url") or slots.load(hal).get("fw_pending"):
        running = None
    try:
        from lcm_device.aftercheck import app_boot_figures

        check_in, settled = app_boot_figures(hal, cfg, check_in)
    except Exception as exc:  # (a damaged module, the heap): lcm_device.boot starts the app
        log("check: the app boot's figures: " + repr(exc))
        settled, running = False, None
        check_in = 0 if check_in is None else check_in  # the check's decision, if it made one
    try:
        # The reset cause, the settings and the app the app boot reads (it loads no config).
        write_atomic(
            hal.fs,
            hal.root + APP_NEXT,
            marker_for(cfg, power, app, running, check_in, hal.own_timer, settled),
        )
    except OSError:
        # No marker, no reset: the app runs in this boot.
        from lcm_device.appboot import prepare_app

        return step(prepare_app, hal, cfg, None, power, True, app, check_in)
    hal.reset()


def _checks(hal, buf, running):
    """The checks and their outcome; resets at once after a manager install, and on a
    fault of the manager's or the firmware's own (a failed trial boot)."""
    from lcm_device import config

    cfg = config.load(hal)
    # Released with the boot's steps and again here: the checks need the settings, not
    # the module (the portal and a first pin import it again to save).
    config = None
    unload(["lcm_device.config"], True)
    now = uptime_s()
    if not _network(hal, cfg):
        log("check: no network")
        from lcm_device import aftercheck

        aftercheck.fleet_record(hal, cfg, ["failed"], "check: no network")
        aftercheck.manager_trial(hal, ["no network"], running)
        return aftercheck.record_schedule(hal, cfg, now, False)
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
    wait = 0  # the longest a server asked to wait (Retry-After), in seconds
    # Lists, made here: tuples would be constants, objects in RAM on a board while this
    # module is loaded (through the checks).
    for kind in ["mgr", "app"]:
        updater = Updater(hal, cfg, kind, buf, note)
        updater.started = started
        result = updater.check()
        wait = max(wait, updater.retry_after or 0)
        updater = None
        results.append(result)
        if result in ["refused", "failed", "crashed", "broken"]:
            last[1] = last[0]
        collect()
        if result == "installed" and kind == "mgr":
            hal.reset()  # the new manager's own update boot comes next (it is on trial)
    Updater = buf = None
    mine, kept = tuple(_CHECK_MODULES.split()), _BOOT_FORMATS.split()
    unload([n for n in sys.modules if n.startswith(mine) and n not in kept], True)
    mine = kept = None
    from lcm_device import aftercheck

    aftercheck.fleet_record(hal, cfg, results, last[1])
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
    aftercheck.manager_trial(hal, results[1:], running)
    aftercheck.firmware_valid(hal)
    if wait and "failed" in results:
        log("check: the server asked for %s s before the next check (Retry-After)" % (wait,))
    check_in = aftercheck.record_schedule(hal, cfg, now, "failed" not in results, wait)
    if results[-1] == "installed":
        hal.reset()  # the new app's trial boot: a boot like any other (no marker)
    return check_in


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
