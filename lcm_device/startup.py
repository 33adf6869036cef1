"""Every boot's steps up to the app or the check (lcm_device.boot runs the app).

  config -> log -> firmware booted? -> after an update boot: the app boot
  -> else gestures (setup portal) -> schedule -> due: the update boot
  (lcm_device.checkboot: checks, then a reset into the app boot)
  -> not due: manager self-check, the app boot in this boot.

The app runs from its slot (/lcm/appN/main.py, imported as module `main`).
In trial mode each boot is counted first (slots.count_trial_boot); an app
that raises, at import or later, resets the board, which counts as a failed
trial boot, and after `trial_boots` of them the previous slot comes back. A
power-on boot does not hold the boot before it (cut short by the power)
against the release; a trial gets at most slots.max_trial_boots boots in all.
A trial app is confirmed when it calls `lcm.confirm()`, when it has run for
`confirm_after_s` (a HAL timer, on boards), or when its main module returns.

The app boot that follows an update boot (the marker APP_NEXT, which holds
the update boot's reset cause) counts the app's trial boot with that cause,
and does not count itself against a manager on trial (/main.py did): the
update boot before it judged the manager already (lcm_device.checkboot).
A power-on boot ignores the marker (the power went in between: a boot like
any other), and so does a boot that cannot remove it (a read-only flash
would otherwise never check again).

Flash writes at boot (trial counts, boot state, schedule, gestures, log)
survive a full or read-only flash: the step is logged and the boot goes on
to the app (`step`).
"""

import sys

from lcm_device import config, mainfile, slots
from lcm_device.compat import collect, const, sleep_ms, unload

try:
    from lcm_device import log as _logmod
except ImportError:  # a manager without the log module: the console only
    _logmod = None

# The manager slot this code runs from, set by /main.py; None: a /main.py that does not say.
RUNNING = None
# Written by the update boot before its reset: the next boot is the app boot.
APP_NEXT = "/lcm/state/app.next"
_IDLE_POLL_MS = const(1000)  # without an app: how often the boot polls the check schedule
_CHECK_BUF = const(5120)  # lcm_device.update.BUF_SIZE, without importing the engine


def log(text):
    if _logmod is None:
        print(text)
    else:
        _logmod.log(text)


def run(running):
    """This boot's steps; returns the app to start, (slot path, tag), or None."""
    global RUNNING
    RUNNING = running
    from lcm_device.hal import get

    hal = get()
    config.keep_good(hal)
    cfg = config.load(hal)
    if _logmod is not None:
        _logmod.setup(hal, cfg)
    step(_firmware_booted, hal)
    power = hal.reset_cause() == "power"
    cause = step(_continues, hal, power)
    if cause is not None:
        step(_continued_trial, hal)
        return step(prepare_app, hal, cfg, None, cause == "power")
    if step(_gestures, hal, cfg, power) == "setup":
        step(_setup_mode, hal, cfg)  # the button held at power-on
    cfg = None
    collect()
    # The check's one buffer first, in a clean heap: allocated later, after what lives
    # through the boot, 5 KB in one piece may no longer be there on a small heap.
    buf = bytearray(_CHECK_BUF)
    cfg = config.load(hal)  # a gesture or the portal may have changed it
    _log_boot(hal)
    sched = step(_schedule, hal, cfg, power)
    if _due(hal, sched):
        cfg = None
        from lcm_device import checkboot

        # Resets the board into the app boot; returns where a step failed on the flash.
        step(checkboot.run, hal, sched, power, buf)
        checkboot = buf = None
        cfg = config.load(hal)
    else:
        buf = None
        confirm_manager(hal)
        step(repair_manager, hal)
    return step(prepare_app, hal, cfg, sched, power)


def step(fn, *args):
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


def _schedule(hal, cfg, power):
    try:
        from lcm_device import schedule
    except ImportError:
        return None
    sched = schedule.Schedule(hal, cfg)
    sched.on_boot(schedule.uptime_s(), power)
    return sched


def _due(hal, sched):
    # A manager on trial (or a new firmware) checks at once: completing a check is
    # what confirms it.
    st = slots.load(hal)
    if hal.check_now or slots.in_trial(st, "mgr") or st.get("fw_pending") or sched is None:
        return True
    from lcm_device.schedule import uptime_s

    left = sched.seconds_until_due(uptime_s())
    if left:
        log("check: not due for " + str(left) + " s")
    return not left


def repair_manager(hal):
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
    unload([name for name in sys.modules if name not in loaded], release=True)


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


def _gestures(hal, cfg, power):
    # Power-cycle counting (lcm_device.gestures), on power-on boots; `gestures:
    # false` in the config turns it off (test rigs that cut power on purpose).
    if cfg.get("gestures") is False:
        return None
    try:
        from lcm_device import gestures
    except ImportError:
        return None
    action = gestures.at_boot(hal, cfg, power)
    # Its heap is needed by the check; checktimer imports it again for settle().
    unload(("lcm_device.gestures",))
    return action


def _setup_mode(hal, cfg):
    """Run one setup session (access point, DNS, portal); a check follows at once when
    it connected, so a repo or network set on the page takes effect now."""
    try:
        from lcm_device import wifi
    except ImportError:
        log("wifi: no Wi-Fi module in this manager")
        return
    up = wifi.setup_mode(hal, cfg, **hal.portal_args())
    wifi = None
    unload([n for n in sys.modules if n.startswith(("lcm_device.portal", "lcm_device.wifi"))])
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


def _trial(st, kind):
    t = st.get(kind + "_trial")
    return "" if t is None else " (trial boot " + str(t) + ")"


def confirm_manager(hal, how=""):
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


def prepare_app(hal, cfg, sched, power):
    """Count the app's trial boot and arm the check timer; the app to start, or None."""
    st = slots.load(hal)
    if not st.get("app"):
        log("app: none installed yet")
        _wait_for_check(hal, cfg, sched)
        return None
    on_trial = st.get("app_tag")
    counted = slots.count_trial_boot(hal, st, "app", power, log)
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
    step(mainfile.keep, hal)
    _arm_watcher(hal, cfg, sched, trial)
    return slots.slot_dir(hal, st["app"]), tag


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
    """While the app runs: scheduled checks, the boot's chores (lcm_device.checktimer) and,
    with a broker configured, the fleet link. lcm_device.checktimer polls from a timer on
    boards; the unix port has no timer, so there a trial app is confirmed by
    lcm.confirm(), by its main module returning, or while it calls lcm.idle()."""
    try:
        from lcm_device import checktimer
    except ImportError:
        return None
    also = ()
    agent = None
    if cfg.get("mqtt_url"):
        # Push hints and status while the app runs (lcm_device.fleet).
        from lcm_device.fleet import Agent

        agent = Agent(hal, cfg)
        also = (agent.poll,)
    after = int(cfg.get("confirm_after_s") or 30) if trial else None
    watcher = checktimer.arm_timer(hal, cfg, sched, also, after)
    if agent is not None:
        agent.sched = watcher.sched
    return watcher
