"""What `lcm device install` changes on a board that already runs lcm, besides copying.

The copy puts the manager in the factory slot, /lcm/m0. Two things on such a
board would keep it from running that manager as it was copied:

- **Files of an older manager in /lcm/m0.** The copy adds and overwrites; a file
  it does not write stays. A stale `.py` shadows the `.mpy` of the same module
  (MicroPython imports the source first), and a stale /lcm/m0.lcm (the slot's
  manifest, when a manager release was installed into m0 over the air) makes
  the boot's self-check "repair" the new files from the other slot. So the slot
  and its manifest are removed before the copy (`REPLACED`).
- **A boot state that runs another slot.** After a manager update over the air
  the board runs /lcm/m1 (or m0 under a release's tag, or on trial). The boot
  state is then written one generation on, with the manager as a factory image
  has it: m0, no tag, no sequence, not on trial (`factory_manager_state`). The
  app's state, the other manager slot and the rest of the state are kept; a
  manager tag that failed its trial is still refused. Like a new board, the
  device then installs its manager repo's latest release over the air.
- **A boot state that is lost** (both generation files damaged, or removed). The
  board's boot rebuilds it from the slots (lcm_device/rebuild.py) and runs the
  manager slot with the newest complete manifest: /lcm/m1 after an update over the
  air, not the copy. So the other slot's manifest is removed too (`LOST_STATE`):
  the rebuild then finds no manager release and runs the factory slot, the copy.
  The app's state is rebuilt from its slots as on any board that lost it.

`plan(found)` says what to write and what to remove, from the board's boot files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cert_sector.bootstate import PATH, decode, encode

# Removed before the copy: the factory manager slot, and the manifest (and a staged one)
# of a manager release installed into it over the air (lcm_device.slots.manifest_path).
REPLACED = ("/lcm/m0", "/lcm/m0.lcm", "/lcm/m0.lcm.new")
# Removed as well when the board's boot state is lost: the manifest of the other manager
# slot, which the boot's rebuild would otherwise run (lcm_device.rebuild).
LOST_STATE = ("/lcm/m1.lcm",)
# The boot state of managers before two generations (lcm_device.slots.LEGACY_PATH).
LEGACY_PATH = "/lcm/state/boot.json"
# The boot state files a cable install reads from the board.
BOOT_FILES = (PATH % 0, PATH % 1, LEGACY_PATH)
# Of the manager's keys (lcm_device/slots.py), those that describe the slot it runs and
# its trial: cleared, as a factory image has none of them.
_RUNNING_KEYS = (
    "mgr_tag",
    "mgr_seq",
    "mgr_repo",
    "mgr_prev",
    "mgr_prev_tag",
    "mgr_prev_seq",
    "mgr_trial",
    "mgr_boots",
)


def current_state(found: dict[str, bytes | None]) -> dict | None:
    """The board's boot state as /lcm/pick.py reads it from `found` (path -> bytes or None):
    the valid generation file with the higher "gen", else the older single file."""
    best = None
    for path in (PATH % 0, PATH % 1):
        data = found.get(path)
        st = decode(data) if data is not None else None
        if st is not None and (best is None or st["gen"] > best["gen"]):
            best = st
    if best is None and found.get(LEGACY_PATH) is not None:
        import json

        try:
            legacy = json.loads(found[LEGACY_PATH] or b"")
        except ValueError:
            return None
        if isinstance(legacy, dict):
            best = {**legacy, "gen": 0}
    return best


@dataclass(frozen=True)
class Plan:
    """What a cable install does on the board besides copying the factory image's files."""

    # Paths removed before the copy (files or folders).
    remove: tuple[str, ...] = REPLACED
    # Boot state to write (path on the board -> bytes), copied with the files.
    files: dict[str, bytes] = field(default_factory=dict)
    # What the board ran before, for the command's output; None: the factory manager.
    before: str | None = None


def plan(found: dict[str, bytes | None]) -> Plan:
    """The install's plan for a board whose boot files (`BOOT_FILES`, path -> bytes or
    None) are `found`: a boot state that runs the manager in /lcm/m0 as a factory image
    has it, unless the board runs that already (a new board too); on a board with no
    readable boot state, the removals that make its rebuild pick the copy."""
    st = current_state(found)
    if st is None:
        damaged = any(data is not None for data in found.values())
        lost = "the board's boot state is damaged (its boot rebuilds it from the slots)"
        return Plan(remove=REPLACED + LOST_STATE, before=lost if damaged else None)
    if st.get("mgr") in (None, "m0") and not any(st.get(k) is not None for k in _RUNNING_KEYS):
        return Plan()
    tag = st.get("mgr_tag") or "its factory manager"
    trial = " on trial" if st.get("mgr_trial") is not None else ""
    before = f"the board ran {tag}{trial} from /lcm/{st.get('mgr') or 'm0'}"
    st = dict(st)
    st["mgr"] = "m0"
    for key in _RUNNING_KEYS:
        st[key] = None
    st["gen"] += 1
    return Plan(files={PATH % (st["gen"] % 2): encode(st)}, before=before)
