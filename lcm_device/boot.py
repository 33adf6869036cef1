"""What the device does at every boot, after /main.py picked the manager slot.

  config -> log -> network (Wi-Fi or setup portal) -> update checks when due
  (manager first, then app) -> confirm a manager in trial -> run the app.

The app runs from its slot (/lcm/appN/main.py, imported as module `main`).
In trial mode each boot is counted first (slots.count_trial_boot); an app
that raises, at import or later, resets the board, which counts as a failed
trial boot, and after `trial_boots` of them the previous slot comes back. A
power-on boot does not hold the boot before it (cut short by the power)
against the release; a trial gets at most slots.max_trial_boots boots in all.
A trial app is confirmed when it calls `lcm.confirm()`, when it has run for
`confirm_after_s` (a HAL timer, on boards), or when its main module returns.

A manager in trial (counted by /main.py) is confirmed once a check of it
reached the server and got an answer (a release or none: idle, refused or
installed): the proof that the new manager can still update. A check that
fails or crashes talking to the network or a server is not held against it
(a server chooses what it sends); only failing to import or start, or an
exception in the boot's own steps, is. A trial that never reaches a server
is confirmed after slots.max_trial_boots boots without a fault of its own.

Flash writes at boot (trial counts, boot state, schedule, gestures, log)
survive a full or read-only flash: the step is logged and the boot goes on
to the app (`_step`).
"""

import sys

from lcm_device import config, slots
from lcm_device.compat import collect, const, sleep_ms

_log = print
# The manager slot this code runs from, set by /main.py; None: a /main.py that does not say.
RUNNING = None
_IDLE_POLL_MS = const(1000)  # without an app: how often the boot polls the check schedule
_CHECK_BUF = const(5120)  # lcm_device.update.BUF_SIZE, without importing the engine


def log(text):
    _log(text)


def main():
    global _log
    from lcm_device.hal import get

    hal = get()
    config.keep_good(hal)
    cfg = config.load(hal)
    try:
        from lcm_device import log as logmod

        logmod.setup(hal, cfg)
        _log = logmod.log
    except ImportError:
        pass
    _step(_firmware_booted, hal)
    if _step(_gestures, hal, cfg) == "setup":
        _step(_setup_mode, hal, cfg)  # the button held at power-on
    cfg = None
    collect()
    # The check's one buffer first, in a clean heap: allocated later, after what lives
    # through the boot, 5 KB in one piece may no longer be there on a small heap.
    buf = bytearray(_CHECK_BUF)
    cfg = config.load(hal)  # a gesture or the portal may have changed it
    _log_boot(hal)
    sched = _step(_checks, hal, cfg, buf)
    buf = None
    # After the checks, whose buffers need the heap whole: a module the damage took
    # away makes this boot's check fail (logged), and the next boot's work.
    _step(_repair_manager, hal)
    run_app(hal, cfg, sched)


def _step(fn, *args):
    """Run one boot step; a full or read-only flash (OSError) is logged, the boot goes on,
    and so it does when the heap is too fragmented for the step (MemoryError): the app
    runs rather than a crash at every boot."""
    try:
        return fn(*args)
    except MemoryError:
        log("boot: " + fn.__name__.lstrip("_") + " skipped (MemoryError)")
        return None
    except OSError as exc:
        code = exc.args[0] if exc.args else None
        why = {28: "flash full", 30: "flash read-only"}.get(code, "OSError " + str(code))
        log("boot: " + fn.__name__.lstrip("_") + " skipped (" + why + ")")
        return None


def _repair_manager(hal):
    """Check the active manager slot's files against its signed manifest; repair them from
    the other slot (lcm_device.repair). When /main.py had to fall back to the other
    slot, this is what makes the active one start again at the next boot."""
    st = slots.load(hal, log)
    if RUNNING is not None and st["mgr"] != RUNNING:
        log("boot: running manager " + RUNNING + ", not the active " + st["mgr"])
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
    _unload([name for name in sys.modules if name not in loaded], release=True)


def _log_boot(hal):
    # Its own frame: the state read for the line is freed before the check.
    st = slots.load(hal, log)
    log(
        "boot: manager "
        + st["mgr"]
        + " "
        + str(st.get("mgr_tag") or "(factory)")
        + _trial(st, "mgr")
        + ", app "
        + str(st.get("app_tag"))
        + _trial(st, "app")
    )


def _gestures(hal, cfg):
    # Power-cycle counting (lcm_device.gestures), on power-on boots; `gestures:
    # false` in the config turns it off (test rigs that cut power on purpose).
    if cfg.get("gestures") is False:
        return None
    try:
        from lcm_device import gestures
    except ImportError:
        return None
    action = gestures.at_boot(hal, cfg, _reset_cause(hal) == "power")
    # Its heap is needed by the check; checktimer imports it again for settle().
    _unload(("lcm_device.gestures",))
    return action


def _setup_mode(hal, cfg):
    """Run one setup session (access point, DNS, portal); a check follows at once when
    it connected, so a repo or network set on the page takes effect now."""
    try:
        from lcm_device import wifi
    except ImportError:
        log("wifi: no Wi-Fi module in this manager")
        return
    up = wifi.setup_mode(hal, cfg, **_portal_args(hal))
    wifi = None
    _unload([n for n in sys.modules if n.startswith(("lcm_device.portal", "lcm_device.wifi"))])
    if up:
        from lcm_device.schedule import request_check

        request_check(hal)


def _firmware_booted(hal):
    """After a firmware update: which OTA partition did the bootloader start?

    ESP-IDF boots a new image once, pending verification; a reset before it is
    marked valid (a crash, or a firmware that never reaches Python) makes the
    bootloader return to the old partition. Such an image is recorded as
    `fw_bad`, so later checks do not offer it again (a newer tag is installed).
    """
    hal.boot_firmware()  # the unix port plays ESP-IDF's bootloader (simpartition.py)
    st = slots.load(hal, log)  # the boot's first look at the state: a rebuild is logged
    nxt = st.get("fw_next")
    pending = st.get("fw_pending")
    if not nxt and not isinstance(pending, str):
        return
    from lcm_device.install import partition_label

    parts = hal.partitions()
    running = partition_label(parts(parts.RUNNING))
    if nxt:
        tag, seq, label = nxt[0], nxt[1], nxt[2]
        if running == label:
            st["fw_prev"] = [st.get("fw_tag"), st.get("fw_seq")]
            st["fw_tag"], st["fw_seq"], st["fw_pending"] = tag, seq, label
            log("firmware: " + tag + " booted from " + label + ", pending verification")
        elif len(nxt) > 3:
            # set_boot() ran (the 4th element says so), yet the old image runs.
            st["fw_bad"] = tag
            log("firmware: " + tag + " was rolled back by the bootloader; running " + running)
        else:
            # A power cut before set_boot(): a later check offers the release again.
            log("firmware: " + tag + " did not boot; running " + running)
        st["fw_next"] = None
    elif running != pending:
        # It booted, then a reset came before its first check marked it valid.
        tag = st.get("fw_tag")
        prev = st.get("fw_prev") or [None, None]
        st["fw_bad"] = tag
        st["fw_tag"], st["fw_seq"], st["fw_pending"] = prev[0], prev[1], False
        log(
            "firmware: "
            + str(tag)
            + " was rolled back by the bootloader before it was marked valid; running "
            + running
        )
    else:
        return
    slots.try_save(hal, st, log)


def _firmware_valid(hal):
    st = slots.load(hal)
    if st.get("fw_pending"):
        hal.partitions().mark_app_valid_cancel_rollback()
        st["fw_pending"] = False
        slots.save(hal, st)
        log("firmware: " + str(st.get("fw_tag")) + " marked valid")


def _trial(st, kind):
    t = st.get(kind + "_trial")
    return "" if t is None else " (trial boot " + str(t) + ")"


def _checks(hal, cfg, buf):
    """Update checks when due; resets when something was installed. Returns the schedule."""
    sched = None
    now = 0
    try:
        from lcm_device import schedule

        now = schedule.uptime_s()
        sched = schedule.Schedule(hal, cfg)
        sched.on_boot(now, _reset_cause(hal) == "power")
    except ImportError:
        pass
    # A manager in trial (or a new firmware) checks at once: completing a check
    # is what confirms it.
    st = slots.load(hal)
    due = (
        hal.check_now
        or slots.in_trial(st, "mgr")
        or st.get("fw_pending")
        or sched is None
        or sched.due(now)
    )
    st = None  # the engine reads the state itself: one copy in the heap, not two
    if not due:
        log("check: not due for " + str(sched.seconds_until_due(now)) + " s")
        _confirm_manager(hal)
        return sched
    # What the check imports (network, engine, verifier) is released after it.
    loaded = list(sys.modules)
    if not _network(hal, cfg):
        log("check: no network")
        _fleet_record(hal, cfg, ["failed"], "check: no network")
        _manager_trial(hal, ("no network",))
        if sched is not None:
            sched.record_failure(now)
        return sched
    try:
        from lcm_device.update import BUF_SIZE, Updater
    except ImportError as exc:  # a damaged manager: the app still runs (repair: next boot)
        log("check: the update engine does not import: " + str(exc))
        return sched

    if len(buf) < BUF_SIZE:
        buf = bytearray(BUF_SIZE)  # _CHECK_BUF out of date: correct, at a cost in heap
    results = []
    last = [None, None]  # the engine's last log line; the last refusal or failure

    def note(text):
        last[0] = text
        log(text)

    for kind in ("mgr", "app"):
        result = Updater(hal, cfg, kind, buf, note).check()
        results.append(result)
        if result in ("refused", "failed", "crashed", "broken"):
            last[1] = last[0]
        collect()
        if result == "installed" and kind == "mgr":
            hal.reset()
    Updater = buf = None
    _unload([name for name in sys.modules if name not in loaded], release=True)
    loaded = None
    _fleet_record(hal, cfg, results, last[1])
    st = slots.load(hal)
    if "crashed" in results and st.get("fw_pending"):
        log("firmware: crashed on trial; resetting (a failed trial boot)")
        hal.reset()
    if "broken" in results and slots.in_trial(st, "mgr") and RUNNING in (None, st["mgr"]):
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
        hal.reset()
    return sched


def _fleet_record(hal, cfg, results, error):
    # With a broker configured, the fleet status reports the last check
    # (lcm_device.fleet: imported after the engine is unloaded, never during it).
    if not cfg.get("mqtt_url"):
        return
    from lcm_device import fleet
    from lcm_device.compat import free_heap

    fleet.record_check(hal, results, error, free_heap())


def _unload(names, release=False):
    # Out of sys.modules. With `release`, out of its package's attributes too, so
    # that its objects are freed (a submodule stays an attribute of its package);
    # without, `from package import name` still finds it and does not load it again.
    for name in names:
        if name in sys.modules:
            del sys.modules[name]
            cut = name.rfind(".")
            package = sys.modules.get(name[:cut]) if release and cut > 0 else None
            if package is not None and name[cut + 1 :] in package.__dict__:
                delattr(package, name[cut + 1 :])
    collect()


def _reset_cause(hal):
    return hal.reset_cause()


def _network(hal, cfg):
    if not hal.has_radio():
        return True  # the unix port without a radio script: the host's network is up
    try:
        from lcm_device import wifi

        up = wifi.connect_or_setup(hal, cfg, **_portal_args(hal)) is not None
    except ImportError:
        log("wifi: no Wi-Fi module in this manager")
        return False
    if up and hal.time() is None:
        # A known clock lets the engine refuse expired cert sectors (rule S7).
        log("clock: set from NTP" if hal.sync_clock() else "clock: unknown (NTP failed)")
    return up


def _portal_args(hal):
    # Boards serve the portal on ports 80 and 53 of the access point; the unix
    # HAL may name loopback ports (LCM_PORTAL) so a test or a simulation can reach it.
    return hal.portal_args()


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
        _confirm_manager(hal)
    elif (st.get("mgr_boots") or 0) >= slots.max_trial_boots(st):
        _confirm_manager(hal, "after " + str(st["mgr_boots"]) + " boots without a fault of its own")
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


def _confirm_manager(hal, how=""):
    st = slots.load(hal)
    if slots.in_trial(st, "mgr"):
        if RUNNING is not None and st["mgr"] != RUNNING:
            return  # the manager on trial did not start: /main.py runs another one
        tag = st.get("mgr_tag")
        try:
            slots.confirm(hal, st, "mgr")
        except OSError as exc:  # full or read-only flash: confirmed at a later boot
            log("manager: cannot confirm " + str(tag) + " now: OSError " + str(exc.args[0]))
            return
        log("manager: confirmed " + str(tag) + (" " + how if how else ""))


def run_app(hal, cfg, sched=None):
    st = slots.load(hal)
    if not st.get("app"):
        log("app: none installed yet")
        _wait_for_check(hal, cfg, sched)
        return
    on_trial = st.get("app_tag")
    counted = slots.count_trial_boot(hal, st, "app", _reset_cause(hal) == "power", log)
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
        return
    tag = st.get("app_tag")
    trial = slots.in_trial(st, "app")
    if trial:
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
    _step(_keep_main, hal)
    _arm_watcher(hal, cfg, sched, trial)
    path = slots.slot_dir(hal, st["app"])
    sys.path.insert(0, path)
    # The slot is the app's working place: its relative paths stay inside it.
    import os

    os.chdir(path)
    collect()
    try:
        __import__("main")
    except Exception as exc:
        log("app: " + str(tag) + " failed: " + exc.__class__.__name__ + ": " + str(exc))
        _step(_restore_main, hal)
        hal.reset()
    _step(_restore_main, hal)
    # The app's main module returned normally: it ran healthy.
    from lcm_device.app import confirm

    confirm()


# /main.py starts the manager and nothing updates it, so the boot keeps a copy and
# puts it back when an app removed or emptied it: before every reset the boot makes
# after the app ran, when the app returns, and every second from the check timer on
# boards. An app that removes it and cuts the power itself beats this (docs/device.md).
_MAIN = "/main.py"
_MAIN_COPY = "/lcm/state/main.py.good"


def _keep_main(hal):
    from lcm_device.compat import file_size

    if file_size(hal.root + _MAIN) > 0 and file_size(hal.root + _MAIN_COPY) < 0:
        _copy(hal, hal.root + _MAIN, hal.root + _MAIN_COPY)


def _restore_main(hal, now_s=None):
    from lcm_device.compat import file_size

    if file_size(hal.root + _MAIN) <= 0 and file_size(hal.root + _MAIN_COPY) > 0:
        _copy(hal, hal.root + _MAIN_COPY, hal.root + _MAIN)
        log("boot: /main.py was removed; restored from " + _MAIN_COPY)


def _copy(hal, source, target):
    buf = bytearray(256)
    tmp = target + ".tmp"
    out = hal.fs.open_write(tmp)
    try:
        with open(source, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                out.write(memoryview(buf)[:n])
    finally:
        out.close()
    hal.fs.rename(tmp, target)


def _wait_for_check(hal, cfg, sched):
    """No app to run: stay up until the next check is due, then reset into the manager.

    Returning would leave a board idle until someone resets it (a device whose
    first check failed would never check again). The unix HAL does not wait:
    `lcm device simulate` restarts it as a board's reset would, and its
    `--once` run ends here.
    """
    if not hal.waits_without_app:
        return
    watcher = _arm_watcher(hal, cfg, sched, False)
    if watcher is None:
        # No life-cycle modules in this manager: check again after one interval.
        left = cfg.get("check_interval_s") or 14400
        log("app: waiting " + str(left) + " s for the next check")
        for _ in range(left):
            sleep_ms(1000)
        hal.reset()
    from lcm_device.schedule import uptime_s

    left = watcher.sched.seconds_until_due(uptime_s())
    log("app: waiting " + str(left) + " s for the next check")
    # A board's timer polls the watcher (during this sleep); without one, this loop does.
    by_timer = watcher.timer is not None
    while True:
        sleep_ms(_IDLE_POLL_MS)
        if not by_timer:
            watcher.poll(uptime_s())


def _arm_watcher(hal, cfg, sched, trial):
    """While the app runs: scheduled checks, gesture settling, and the trial's confirmation.

    lcm_device.checktimer polls these from a timer on boards; the unix port
    has no timer, so there a trial app is confirmed by lcm.confirm() or by
    its main module returning.
    """
    try:
        from lcm_device import checktimer
    except ImportError:
        return None
    also = [lambda now_s: _step(_restore_main, hal)]
    try:
        from lcm_device import gestures

        also.append(lambda now_s: gestures.settle(hal, now_s))
    except ImportError:
        pass
    agent = None
    if cfg.get("mqtt_url"):
        # Push hints and status while the app runs (lcm_device.fleet).
        from lcm_device.fleet import Agent

        agent = Agent(hal, cfg)
        also.append(agent.poll)
    if trial:
        after = int(cfg.get("confirm_after_s") or 30)
        pending = [True]

        def confirm_when_healthy(now_s):
            if pending[0] and now_s >= after:
                pending[0] = False
                from lcm_device.app import confirm

                confirm()

        also.append(confirm_when_healthy)
    watcher = checktimer.arm_timer(hal, cfg, sched, also)
    if agent is not None:
        agent.sched = watcher.sched
    return watcher
