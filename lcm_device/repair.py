"""The manager checks its own files at every boot and repairs them from the other slot.

An app runs with the run of the board: it can delete or overwrite a file of
the manager slot (/lcm/mN/lcm_device/update.mpy, say), and a manager that
later fails to import a module cannot update anything. So at every boot,
after the checks (their buffers need the heap unfragmented), the active
manager slot's files are compared with its signed
manifest (/lcm/mN.lcm, written by the engine when the slot was installed):

- Rule R1 (cheap, every boot): each file listed has the size the manifest
  says. Nothing is hashed unless a size is wrong.
- Rule R2: a file that is missing or of the wrong size is copied from the
  other manager slot when that slot holds a file of the same path whose
  sha256 is the one the manifest lists (hashed while copied, written to a
  temporary file and renamed into place, so a power cut leaves the damaged
  file or the good one).
- A file that cannot be repaired is logged; /main.py falls back to the other
  slot when the manager no longer imports (docs/device.md, "What an app can
  destroy").

A slot without a manifest (the factory slot m0, or a manager frozen into the
firmware) is not checked.
"""

import hashlib

from cert_sector.manifest import SIGNATURE_BLOCK, ManifestReader
from lcm_device import slots
from lcm_device.compat import file_size

_BUF = 512


def manager_files(hal, active, other, log):
    """Check slot `active` against its manifest; repair from `other`. Returns the number
    of files repaired, or None when the slot has no manifest."""
    path = slots.manifest_path(hal, active)
    size = file_size(path)
    if size <= SIGNATURE_BLOCK:
        return None
    base = slots.slot_dir(hal, active) + "/"
    spare = slots.slot_dir(hal, other) + "/"
    buf = memoryview(bytearray(_BUF))
    repaired = 0
    with open(path, "rb") as f:
        reader = ManifestReader(stream=f, body_size=size - SIGNATURE_BLOCK)
        reader.header()
        for e in reader.files():
            if file_size(base + e.path) == e.size:  # Rule R1
                continue
            if _copy_if_same(hal, spare + e.path, base + e.path, e, buf):  # Rule R2
                log("manager: repaired " + e.path + " in " + active + " from " + other)
                repaired += 1
            else:
                log("manager: " + e.path + " in " + active + " damaged; no good copy in " + other)
    return repaired


def _copy_if_same(hal, source, target, e, buf):
    if file_size(source) != e.size:
        return False
    from lcm_device.hal.fs import makedirs, pump, remove_if_exists

    cut = target.rfind("/")
    makedirs(hal.fs, target[:cut])
    tmp = target + ".tmp"
    h = hashlib.sha256()
    out = hal.fs.open_write(tmp)
    try:
        with open(source, "rb") as f:
            pump(f, buf, -1, out, h)
    finally:
        out.close()
    if h.digest() != e.sha256:
        remove_if_exists(hal.fs, tmp)
        return False
    hal.fs.rename(tmp, target)
    return True
