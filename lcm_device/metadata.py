"""Steps 2-3 of an install: the cert sector and the manifest, verified.

`verified(u, st, tag, slot)` refreshes the repo's cert sector (chain walk and
first-sector pinning included), asks the roll-out gate, then fetches and
checks the manifest of `tag` into `slot`. It returns plain values only, so
that lcm_device.install can release this module and the verifier
(cert_sector.p256) before it loads lcm_device.slotfill: a board with its code
in the heap never holds both. For the same reason the sector and the
manifest's parser are never loaded together: once the manifest is
downloaded, the sector gives the few values its checks need (the signer's
release key and scope, the epoch) and is released with cert_sector.sector
and cert_sector.keys before cert_sector.manifest is imported.
"""

import hashlib

from cert_sector.assets import (
    MANIFEST_ASSET,
    MAX_MANIFEST_SIZE,
    PACK_ASSET,
    SECTOR_ASSET,
    SIGNATURE_BLOCK,
)
from cert_sector.errors import FormatError, SignatureError, TrustError
from cert_sector.sector import MAX_SECTOR_SIZE  # a number: holds nothing of the module
from cert_sector.version import MANAGER_VERSION
from lcm_device import slots, trust
from lcm_device.compat import collect, file_size, unload
from lcm_device.fetch import download
from lcm_device.hal.fs import makedirs, pump, remove_if_exists, remove_tree
from lcm_device.http import StatusError
from lcm_device.update import Refused, why


def verified(u, st, tag, slot):
    """None when a staged roll-out leaves this device out; else (order, pack size,
    metadata bytes: the budget's share of the sector's cap and the manifest, firmware:
    whether the manifest, at SLOT.lcm.new, is a firmware release's)."""
    hal = u.hal
    # Until a manifest is verified, the budget covers the most the metadata may be.
    u.budget(MAX_SECTOR_SIZE + MAX_MANIFEST_SIZE)
    # Where the assets are served, asked in a row on the connection the tag's request
    # left open (GitHub: its CDN), so that they are then fetched in a row from there.
    from lcm_device.resolve import resolve

    resolve(u, tag)
    resolve = None
    unload(["lcm_device.resolve"], True)
    sector = _refresh_sector(u, tag)
    if sector is not None:
        # Held through the roll-out gate and the manifest's download, which need only its
        # release keys (and their scopes), epoch and expiry: its signatures, CAs (cached
        # on flash, trust.save_cas) and roots are let go.
        sector.signatures = sector.cas = sector.roots = ()
        from cert_sector.sector import check_expiry

        try:
            # Rule S7 for the sector in use, not only a new one: when the server
            # withholds the renewal (404, 304), an expired sector authorises nothing.
            check_expiry(sector, hal.time())
        except TrustError as exc:
            raise Refused("cert sector: sequence %s in use: %s" % (sector.seq, why(exc))) from None
        check_expiry = None
    if sector is None:  # before the roll-out's gate, which checks against it
        raise Refused("no cert sector installed for " + u.repo)
    # The order of what is installed, which a release must be above (the roll-out's
    # gate, the manifest's checks): one repo, one sequence, files or firmware.
    installed = st.get(u.kind + "_seq")
    installed = -1 if installed is None else installed
    if u.kind == "app" and st.get("fw_seq") is not None:
        installed = max(installed, st["fw_seq"])
    staged = None
    if u.kind == "app":
        # A staged roll-out (lcm_device.rollout): checked against the fresh sector.
        from lcm_device.rollout import gate

        staged = gate(u, tag, sector, installed)  # releases its modules
        gate = None
        if staged == "wait":
            return None
        if staged is not None:
            staged = staged.manifest_seq  # a number: the Rollout's class is let go too
        collect()  # their heap goes to the manifest
    new, size, digest, kid = _download_manifest(u, tag, slot)
    # What the manifest's checks need of the sector, as plain values (rules M4, M7, S9);
    # then the sector goes, with its module, before the manifest's parser is loaded.
    key = sector.release_key(kid)
    scope = sector.scope(kid)
    epoch, first_seq = sector.epoch, sector.first_seq
    sector = None
    unload(["cert_sector.sector", "cert_sector.keys", "lcm_device.firstpin"], True)
    m = _check_manifest(
        u, st, tag, slot, new, size, digest, kid, key, scope, epoch, first_seq, installed
    )
    u.log("manifest: %s %s sequence %s" % (u.repo, m.version, m.seq))
    if staged is not None and staged != m.seq:
        # Rule R4: the roll-out document is for this very release.
        raise Refused("roll-out document for sequence " + str(staged))
    # Of the header, the fetch needs the pack's size and the switch the order.
    return m.order, m.pack_size, MAX_SECTOR_SIZE + size, m.kind == "firmware"


# -- 2. the cert sector ------------------------------------------------------


def _refresh_sector(u, tag):
    # The installed sector is read here, not passed in: an argument stays referenced
    # from the caller's frame for the whole call, and the chain walk lets go of it.
    hal = u.hal
    kind = u.kind
    sector = trust.installed(hal, kind, u.repo, u.io, u.log)
    path = trust.path(hal, kind, ".sector")
    new = path + ".new"
    makedirs(hal.fs, hal.root + trust.CERTS[:-1])
    headers = stored = None
    if sector is not None:
        stored = trust.stored_etag(hal, kind)
        if stored:
            headers = {"If-None-Match": stored}
    try:
        _, digest, etag = download(u, u.url(tag, SECTOR_ASSET), new, MAX_SECTOR_SIZE, headers)
    except StatusError as exc:
        if exc.status == 304:
            return sector
        if exc.status == 404 and sector is not None:
            u.log("cert sector: none in %s, keeping the installed one" % (tag,))
            return sector
        raise
    if sector is not None and digest == trust.file_sha(path, u.io):
        if etag != stored:
            trust.save_etag(hal, kind, etag)  # next time: 304, no body
        return sector
    trusted = sector
    u.client.close_plain()  # the sector's verify is the install's busiest heap
    # Imported here, not with the module: a function held keeps its module's globals,
    # and verified() releases cert_sector.sector before the manifest's checks.
    from cert_sector.sector import check_sector

    try:
        # Parsed field by field from flash, its body hashed on the way (its CAs
        # stay there): a sector of 4096 bytes never sits in RAM.
        # The checks (S3-S7, S9) read a sector's roots, threshold, sequence, epoch,
        # expiry and signatures: the release keys and scopes of the installed one, and
        # of the new one once parsed, are let go while it is parsed and its signatures
        # verified (a keyless server's junk sector, every list at its most, ran the 24 KB
        # data heap out); the new one is read again from flash once it holds.
        if sector is not None:
            sector.release_keys = []
            if sector.scopes:
                sector.scopes = None
        collect()
        fresh = trust.read_sector(new, u.io)
        fresh.release_keys = []
        if fresh.scopes:
            fresh.scopes = None
        if trusted is None and kind == "app" and not u.roots:
            # No app roots pinned at build time: the setup page's fingerprint
            # or trust on first use decides, once, from this first sector.
            from lcm_device.firstpin import pin_first_sector

            pin_first_sector(u, fresh)
        if trusted is None:
            trusted = trust.pinned(u.repo, u.roots, u.threshold)
        try:
            check_sector(fresh, fresh.digest, trusted, hal.time())
        except SignatureError as exc:
            if fresh.seq <= trusted.seq:
                raise
            # Not signed by the roots we trust, yet newer: perhaps several root
            # rotations happened meanwhile (since the installed sector, or since the
            # roots were pinned: a board imaged before them); the repo's chain of
            # sectors bridges them.
            reason, top = str(exc), fresh.seq
            exc = sector = trusted = fresh = None  # on flash: parsed again after the walk
            trusted = _walk_chain(u, tag, top, reason)
            fresh = trust.read_sector(new, u.io)
            check_sector(fresh, fresh.digest, trusted, hal.time())
    except TrustError as exc:
        raise Refused("cert sector: " + why(exc)) from None
    trusted = fresh = None
    fresh = trust.read_sector(new, u.io)  # whole again: verified, its keys are needed
    # CAs first: a cut before the swap leaves the old sector (fetched again
    # next time) with the verified new CAs, never the new sector with stale ones.
    trust.save_cas(hal, kind, new, fresh.cas, u.io)
    trust.copy_over(hal, new, path + ".copy", u.io)  # damaged flash: trust.py, rule L2
    hal.fs.rename(new, path)  # the sector's atomic A/B swap
    trust.save_etag(hal, kind, etag)
    u.log(
        "cert sector: installed sequence %s (%s of %s roots, %s release keys, %s CAs)"
        % (fresh.seq, fresh.threshold, len(fresh.roots), len(fresh.release_keys), len(fresh.cas))
    )
    return fresh


def _walk_chain(u, tag, top, reason):
    """The last sector below sequence `top` reached from the installed one (else from the
    pinned roots) through the release's certs.chain, each link checked with the rotation
    rules (S3-S6, S9; not S7: a link may have expired since, the end of the chain must
    not). From pinned roots, the links before the first one they signed are passed
    over, told by their signatures' key ids alone (no verify: a keyless server's chain
    of junk must not cost a signature check per link); a link that names enough of them
    is checked and must hold. Only verified links are trusted, as a first sector is.
    One verified link and the one being checked are held at a time."""
    from cert_sector.assets import CHAIN_ASSET, MAX_CHAIN_SIZE
    from cert_sector.keys import key_id
    from cert_sector.sector import check_sector

    hal = u.hal
    base = trust.path(hal, u.kind, ".sector")
    chain, link = base + ".chain", base + ".link"
    # The chain may be this long: the check's budget grows by as much.
    u.budget(MAX_SECTOR_SIZE + MAX_CHAIN_SIZE + MAX_MANIFEST_SIZE)
    try:
        size = download(u, u.url(tag, CHAIN_ASSET), chain, MAX_CHAIN_SIZE, None)[0]
    except StatusError as exc:
        if exc.status != 404:
            raise
        raise SignatureError(reason + "; no certs.chain in " + tag) from None
    io = u.io
    pos = 0
    s = None
    trusted = trust.installed(hal, u.kind, u.repo, io, None)
    if trusted is None:
        trusted = trust.pinned(u.repo, u.roots, u.threshold)
    try:
        with open(chain, "rb") as f:
            while pos + 2 <= size:
                s = None
                collect()  # the last link's parse and signature checks: garbage
                head = f.read(2)
                n = (head[0] << 8) | head[1]
                if not 0 < n <= MAX_SECTOR_SIZE or pos + 2 + n > size:
                    raise FormatError("certs.chain: member of %s bytes" % (n,))
                out = hal.fs.open_write(link)
                try:
                    pump(f, io, n, out, None)
                finally:
                    out.close()
                pos += 2 + n
                s = trust.read_sector(link, io)
                if s.seq >= top:
                    break
                if s.seq <= trusted.seq:
                    continue
                if trusted.seq < 0:  # pinned roots (PinnedRoots.seq is -1)
                    named = 0
                    for kid, _ in s.signatures:
                        for key in trusted.roots:
                            named += key_id(key) == kid
                    if named < trusted.threshold:
                        continue  # a link from before the pinned roots
                try:
                    trusted = check_sector(s, s.digest, trusted, None)
                except TrustError as exc:
                    raise exc.__class__("chain link sequence %s: %s" % (s.seq, exc)) from None
                u.log("cert sector: chain link sequence %s verified" % (s.seq,))
    finally:
        remove_if_exists(hal.fs, link)
        remove_if_exists(hal.fs, chain)
    return trusted


# -- 3. the manifest ---------------------------------------------------------


def _download_manifest(u, tag, slot):
    """The manifest of `tag` downloaded to /lcm/SLOT.lcm.new: its path, size, SHA-256,
    and the id of its signer (the trailer's first bytes; the signature is checked later,
    with the key the sector lists under that id)."""
    final = slots.manifest_path(u.hal, slot)
    new = final + ".new"
    makedirs(u.hal.fs, u.hal.root + "/lcm")
    size, digest, _ = download(u, u.url(tag, MANIFEST_ASSET), new, MAX_MANIFEST_SIZE, None)
    if size <= SIGNATURE_BLOCK:
        raise Refused("manifest: truncated (%s bytes)" % (size,))
    with open(new, "rb") as f:
        f.seek(size - SIGNATURE_BLOCK)
        kid = f.read(8)  # the key id (cert_sector.keys.KEY_ID_SIZE)
    return new, size, digest, kid


def _check_manifest(
    u, st, tag, slot, new, size, digest, kid, key, scope, epoch, first_seq, installed
):
    """The verified manifest header of `tag`, downloaded at `new`, in /lcm/SLOT.lcm
    (SLOT.lcm.new for firmware). `key`, `scope`: the sector's for the signer `kid`;
    `epoch`, `first_seq`: the sector's (rule S9); `installed`: the order it must be above."""
    # Loaded only now, after the sector's release (see the module's docstring).
    from cert_sector.manifest import check_header, manifest_order

    hal = u.hal
    kind = u.kind
    final = slots.manifest_path(hal, slot)
    m = read_manifest(u, new, size, kid, key, scope)
    # Rule S9: releases are ordered by (epoch, sequence), recorded as one number;
    # the installed one is placed in this sector's epoch (below 0: an earlier one).
    m.order = manifest_order(epoch, first_seq, m.seq)
    if m.order is None:
        raise Refused(
            "manifest: sequence %s is below %s, the first of epoch %s" % (m.seq, first_seq, epoch)
        )
    mgr = st.get("mgr_tag")
    try:
        check_header(
            m,
            u.repo,
            max(installed - (epoch << 32), -1),
            u.cfg["board"],
            u.channel,
            mgr[1:] if mgr and mgr[0] == "v" else MANAGER_VERSION,
        )
    except TrustError as exc:
        raise Refused("manifest: " + why(exc)) from None
    # Only signed facts are recorded: the tag the redirect named must be the
    # signed version, and a tag that failed its trial is known by its sequence.
    if "v" + m.version != tag:
        raise Refused("manifest: version %s served under tag %s" % (m.version, tag))
    if tag == st.get(kind + "_bad") and m.order <= (st.get(kind + "_bad_seq") or 0):
        raise Refused(
            "%s failed its trial before; waiting for a newer one (sequence %s)" % (tag, m.seq)
        )
    if m.pack_name != PACK_ASSET:
        raise Refused("manifest: unexpected pack name " + repr(m.pack_name))
    if m.kind == "firmware":
        if kind != "app":
            raise Refused("manifest: a manager release cannot be firmware")
        return m  # stays at SLOT.lcm.new: firmware does not use the app slots
    # The same manifest already staged in this slot: keep its files (resume).
    if file_size(final) == size and trust.file_sha(final, u.io) == digest:
        hal.fs.remove(new)
        u.log("staging: resuming " + slot)
        return m
    slots.forget_previous(hal, st, kind)
    remove_if_exists(hal.fs, final)
    remove_tree(hal.fs, slots.slot_dir(hal, slot))
    hal.fs.rename(new, final)
    return m


def read_manifest(u, path, size, kid, key, scope):
    """Check a manifest file's signature by `key` (hashing it from flash), its signer's
    `scope`; its header."""
    from cert_sector.manifest import ManifestReader, check_scope, check_signature

    body = size - SIGNATURE_BLOCK
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if pump(f, u.io, body, None, h) != body:
            raise Refused("manifest: file shorter than it was")
        signature = f.read(SIGNATURE_BLOCK)[8:]  # after the key id
    try:
        check_signature(h.digest(), key, signature)  # Rule M4
    except TrustError as exc:
        raise Refused("manifest: " + why(exc)) from None
    with open(path, "rb") as f:
        m = ManifestReader(stream=f, body_size=body).header()
    try:
        check_scope(kid, scope, m.channel, m.boards)  # Rule M7
    except TrustError as exc:
        raise Refused("manifest: " + why(exc)) from None
    return m
