"""Slot state: which slot runs, trial boots, roll-back (docs/device.md, "Boot state").

Two kinds share the state, each with two slots: the app ("app": app0/app1)
and the manager ("mgr": m0/m1). For kind K the keys are:

  K            active slot name (app: None until the first install)
  K_tag, K_seq tag and manifest sequence installed in the active slot
  K_prev       the slot to return to while K is in trial, else None
  K_prev_tag, K_prev_seq
  K_trial      None when confirmed; else the trial boots held against the
               release (started, minus those that ended in a power cut)
  K_boots      boots of the trial in all, power cuts included
  K_bad        a tag that failed its trial: not offered again (a newer one is)
  K_bad_seq    its signed sequence: the same tag under a higher one (forced) is offered
  K_bad_why    why it failed (crashed or reset, or never confirmed)
  K_repo       the repo the installed tag and sequence belong to
  trial_boots  failed trial boots before roll-back (copied from the config at
               each switch, because /main.py counts manager trial boots
               before any manager code or config parsing runs)

No single point of failure. The state is kept in two generation files,
/lcm/state/boot0.json and boot1.json; generation N is written (temp +
rename) to file N % 2, so a write that is torn (a flash that does not
rename atomically, a tail of 0xFF) damages only the file being written and
the one before it still holds the previous generation. Each file is

  JSON object with "gen": N \\n 16 hex digits of sha256(JSON) \\n

and a file whose checksum does not match is ignored. `load` takes the valid
file with the highest generation; when neither is valid (both removed or
damaged) it rebuilds the state from the slots themselves (`rebuild`): each
slot keeps its signed manifest at /lcm/SLOT.lcm, and of the slots whose
files match their manifest the one with the highest sequence runs, without
a download. /main.py (lcm_device/main.py) reads the same files with the same
rules.
"""

import json

from cert_sector.bootstate import MAX_STATE, PATH, decode, encode
from lcm_device.compat import errno_text, file_size
from lcm_device.hal.fs import makedirs, write_atomic

STATE_DIR = "/lcm/state"
LEGACY_PATH = "/lcm/state/boot.json"
# Written by the update boot before its reset (lcm_device.checkboot), holding its reset
# cause and the settings its app boot reads (lcm_device.appboot.marker_for): the next
# boot is the app boot (lcm_device.appboot).
APP_NEXT = "/lcm/state/app.next"


def pair(kind):
    """The two slots of `kind` ("app" or "mgr"). Made at each call: a dict of tuples kept
    in the module is four objects in RAM on a board."""
    return ["m0", "m1"] if kind == "mgr" else ["app0", "app1"]


def _read(path):
    size = file_size(path)
    if not 0 < size <= MAX_STATE:
        return None
    try:
        with open(path, "rb") as f:
            return decode(f.read(size))  # read(n) allocates n: the size, not the cap
    except OSError:
        return None


def load(hal, log=None):
    """The newest valid generation; rebuilt from the slots when there is none."""
    st = None
    for n in range(2):
        one = _read(hal.root + PATH % n)
        if one is not None and (st is None or one["gen"] > st["gen"]):
            st = one
    if st is None:
        # The single boot.json of managers before two generations: read once, then
        # replaced. Here, not in a function of its own: one object fewer in RAM.
        try:
            with open(hal.root + LEGACY_PATH) as f:
                st = json.load(f)
            st["gen"] = 0
        except (OSError, ValueError, TypeError):  # TypeError: not a JSON object
            st = None
    # No valid state: rebuilt when a slot keeps a signed manifest.
    if st is None and any(file_size(manifest_path(hal, s)) >= 0 for s in pair("app") + pair("mgr")):
        try:
            from lcm_device.rebuild import rebuild  # rarely needed: its own module
        except ImportError:  # a manager without it (damaged, or a cut-down test release)
            rebuild = None
        if rebuild is not None:
            st = rebuild(hal, log)
            if st.get("app") or st.get("mgr_tag"):
                try_save(hal, st, log or print)  # rebuilt once, not at every load
    if st is None:
        st = {"gen": 0}  # a new device: nothing installed yet
    if not st.get("mgr"):
        st["mgr"] = "m0"
    return st


def save(hal, st):
    """Write the next generation over the older file. Raises OSError (full or read-only
    flash): callers at boot decide what a state they cannot save means."""
    st["gen"] = (st.get("gen") or 0) + 1
    makedirs(hal.fs, hal.root + STATE_DIR)
    write_atomic(hal.fs, hal.root + PATH % (st["gen"] % 2), encode(st))


def try_save(hal, st, log):
    """save(), logging instead of raising: True when the state was written."""
    try:
        save(hal, st)
        return True
    except OSError as exc:
        log("boot state: cannot save (%s)" % (errno_text(exc),))
        return False


def slot_dir(hal, slot):
    return hal.root + "/lcm/" + slot


def manifest_path(hal, slot):
    return "%s/lcm/%s.lcm" % (hal.root, slot)


def inactive(st, kind):
    a, b = pair(kind)
    return b if st.get(kind) == a else a


def in_trial(st, kind):
    return st.get(kind + "_trial") is not None


def max_trial_boots(st):
    """Boots a trial may take in all, power cuts included: a release that hangs the board
    (power-cycled by hand, no watchdog) still rolls back."""
    return 3 * (st.get("trial_boots") or 3) + 1


def switch(hal, st, kind, slot, tag, seq, trial_boots):
    """Make `slot` active in trial mode, keeping the running one to return to."""
    st[kind + "_prev"] = st.get(kind)
    st[kind + "_prev_tag"] = st.get(kind + "_tag")
    st[kind + "_prev_seq"] = st.get(kind + "_seq")
    st[kind] = slot
    st[kind + "_tag"] = tag
    st[kind + "_seq"] = seq
    st[kind + "_trial"] = 0
    st[kind + "_boots"] = 0
    st["trial_boots"] = trial_boots
    save(hal, st)


def confirm(hal, st, kind):
    """End the trial: the running slot stays, the previous one may be overwritten."""
    if not in_trial(st, kind):
        return False
    st[kind + "_trial"] = st[kind + "_boots"] = None
    st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
    save(hal, st)
    return True


def forget_previous(hal, st, kind):
    """Before the inactive slot is overwritten it must not be a roll-back target."""
    if st.get(kind + "_prev") is not None:
        st[kind + "_prev"] = st[kind + "_prev_tag"] = st[kind + "_prev_seq"] = None
        save(hal, st)
