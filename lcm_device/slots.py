"""Slot state in /lcm/state/boot.json: which slot runs, trial boots, roll-back.

Two kinds share the file, each with two slots: the app ("app": app0/app1)
and the manager ("mgr": m0/m1). For kind K the keys are:

  K            active slot name (app: None until the first install)
  K_tag, K_seq tag and manifest sequence installed in the active slot
  K_prev       the slot to return to while K is in trial, else None
  K_prev_tag, K_prev_seq
  K_trial      None when confirmed; else the number of trial boots started
  K_bad        a tag that failed its trial: not offered again (a newer one is)
  K_bad_seq    its signed sequence: the same tag under a higher one (forced) is offered
  K_repo       the repo the installed tag and sequence belong to
  trial_boots  failed trial boots before roll-back (copied from the config at
               each switch, because /main.py counts manager trial boots
               before any manager code or config parsing runs)

The file is only ever replaced with one atomic rename (temp + rename), so a
power cut leaves either the old state or the new one; that rename is the
switch. Each slot's files live in /lcm/SLOT/ and its signed manifest in
/lcm/SLOT.lcm.
"""

import json

from lcm_device.hal.fs import makedirs, write_atomic

PATH = "/lcm/state/boot.json"
SLOTS = {"app": ("app0", "app1"), "mgr": ("m0", "m1")}


def load(hal):
    try:
        with open(hal.root + PATH) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = {}
    if not isinstance(st, dict):
        st = {}
    if not st.get("mgr"):
        st["mgr"] = "m0"
    return st


def save(hal, st):
    makedirs(hal.fs, hal.root + "/lcm/state")
    write_atomic(hal.fs, hal.root + PATH, json.dumps(st))


def slot_dir(hal, slot):
    return hal.root + "/lcm/" + slot


def manifest_path(hal, slot):
    return hal.root + "/lcm/" + slot + ".lcm"


def inactive(st, kind):
    a, b = SLOTS[kind]
    return b if st.get(kind) == a else a


def in_trial(st, kind):
    return st.get(kind + "_trial") is not None


def switch(hal, st, kind, slot, tag, seq, trial_boots):
    """Make `slot` active in trial mode, keeping the running one to return to."""
    st[kind + "_prev"] = st.get(kind)
    st[kind + "_prev_tag"] = st.get(kind + "_tag")
    st[kind + "_prev_seq"] = st.get(kind + "_seq")
    st[kind] = slot
    st[kind + "_tag"] = tag
    st[kind + "_seq"] = seq
    st[kind + "_trial"] = 0
    st["trial_boots"] = trial_boots
    save(hal, st)


def confirm(hal, st, kind):
    """End the trial: the running slot stays, the previous one may be overwritten."""
    if not in_trial(st, kind):
        return False
    st[kind + "_trial"] = None
    st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
    save(hal, st)
    return True


def forget_previous(hal, st, kind):
    """Before the inactive slot is overwritten it must not be a roll-back target."""
    if st.get(kind + "_prev") is not None:
        st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
        save(hal, st)


def count_trial_boot(hal, st, kind):
    """At boot: 'run' (counted, or confirmed) or 'rolled back' after too many trial boots."""
    trial = st.get(kind + "_trial")
    if trial is None:
        return "run"
    if trial >= st.get("trial_boots", 3):
        st[kind + "_bad"] = st.get(kind + "_tag")
        st[kind + "_bad_seq"] = st.get(kind + "_seq")
        st[kind] = st.get(kind + "_prev")
        st[kind + "_tag"] = st.get(kind + "_prev_tag")
        st[kind + "_seq"] = st.get(kind + "_prev_seq")
        st[kind + "_trial"] = None
        st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
        if kind == "mgr" and not st["mgr"]:
            st["mgr"] = "m0"
        save(hal, st)
        return "rolled back"
    st[kind + "_trial"] = trial + 1
    save(hal, st)
    return "run"
