"""Steps 4-7 of a files release: plan, fetch and verify the inactive slot's files, then switch.

`fill(u, st, tag, slot, order, pack_size, spent)` takes what
lcm_device.metadata verified (the manifest at /lcm/SLOT.lcm, read again
from flash here); lcm_device.install imports this module only after the
metadata's modules are released. A firmware release goes to
lcm_device.firmware instead, which shares `pack_stream`.
"""

import hashlib
import struct

from cert_sector.assets import PACK_ASSET
from cert_sector.errors import TrustError
from cert_sector.manifest import SIGNATURE_BLOCK, ManifestReader
from lcm_device import slots, trust
from lcm_device.compat import const, file_size
from lcm_device.fetch import PackStream, stored_url
from lcm_device.hal.fs import makedirs, pump, remove_if_exists
from lcm_device.update import Refused

_DONE = const(0)
_COPY = const(1)
_GET = const(2)
_REC = const(9)
_BATCH = const(16)
_FREE_MARGIN = const(4096)


def fill(u, st, tag, slot, order, pack_size, spent):
    kind = u.kind
    _plan_and_fetch(u, st, slot, pack_size, tag, spent)
    _verify_slot(u, slot)
    st[kind + "_repo"] = u.repo
    slots.switch(u.hal, st, kind, slot, tag, order, u.cfg["trial_boots"])
    u.log(
        "%s: switched to %s (%s), trial boot next"
        % ("manager" if kind == "mgr" else "app", slot, tag)
    )


# -- 4/5. plan and fetch -----------------------------------------------------


def _plan_and_fetch(u, st, slot, pack_size, tag, spent):
    hal = u.hal
    plan = hal.root + "/lcm/state/plan.bin"
    active = st.get(u.kind)
    need, get_bytes = _plan(u, slot, active, plan)
    free = hal.free_bytes()
    if free is not None and free < need + _FREE_MARGIN:
        raise Refused("not enough flash: %s bytes to write, %s free" % (need, free))
    pack, budget = pack_stream(u, tag, pack_size, spent, get_bytes)
    u.log(
        "download: %s bytes of the pack, %s bytes copied locally; check budget %s s"
        % (get_bytes, need - get_bytes, budget // 1000)
    )
    try:
        _fetch(u, slot, active, plan, pack)
    finally:
        pack.close()


def pack_stream(u, tag, pack_size, spent, get_bytes):
    """(PackStream, budget in ms) for fetching `get_bytes` of the pack, after the
    metadata's `spent` bytes (lcm_device.metadata.verified)."""
    # The signed manifest now says what is left to fetch: the check's whole budget
    # becomes the sector's cap, this manifest and those pack bytes; the resumes
    # allowed, check_resumes plus one per 32 KB.
    budget = u.budget(spent + get_bytes)
    resumes = u.cfg["check_resumes"] + get_bytes // 32768
    pack = PackStream(u.client, u.url(tag, PACK_ASSET), pack_size, resumes, u.log)
    pack.cdn = stored_url(u, PACK_ASSET)  # where lcm_device.resolve found it, if it asked
    return pack, budget


def _files(u, slot):
    """(open manifest file, generator of FileEntry) of the slot's manifest."""
    path = slots.manifest_path(u.hal, slot)
    f = open(path, "rb")  # noqa: SIM115 (returned: the caller closes it)
    reader = ManifestReader(stream=f, body_size=file_size(path) - SIGNATURE_BLOCK)
    reader.header()
    return f, reader.files()


def _plan(u, slot, active, plan):
    """Write one record per file of the slot's manifest to `plan`: done, copy from the
    active slot (same path, size and sha256, walking the active slot's manifest
    alongside: both are sorted by path), or a pack range to fetch. (bytes to write,
    bytes to fetch)."""
    hal = u.hal
    base = slots.slot_dir(hal, slot) + "/"
    need = get_bytes = 0
    of = old = cur = None
    if active is not None and file_size(slots.manifest_path(hal, active)) >= 0:
        try:
            of, old = _files(u, active)
            cur = next(old, None)
        except (OSError, TrustError):
            cur = None
    mf, files = _files(u, slot)
    out = hal.fs.open_write(plan)
    # Records are written _BATCH at a time: fewer, larger flash writes.
    batch = bytearray(_REC * _BATCH)
    n = 0
    try:
        for e in files:
            target = base + e.path
            have = file_size(target)
            if cur is not None:
                raw = e.path.encode()
                try:
                    while cur is not None and cur.path.encode() < raw:
                        cur = next(old, None)
                except TrustError:  # a damaged active manifest: nothing to copy from
                    cur = None
            start = end = 0
            if have == e.size and trust.file_sha(target, u.io) == e.sha256:
                action = _DONE
            elif (
                cur is not None
                and cur.path == e.path
                and cur.size == e.size
                and cur.sha256 == e.sha256
            ):
                action = _COPY
                need += e.size
            else:
                if have < 0 or have >= e.size:
                    have = 0  # absent, complete but wrong, or too long: from scratch
                action, start, end = _GET, e.offset + have, e.offset + e.size
                need += e.size - have
                get_bytes += e.size - have
            struct.pack_into(">BII", batch, n, action, start, end)
            n += _REC
            if n == len(batch):
                out.write(batch)
                n = 0
        if n:
            out.write(memoryview(batch)[:n])
    finally:
        out.close()
        mf.close()
        if of is not None:
            of.close()
    return need, get_bytes


def _fetch(u, slot, active, plan, pack):
    hal = u.hal
    fs = hal.fs
    io = u.io
    base = slots.slot_dir(hal, slot) + "/"
    src = slots.slot_dir(hal, active) + "/" if active else None
    mf, files = _files(u, slot)
    pf = None
    try:
        pf = open(plan, "rb")  # noqa: SIM115 (closed in finally, with the manifest)
        for e in files:
            action, start, end = struct.unpack(">BII", pf.read(_REC))
            if action == _DONE:
                continue
            target = base + e.path
            makedirs(fs, target[: target.rfind("/")])
            h = hashlib.sha256()
            if action == _COPY:
                out = fs.open_write(target)
                try:
                    with open(src + e.path, "rb") as f:
                        pump(f, io, -1, out, h)
                except OSError:
                    h = None
                finally:
                    out.close()
                if h is not None and h.digest() == e.sha256 and file_size(target) == e.size:
                    continue
                # The local copy was bad: from the pack.
                start, end = e.offset, e.offset + e.size
                h = hashlib.sha256()
            have = start - e.offset
            while True:
                if have:
                    with open(target, "rb") as f:
                        if pump(f, io, have, None, h) != have:
                            raise OSError("partial file shorter than expected")
                    out = fs.open_append(target)
                else:
                    out = fs.open_write(target)
                try:
                    if start < end and (pack.resp is None or pack.pos != start or pack.end < end):
                        pack.open(start, _run_end(pf, end))
                    pump(pack, io, end - start, out, h)
                finally:
                    out.close()
                if h.digest() == e.sha256:
                    break
                fs.remove(target)
                if not have:
                    raise Refused(
                        "file %s: downloaded bytes do not match the manifest sha256" % (e.path,)
                    )
                # The part kept from before a power cut did not hold (its last write torn):
                # the whole file once more, from the pack.
                u.log("download: %s was damaged before the resume; fetching it whole" % (e.path,))
                start, have, h = e.offset, 0, hashlib.sha256()
    finally:
        if pf is not None:
            pf.close()
        mf.close()


def _run_end(pf, end):
    """End of the run of adjacent fetched ranges that starts with the record just read."""
    pos = pf.tell()
    try:
        while True:
            raw = pf.read(_REC)
            if len(raw) < _REC:
                return end
            action, start, stop = struct.unpack(">BII", raw)
            if action != _GET or start != end:
                return end
            end = stop
    finally:
        pf.seek(pos)


# -- 6. verify ---------------------------------------------------------------


def _verify_slot(u, slot):
    hal = u.hal
    base = slots.slot_dir(hal, slot) + "/"
    mf, files = _files(u, slot)
    count = 0
    try:
        for e in files:
            target = base + e.path
            if file_size(target) != e.size or trust.file_sha(target, u.io) != e.sha256:
                remove_if_exists(hal.fs, target)
                raise Refused("verify: %s in %s does not match" % (e.path, slot))
            count += 1
    finally:
        mf.close()
    u.log("verify: %s files of %s match the manifest" % (count, slot))
