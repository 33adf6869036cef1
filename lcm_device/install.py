"""Installing a release the check found: cert sector, manifest, plan, fetch, verify, switch.

Loaded only when a check finds a new tag (an idle check does not pay for it);
`install(updater, st, tag)` runs steps 2-7 of the cycle described in
lcm_device/update.py with the updater's client, buffer, config and log, and
raises a TrustError or Refused naming the reason for any refusal.
"""

import hashlib
import struct

from cert_sector.assets import MANIFEST_ASSET, PACK_ASSET, SECTOR_ASSET
from cert_sector.errors import FormatError, SignatureError, TrustError
from cert_sector.manifest import (
    MAX_MANIFEST_SIZE,
    SIGNATURE_BLOCK,
    ManifestReader,
    check_header,
    check_scope,
    check_signature,
)
from cert_sector.sector import MAX_SECTOR_SIZE
from lcm_device import slots, trust
from lcm_device.compat import collect, const, file_size
from lcm_device.fetch import PackStream, download
from lcm_device.hal.fs import makedirs, remove_if_exists, remove_tree
from lcm_device.http import StatusError
from lcm_device.refusal import Refused

_DONE = const(0)
_COPY = const(1)
_GET = const(2)
_REC = const(9)
_BATCH = const(32)
_FREE_MARGIN = const(4096)


def install(updater, st, tag):
    return Installer(updater).run(st, tag)


class Installer:
    def __init__(self, u):
        self.u = u
        self.hal = u.hal
        self.cfg = u.cfg
        self.kind = u.kind
        self.repo = u.repo
        self.roots = u.roots
        self.threshold = u.threshold
        self.channel = u.channel
        self.client = u.client
        self.io = u.io
        self.log = u.log
        self.stats = u.stats

    def _url(self, tag, name):
        return self.u.url(tag, name)

    def run(self, st, tag):
        hal = self.hal
        # Until a manifest is verified, the budget covers the most the metadata may be.
        self.client.budget_ms = self.u.budget_ms(MAX_SECTOR_SIZE + MAX_MANIFEST_SIZE)
        sector = self._refresh_sector(
            tag, trust.installed(hal, self.kind, self.repo, self.io, self.log)
        )
        if sector is not None:
            from cert_sector.sector import check_expiry

            try:
                # Rule S7 for the sector in use, not only a new one: when the server
                # withholds the renewal (404, 304), an expired sector authorises nothing.
                check_expiry(sector, hal.time())
            except TrustError as exc:
                raise Refused(
                    "cert sector: sequence " + str(sector.seq) + " in use: " + _why(exc)
                ) from None
        staged = None
        if self.kind == "app":
            # A staged roll-out (lcm_device.rollout): checked against the fresh sector.
            from lcm_device.rollout import gate

            staged = gate(self, tag, sector)  # drops its modules from sys.modules
            gate = None
            collect()  # their heap goes to the manifest and the plan
            if staged == "wait":
                return "idle"
        slot = slots.inactive(st, self.kind)
        m, self.manifest_size = self._fetch_manifest(tag, sector, st, slot)
        self.log("manifest: " + self.repo + " " + m.version + " sequence " + str(m.seq))
        if staged is not None and staged.manifest_seq != m.seq:
            # Rule R4: the roll-out document is for this very release.
            raise Refused("roll-out document for sequence " + str(staged.manifest_seq))
        if m.kind == "firmware":
            self._install_firmware(st, m, tag, slots.manifest_path(hal, slot) + ".new")
            return
        self._plan_and_fetch(st, slot, m, tag)
        self._verify_slot(slot)
        st[self.kind + "_repo"] = self.repo
        slots.switch(hal, st, self.kind, slot, tag, m.order, self.cfg.get("trial_boots") or 3)
        self.log(
            ("manager" if self.kind == "mgr" else "app")
            + ": switched to "
            + slot
            + " ("
            + tag
            + "), trial boot next"
        )

    # -- 2. the cert sector ------------------------------------------------

    def _refresh_sector(self, tag, sector):
        from cert_sector.sector import check_sector

        hal = self.hal
        path = trust.sector_path(hal, self.kind)
        new = path + ".new"
        makedirs(hal.fs, hal.root + trust.CERTS[:-1])
        headers = stored = None
        if sector is not None:
            stored = trust.stored_etag(hal, self.kind)
            if stored:
                headers = {"If-None-Match": stored}
        try:
            _, digest, etag = download(
                self.client,
                hal.fs,
                self._url(tag, SECTOR_ASSET),
                new,
                MAX_SECTOR_SIZE,
                self.io,
                headers,
                self.log,
            )
        except StatusError as exc:
            if exc.status == 304:
                return sector
            if exc.status == 404 and sector is not None:
                self.log("cert sector: none in " + tag + ", keeping the installed one")
                return sector
            raise
        if sector is not None and digest == _file_sha(path, self.io):
            if etag != stored:
                trust.save_etag(hal, self.kind, etag)  # next time: 304, no body
            return sector
        trusted = sector
        try:
            # Parsed field by field from flash, its body hashed on the way (its CAs
            # stay there): a sector of 4096 bytes never sits in RAM.
            fresh = trust.read_sector(new, self.io)
            if trusted is None and self.kind == "app" and not self.roots:
                # No app roots pinned at build time: the setup page's fingerprint
                # or trust on first use decides, once, from this first sector.
                self._pin_first_sector(fresh)
            if trusted is None:
                trusted = trust.pinned(self.repo, self.roots, self.threshold)
            try:
                check_sector(fresh, fresh.digest, trusted, hal.time())
            except SignatureError as exc:
                if sector is None or fresh.seq <= trusted.seq:
                    raise
                # Not signed by the roots we trust, yet newer: perhaps several root
                # rotations happened meanwhile; the repo's chain of sectors bridges them.
                why, top = str(exc), fresh.seq
                exc = sector = fresh = None  # on flash: parsed again after the walk
                trusted = self._walk_chain(tag, trusted, top, why)
                fresh = trust.read_sector(new, self.io)
                check_sector(fresh, fresh.digest, trusted, hal.time())
        except TrustError as exc:
            raise Refused("cert sector: " + _why(exc)) from None
        # CAs first: a cut before the swap leaves the old sector (fetched again
        # next time) with the verified new CAs, never the new sector with stale ones.
        trust.save_cas(hal, self.kind, new, fresh.cas, self.io)
        trust.keep_copy(hal, self.kind, new, self.io)  # damaged flash: trust.py, rule L2
        hal.fs.rename(new, path)  # the sector's atomic A/B swap
        trust.save_etag(hal, self.kind, etag)
        self.log(
            "cert sector: installed sequence "
            + str(fresh.seq)
            + " ("
            + str(fresh.threshold)
            + " of "
            + str(len(fresh.roots))
            + " roots, "
            + str(len(fresh.release_keys))
            + " release keys, "
            + str(len(fresh.cas))
            + " CAs)"
        )
        return fresh

    def _walk_chain(self, tag, trusted, top, why):
        """The last sector below sequence `top` reached from `trusted` through the
        release's certs.chain, each link checked with the rotation rules (S3-S6, S9;
        not S7: a link may have expired since, the end of the chain must not)."""
        from cert_sector.assets import CHAIN_ASSET, MAX_CHAIN_SIZE
        from cert_sector.sector import check_sector

        hal = self.hal
        base = trust.sector_path(hal, self.kind)
        chain, link = base + ".chain", base + ".link"
        # The chain may be this long: the check's budget grows by as much.
        self.client.budget_ms = self.u.budget_ms(
            MAX_SECTOR_SIZE + MAX_CHAIN_SIZE + MAX_MANIFEST_SIZE
        )
        try:
            size = download(
                self.client,
                hal.fs,
                self._url(tag, CHAIN_ASSET),
                chain,
                MAX_CHAIN_SIZE,
                self.io,
                None,
                self.log,
            )[0]
        except StatusError as exc:
            if exc.status != 404:
                raise
            raise SignatureError(str(why) + "; no certs.chain in " + tag) from None
        io = self.io
        pos = 0
        s = None
        try:
            with open(chain, "rb") as f:
                while pos + 2 <= size:
                    s = None
                    collect()  # the last link's parse and signature checks: garbage
                    head = f.read(2)
                    n = (head[0] << 8) | head[1]
                    if not 0 < n <= MAX_SECTOR_SIZE or pos + 2 + n > size:
                        raise FormatError("certs.chain: member of " + str(n) + " bytes")
                    out = hal.fs.open_write(link)
                    try:
                        left = n
                        while left:
                            k = f.readinto(io[: min(left, len(io))])
                            out.write(io[:k])
                            left -= k
                    finally:
                        out.close()
                    pos += 2 + n
                    s = trust.read_sector(link, io)
                    if s.seq >= top:
                        break
                    if s.seq <= trusted.seq:
                        continue
                    try:
                        trusted = check_sector(s, s.digest, trusted, None)
                    except TrustError as exc:
                        raise exc.__class__(
                            "chain link sequence " + str(s.seq) + ": " + str(exc)
                        ) from None
                    self.log("cert sector: chain link sequence " + str(s.seq) + " verified")
        finally:
            remove_if_exists(hal.fs, link)
            remove_if_exists(hal.fs, chain)
        return trusted

    def _pin_first_sector(self, sector):
        """Pin the roots of the first app sector in the config; TrustError when refused."""
        from cert_sector.keys import key_id_hex
        from lcm_device import config
        from lcm_device.firstpin import pin_in_config, roots_from_first_sector

        cfg = self.cfg
        fingerprint = cfg.get("app_root_fingerprint")
        tofu = cfg.get("app_trust_first_use") is True
        roots, threshold = roots_from_first_sector(
            sector, self.repo, fingerprint, tofu, self.hal.time()
        )
        pinned = pin_in_config(cfg, roots, threshold)
        # Saved before the sector is swapped in: a power cut in between leaves the
        # pin, and the next check verifies the same sector against it.
        config.save(self.hal, pinned)
        cfg.pop("app_root_fingerprint", None)
        cfg.pop("app_trust_first_use", None)
        cfg["app_roots"] = pinned["app_roots"]
        cfg["app_threshold"] = threshold
        self.roots = self.u.roots = pinned["app_roots"]
        self.threshold = self.u.threshold = threshold
        self.log(
            "app: pinned root keys "
            + " ".join(key_id_hex(r) for r in roots)
            + " from the first sector ("
            + ("fingerprint" if fingerprint else "trust on first use")
            + ")"
        )

    # -- 3. the manifest ---------------------------------------------------

    def _fetch_manifest(self, tag, sector, st, slot):
        hal = self.hal
        if sector is None:
            raise Refused("no cert sector installed for " + self.repo)
        final = slots.manifest_path(hal, slot)
        new = final + ".new"
        makedirs(hal.fs, hal.root + "/lcm")
        size, digest, _ = download(
            self.client,
            hal.fs,
            self._url(tag, MANIFEST_ASSET),
            new,
            MAX_MANIFEST_SIZE,
            self.io,
            None,
            self.log,
        )
        m = self.read_manifest(new, sector)
        from cert_sector.sector import manifest_order

        # Rule S9: releases are ordered by (epoch, sequence), recorded as one number;
        # the installed one is placed in this sector's epoch (below 0: an earlier one).
        m.order = manifest_order(sector, m.seq)
        if m.order is None:
            raise Refused(
                "manifest: sequence "
                + str(m.seq)
                + " is below "
                + str(sector.first_seq)
                + ", the first of epoch "
                + str(sector.epoch)
            )
        installed = max(_installed_seq(st, self.kind) - (sector.epoch << 32), -1)
        try:
            check_header(
                m,
                self.repo,
                installed,
                self.cfg.get("board") or hal.board,
                self.channel,
                self._manager_version(st),
            )
        except TrustError as exc:
            raise Refused("manifest: " + _why(exc)) from None
        # Only signed facts are recorded: the tag the redirect named must be the
        # signed version, and a tag that failed its trial is known by its sequence.
        if "v" + m.version != tag:
            raise Refused("manifest: version " + m.version + " served under tag " + tag)
        if tag == st.get(self.kind + "_bad") and m.order <= (st.get(self.kind + "_bad_seq") or 0):
            raise Refused(
                tag
                + " failed its trial before; waiting for a newer one (sequence "
                + str(m.seq)
                + ")"
            )
        if m.pack_name != PACK_ASSET:
            raise Refused("manifest: unexpected pack name " + repr(m.pack_name))
        if m.kind == "firmware":
            if self.kind != "app":
                raise Refused("manifest: a manager release cannot be firmware")
            return m, size  # stays at SLOT.lcm.new: firmware does not use the app slots
        # The same manifest already staged in this slot: keep its files (resume).
        if file_size(final) == size and _file_sha(final, self.io) == digest:
            hal.fs.remove(new)
            self.log("staging: resuming " + slot)
            return m, size
        slots.forget_previous(hal, st, self.kind)
        remove_if_exists(hal.fs, final)
        remove_tree(hal.fs, slots.slot_dir(hal, slot))
        hal.fs.rename(new, final)
        return m, size

    def read_manifest(self, path, sector):
        """Check a manifest file's signature (hashing it from flash); its header."""
        size = file_size(path)
        if size <= SIGNATURE_BLOCK:
            raise Refused("manifest: truncated (" + str(size) + " bytes)")
        body = size - SIGNATURE_BLOCK
        h = hashlib.sha256()
        io = self.io
        with open(path, "rb") as f:
            left = body
            while left:
                n = f.readinto(io[: min(left, len(io))])
                if not n:
                    raise Refused("manifest: file shorter than it was")
                h.update(io[:n])
                left -= n
            trailer = f.read(SIGNATURE_BLOCK)
        try:
            check_signature(h.digest(), trailer[:8], trailer[8:], sector)
        except TrustError as exc:
            raise Refused("manifest: " + _why(exc)) from None
        with open(path, "rb") as f:
            m = ManifestReader(stream=f, body_size=body).header()
        try:
            check_scope(sector, trailer[:8], m.channel, m.boards)  # Rule M7
        except TrustError as exc:
            raise Refused("manifest: " + _why(exc)) from None
        return m

    def _manager_version(self, st):
        tag = st.get("mgr_tag")
        if tag and tag[0] == "v":
            return tag[1:]
        from cert_sector.version import MANAGER_VERSION

        return MANAGER_VERSION

    # -- 4/5. plan and fetch -----------------------------------------------

    def _plan_and_fetch(self, st, slot, m, tag):
        hal = self.hal
        plan = hal.root + "/lcm/state/plan.bin"
        active = st.get(self.kind)
        need, get_bytes = self._plan(slot, active, plan)
        free = hal.free_bytes()
        if free is not None and free < need + _FREE_MARGIN:
            raise Refused(
                "not enough flash: " + str(need) + " bytes to write, " + str(free) + " free"
            )
        budget = self._budget(get_bytes)
        self.log(
            "download: "
            + str(get_bytes)
            + " bytes of the pack, "
            + str(need - get_bytes)
            + " bytes copied locally; check budget "
            + str(budget // 1000)
            + " s"
        )
        pack = PackStream(
            self.client,
            self._url(tag, PACK_ASSET),
            m.pack_size,
            self.u.max_resumes(get_bytes),
            self.log,
        )
        try:
            self._fetch(slot, active, plan, pack)
        finally:
            pack.close()
            self.stats["resumes"] = pack.resumes
            self.stats["pack_requests"] = pack.requests

    def _budget(self, get_bytes):
        # The signed manifest now says what is left to fetch: the check's whole budget
        # becomes the sector's cap, this manifest and those pack bytes.
        budget = self.u.budget_ms(MAX_SECTOR_SIZE + self.manifest_size + get_bytes)
        self.client.budget_ms = budget
        return budget

    def _files(self, slot):
        """(open manifest file, generator of FileEntry) of the slot's manifest."""
        path = slots.manifest_path(self.hal, slot)
        f = open(path, "rb")  # noqa: SIM115 (returned: the caller closes it)
        reader = ManifestReader(stream=f, body_size=file_size(path) - SIGNATURE_BLOCK)
        reader.header()
        return f, reader.files()

    def _plan(self, slot, active, plan):
        hal = self.hal
        base = slots.slot_dir(hal, slot) + "/"
        old = _OldFiles(self, active)
        need = 0
        get_bytes = 0
        mf, files = self._files(slot)
        out = hal.fs.open_write(plan)
        # Records are written _BATCH at a time: fewer, larger flash writes.
        batch = bytearray(_REC * _BATCH)
        n = 0
        try:
            for e in files:
                target = base + e.path
                have = file_size(target)
                if have == e.size and _file_sha(target, self.io) == e.sha256:
                    rec = (_DONE, 0, 0)
                elif old.same(e):
                    rec = (_COPY, 0, 0)
                    need += e.size
                else:
                    if have < 0 or have >= e.size:
                        have = 0  # absent, complete but wrong, or too long: from scratch
                    rec = (_GET, e.offset + have, e.offset + e.size)
                    need += e.size - have
                    get_bytes += e.size - have
                struct.pack_into(">BII", batch, n, rec[0], rec[1], rec[2])
                n += _REC
                if n == len(batch):
                    out.write(batch)
                    n = 0
            if n:
                out.write(memoryview(batch)[:n])
        finally:
            out.close()
            mf.close()
            old.close()
        return need, get_bytes

    def _fetch(self, slot, active, plan, pack):
        hal = self.hal
        base = slots.slot_dir(hal, slot) + "/"
        src = slots.slot_dir(hal, active) + "/" if active else None
        mf, files = self._files(slot)
        pf = None
        try:
            pf = open(plan, "rb")  # noqa: SIM115 (closed in finally, with the manifest)
            for e in files:
                action, start, end = struct.unpack(">BII", pf.read(_REC))
                if action == _DONE:
                    continue
                target = base + e.path
                _parent(hal.fs, target)
                if action == _COPY and self._copy(src + e.path, target, e):
                    self.stats["copied"] += 1
                    continue
                if action == _COPY:
                    start, end = e.offset, e.offset + e.size  # the local copy was bad
                self._get(pack, pf, e, target, start, end)
                self.stats["fetched"] += 1
        finally:
            if pf is not None:
                pf.close()
            mf.close()

    def _copy(self, source, target, e):
        h = hashlib.sha256()
        io = self.io
        out = self.hal.fs.open_write(target)
        try:
            with open(source, "rb") as f:
                while True:
                    n = f.readinto(io)
                    if not n:
                        break
                    out.write(io[:n])
                    h.update(io[:n])
        except OSError:
            return False
        finally:
            out.close()
        return h.digest() == e.sha256 and file_size(target) == e.size

    def _get(self, pack, pf, e, target, start, end):
        fs = self.hal.fs
        have = start - e.offset
        h = hashlib.sha256()
        io = self.io
        if have:
            _hash_prefix(target, have, h, io)
            out = fs.open_append(target)
        else:
            out = fs.open_write(target)
        try:
            if start < end and (pack.resp is None or pack.pos != start or pack.end < end):
                pack.open(start, _run_end(pf, end))
            left = end - start
            while left:
                n = pack.readinto(io[: min(left, len(io))])
                out.write(io[:n])
                h.update(io[:n])
                left -= n
                self.stats["pack_bytes"] += n
        finally:
            out.close()
        if h.digest() != e.sha256:
            fs.remove(target)
            raise Refused("file " + e.path + ": downloaded bytes do not match the manifest sha256")

    # -- firmware (ESP32 OTA partitions) ------------------------------------

    def _install_firmware(self, st, m, tag, manifest):
        """Stream firmware.bin into the next OTA partition (lcm_device.firmware), then boot it.

        boot.json records `fw_next` (tag, sequence, partition) before set_boot:
        the next boot sees which partition the bootloader chose and either
        adopts the tag (`fw_tag`, marked valid after its first check) or, when
        the bootloader went back after set_boot (`fw_next`'s 4th element), records
        it as `fw_bad` (lcm_device.boot._firmware_booted).
        """
        from lcm_device.firmware import FirmwareWriter

        hal = self.hal
        parts = hal.partitions()
        if parts is None:
            raise Refused("this board has no OTA partitions for a firmware release")
        with open(manifest, "rb") as f:
            reader = ManifestReader(stream=f, body_size=file_size(manifest) - SIGNATURE_BLOCK)
            reader.header()
            entries = reader.files()
            e = next(entries)
            for _ in entries:
                pass  # M1-M3 over the whole record list
        if m.file_count != 1 or e.path != "firmware.bin":
            raise Refused("manifest: a firmware release holds exactly one file, firmware.bin")
        target = next_partition(parts)
        board = self.cfg.get("board") or hal.board
        reader = entries = None
        collect()  # the writer needs one contiguous 4 KB flash block
        writer = FirmwareWriter(target, e.size, e.sha256, board)
        budget = self._budget(e.size)
        self.log(
            "firmware: "
            + str(e.size)
            + " bytes into "
            + partition_label(target)
            + "; check budget "
            + str(budget // 1000)
            + " s"
        )
        pack = PackStream(
            self.client,
            self._url(tag, PACK_ASSET),
            m.pack_size,
            self.u.max_resumes(e.size),
            self.log,
        )
        try:
            pack.open(e.offset, e.offset + e.size)
            left = e.size
            io = self.io
            while left:
                n = pack.readinto(io[: min(left, len(io))])
                writer.write(io[:n])
                left -= n
                self.stats["pack_bytes"] += n
        finally:
            pack.close()
        writer.finish()
        self.log("firmware: written, hashed and read back")
        st["fw_next"] = [tag, m.order, partition_label(target)]
        st["app_repo"] = self.repo
        slots.save(hal, st)
        writer.activate()
        # Recorded after set_boot(): if the old image runs at the next boot, the
        # bootloader rolled the new one back (fw_bad) rather than it never being set.
        st["fw_next"] = [tag, m.order, partition_label(target), True]
        slots.save(hal, st)
        hal.fs.remove(manifest)
        self.log("firmware: " + tag + " boots next from " + partition_label(target))

    # -- 6. verify ---------------------------------------------------------

    def _verify_slot(self, slot):
        base = slots.slot_dir(self.hal, slot) + "/"
        mf, files = self._files(slot)
        count = 0
        try:
            for e in files:
                target = base + e.path
                if file_size(target) != e.size or _file_sha(target, self.io) != e.sha256:
                    remove_if_exists(self.hal.fs, target)
                    raise Refused("verify: " + e.path + " in " + slot + " does not match")
                count += 1
        finally:
            mf.close()
        self.log("verify: " + str(count) + " files of " + slot + " match the manifest")


class _OldFiles:
    """The active slot's manifest walked alongside the new one (both sorted by path)."""

    def __init__(self, updater, active):
        self.f = None
        self.cur = None
        if active is None or file_size(slots.manifest_path(updater.hal, active)) < 0:
            return
        try:
            self.f, self.it = updater._files(active)
            self.cur = next(self.it, None)
        except (OSError, TrustError):
            self.close()

    def same(self, e):
        raw = e.path.encode()
        try:
            while self.cur is not None and self.cur.path.encode() < raw:
                self.cur = next(self.it, None)
        except TrustError:
            self.cur = None
        c = self.cur
        return c is not None and c.path == e.path and c.size == e.size and c.sha256 == e.sha256

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        self.cur = None


def next_partition(parts):
    """The OTA partition to write: esp32.Partition(RUNNING).get_next_update()."""
    return parts(parts.RUNNING).get_next_update()


def partition_label(p):
    return p.info()[4]  # esp32.Partition.info(): (type, subtype, addr, size, label, encrypted)


def _installed_seq(st, kind):
    seq = st.get(kind + "_seq")
    seq = -1 if seq is None else seq
    if kind == "app" and st.get("fw_seq") is not None:
        seq = max(seq, st["fw_seq"])  # one repo, one sequence: files or firmware
    return seq


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


def _parent(fs, target):
    i = target.rfind("/")
    makedirs(fs, target[:i])


def _hash_prefix(path, n, h, io):
    with open(path, "rb") as f:
        while n:
            got = f.readinto(io[: min(n, len(io))])
            if not got:
                raise OSError("partial file shorter than expected")
            h.update(io[:got])
            n -= got


def _file_sha(path, io):
    """SHA-256 of a file on flash, or None when it does not exist."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                n = f.readinto(io)
                if not n:
                    break
                h.update(io[:n])
    except OSError:
        return None
    return h.digest()


def _why(exc):
    return exc.__class__.__name__ + ": " + str(exc)
