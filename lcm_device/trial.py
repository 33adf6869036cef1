"""Counting a trial boot, and rolling back (docs/device.md, "Trial boots").

A new release runs in trial mode (slots.switch); every boot of an app on
trial is counted here, before it runs (lcm_device.appboot.prepare_app). A boot that
crashes or resets counts against it; after `trial_boots` of them, or
slots.max_trial_boots boots in all without a confirmation, the previous slot
comes back and the release is marked bad. /main.py counts the manager's
trial the same way, in its own code (it is never updated). A module of its
own: the update boot and the app never load it (their heap).
"""

from lcm_device.compat import file_size
from lcm_device.slots import (
    errno_text,
    in_trial,
    manifest_path,
    max_trial_boots,
    save,
    slot_dir,
    try_save,
)


def roll_back(st, kind, why):
    """Return to the previous slot (in `st`; the caller saves), marking the release bad."""
    st[kind + "_bad"] = st.get(kind + "_tag")
    st[kind + "_bad_seq"] = st.get(kind + "_seq")
    st[kind + "_bad_why"] = why
    st[kind] = st.get(kind + "_prev")
    st[kind + "_tag"] = st.get(kind + "_prev_tag")
    st[kind + "_seq"] = st.get(kind + "_prev_seq")
    st[kind + "_trial"] = st[kind + "_boots"] = None
    st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
    if kind == "mgr" and not st["mgr"]:
        st["mgr"] = "m0"


def trial_step(st, kind, power_on):
    """Count one boot of a slot in trial (in `st`); returns why it failed, or None.

    A power-on boot means the previous boot lost its power: that boot is not
    held against the release. Resets (a crash, the watchdog, an app that
    resets itself) are. The manager's bound on boots does not roll it back:
    /main.py counts it the same way and lcm_device.checkboot confirms a manager
    that reached the bound without a fault of its own (docs/device.md).
    """
    trial = st.get(kind + "_trial") or 0
    boots = st.get(kind + "_boots") or 0
    if power_on and trial > 0:
        trial -= 1
    if trial >= (st.get("trial_boots") or 3):
        return "crashed or reset in " + str(trial) + " trial boots"
    if kind == "app" and boots >= max_trial_boots(st):
        return "not confirmed within " + str(boots) + " boots"
    st[kind + "_trial"] = trial + 1
    st[kind + "_boots"] = boots + 1
    return None


def count_boot(hal, st, kind, power_on, log):
    """At boot: 'run' (counted, or not in trial), 'rolled back', or 'previous'.

    A trial boot that cannot be recorded is never run: uncounted, a crashing
    release could crash for ever. On a read-only flash this boot runs the
    previous slot instead ('previous', in `st` only, nothing saved) and the
    trial goes on once the flash takes writes again. On a full flash the
    trial slot is removed (the release itself may have filled the flash) and
    the previous slot comes back ('rolled back'): the release is offered again
    by the next check, and is marked bad when it fills the flash a second time.
    """
    if not in_trial(st, kind):
        return "run"
    if kind == "app" and file_size(manifest_path(hal, st[kind])) < 0 and st.get(kind + "_prev"):
        # Removed (a full flash above, or by hand): nothing to try.
        _drop_trial(hal, st, kind, "its slot was removed in its trial, twice", log)
        try_save(hal, st, log)
        return "rolled back"
    why = trial_step(st, kind, power_on)
    if why is not None:
        roll_back(st, kind, why)
        try_save(hal, st, log)  # not saved: the same decision is taken at the next boot
        return "rolled back"
    try:
        save(hal, st)
        return "run"
    except OSError as exc:
        log("boot state: cannot count the trial boot (" + errno_text(exc) + ")")
        full = exc.args and exc.args[0] == 28
    if full and kind == "app" and st.get(kind + "_prev"):
        _drop_trial(hal, st, kind, "filled the flash in its trial, twice", log)
        try_save(hal, st, log)  # not saved: the slot is gone, so the next boot drops it again
        return "rolled back"
    st[kind] = st.get(kind + "_prev")
    st[kind + "_tag"] = st.get(kind + "_prev_tag")
    st[kind + "_seq"] = st.get(kind + "_prev_seq")
    st[kind + "_trial"] = None
    return "previous"


def _drop_trial(hal, st, kind, why, log):
    """Remove the trial slot and return to the previous one; the release is marked bad
    (with `why`) only the second time this happens to it: once, it is offered again."""
    from lcm_device.hal.fs import remove_if_exists, remove_tree

    tag = st.get(kind + "_tag")
    slot = st[kind]
    bad, bad_why = st.get(kind + "_bad"), st.get(kind + "_bad_why")
    roll_back(st, kind, why)
    if st.get(kind + "_dropped") != tag:
        st[kind + "_bad"], st[kind + "_bad_why"] = bad, bad_why
    st[kind + "_dropped"] = tag
    log("boot state: the trial of " + str(tag) + " in " + slot + " ends; removing it")
    remove_if_exists(hal.fs, manifest_path(hal, slot))
    remove_tree(hal.fs, slot_dir(hal, slot))
