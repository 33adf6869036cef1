"""Every boot's steps up to the app or the check (lcm_device.boot runs the app).

  config -> log -> firmware booted? -> after an update boot: the app boot
  -> else gestures (setup portal) -> schedule -> due: the update boot
  (lcm_device.checkboot: checks, then a reset into the app boot)
  -> not due: manager self-check, the app boot in this boot.

The app runs from its slot (/lcm/appN/main.py, imported as module `main`).
In trial mode each boot is counted first (trial.count_boot); an app
that raises, at import or later, resets the board, which counts as a failed
trial boot, and after `trial_boots` of them the previous slot comes back. A
power-on boot does not hold the boot before it (cut short by the power)
against the release; a trial gets at most slots.max_trial_boots boots in all.
A trial app is confirmed when it calls `lcm.confirm()`, when it has run for
`confirm_after_s` (a HAL timer, on boards), or when its main module returns.

The app boot that follows an update boot is lcm_device.appboot's (boot.py
runs it without importing this module); the steps before any app (count the
trial, arm the check timer) are there too. A power-on boot removes the
marker and is a boot like any other.

Flash writes at boot (trial counts, boot state, schedule, gestures, log)
survive a full or read-only flash: the step is logged and the boot goes on
to the app (`step`).
"""

import sys

from lcm_device import config, slots
from lcm_device import log as _logmod
from lcm_device.appboot import _continues, app_boot, prepare_app
from lcm_device.compat import collect, const, step, unload
from lcm_device.log import log

_CHECK_BUF = const(5120)  # lcm_device.update.BUF_SIZE, without importing the engine


def run(running):
    """This boot's steps; returns the app to start, (slot path, tag, kept), or None; when a
    check is due, ("check", power, buf): lcm_device.boot releases these steps, then runs
    the update boot (lcm_device.checkboot) with the buffer `buf`."""
    from lcm_device.hal import get

    hal = get()
    config.keep_good(hal)
    cfg = config.load(hal)
    _logmod.setup(hal, cfg)
    step(_firmware_booted, hal)
    power = hal.reset_cause() == "power"
    marker = step(_continues, hal, power)  # a power-on boot removes the marker
    if marker is not None:
        return app_boot(hal, cfg, marker)  # (boot.py runs it without this module)
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
        return "check", power, buf
    buf = None
    try:
        from lcm_device.aftercheck import confirm_manager, repair_manager
    except ImportError as exc:
        # Damaged: the app runs all the same. Unconfirmed, a manager on trial runs out of
        # trial boots and /main.py brings the previous one back; a confirmed one is mended
        # by its next release (its repair is in the module that is damaged).
        log("boot: the manager's self-check does not import: " + str(exc))
    else:
        confirm_manager(hal, running, "")
        step(repair_manager, hal, running)
        confirm_manager = repair_manager = None
        unload(["lcm_device.aftercheck"], True)
    return step(prepare_app, hal, cfg, sched, power)


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
        + str(st.get("app_tag") or "none")
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
    unload(["lcm_device.gestures"], release=False)
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
    unload(
        [n for n in sys.modules if n.startswith(("lcm_device.portal", "lcm_device.wifi"))],
        release=False,
    )
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
