"""Installed cert sectors: what a repo's manifests and TLS connections are checked against.

Each repo the device follows (kind "app" and the manager, "mgr") has one
installed sector at /lcm/state/certs/KIND.sector, with the ETag it was
served with in KIND.etag (sent as If-None-Match, so an unchanged sector
costs no body bytes). A new sector is downloaded to KIND.sector.new,
verified against the installed one (or the pinned roots the first time,
rules S1-S7 in cert_sector.sector) and swapped in with one atomic rename:
that rename is the sector's A/B switch. The installed file was verified
before it was installed, so loading it only parses it: field by field from
flash (cert_sector.sector.read_sector_file), CAs left there until TLS needs
them, so a full 4096-byte sector never sits in RAM.

Two copies: before the swap, the verified new sector is also copied to
KIND.sector.copy (temp + rename). Damaged flash (a torn or truncated file,
flipped bits, garbage, a missing file) must not stop all further updates, so
loading follows these rules:

  L1  Both copies byte for byte the same (SHA-256 of the files): the sector
      is parsed and used; it was verified when it was installed.
  L2  Otherwise each copy, KIND.sector first, is used only when it parses
      (S1, S2) and carries its own threshold of valid signatures by its own
      roots (S5): a flipped bit in its body or in those signatures fails this
      (one in the old roots' signatures, which S4 needed at install, does not
      matter now). The first such copy is used, and copied over the other
      one (temp + rename), with a log line naming what was wrong. The copy
      holds the same verified sector, never an older one, so falling back
      trusts exactly what was installed (an older sector could bring back a
      release key the newer one revoked).
  L3  Neither copy sound: the device has no installed sector (logged), and
      the next check is a first install: the release's sector must verify
      against the pinned roots (config), through the release's certs.chain
      when the repo has rotated its roots since provisioning.

The ETag is a server's word, replayed in a header: it is stored only when it
is 1 to MAX_ETAG bytes of printable ASCII without spaces (the characters of
an RFC 9110 entity-tag), else none is kept; a stored one that is not so (an
older device's, a damaged file) is removed and the check goes on without it.
"""

import binascii

from lcm_device.compat import file_size

CERTS = "/lcm/state/certs/"
# A bootstrap TLS anchor (DER) for the first contact, before any sector is installed.
BOOTSTRAP_CA = CERTS + "bootstrap.der"


def path(hal, kind, ext):
    """KIND's file with extension `ext`: ".sector", ".sector.copy", ".etag" or ".cas"."""
    return hal.root + CERTS + kind + ext


MAX_ETAG = 100


def usable_etag(value):
    """Whether an ETag (str or bytes) may be stored and sent back (see above)."""
    raw = value.encode() if isinstance(value, str) else value
    if not raw or len(raw) > MAX_ETAG:
        return False
    return all(32 < c < 127 for c in raw)


def stored_etag(hal, kind):
    """The stored ETag of KIND's sector as a str, or None; an unusable one is removed."""
    from lcm_device.hal.fs import remove_if_exists

    file = path(hal, kind, ".etag")
    try:
        data = read_small(file, MAX_ETAG)
    except ValueError:  # longer than any usable one
        data = b" "
    if data is None:
        return None
    if usable_etag(data):
        return data.decode()
    remove_if_exists(hal.fs, file)
    return None


def save_etag(hal, kind, etag):
    """Store the ETag a new sector came with, or keep none when it is unusable."""
    from lcm_device.hal.fs import remove_if_exists, write_atomic

    file = path(hal, kind, ".etag")
    if etag and usable_etag(etag):
        write_atomic(hal.fs, file, etag.encode())
    else:
        remove_if_exists(hal.fs, file)


def read_small(file, limit):
    """The bytes of a small file (at most `limit`), or None when it does not exist."""
    n = file_size(file)
    if n < 0:
        return None
    if n > limit:
        raise ValueError("%s is larger than %s bytes" % (file, limit))
    with open(file, "rb") as f:
        return f.read(n)


def read_sector(file, buf):
    """The Sector in `file`, parsed field by field from flash (its CAs stay there:
    (offset, length) in `sector.cas`), or None when there is none."""
    from cert_sector.sector import read_sector_file

    n = file_size(file)
    if n < 0:
        return None
    with open(file, "rb") as f:
        return read_sector_file(f, n, buf)


def copy_over(hal, src, dst, buf):
    """Replace `dst` by a copy of `src` (temp + rename), through `buf`: how the verified
    sector gets its second copy before the swap (at every moment one copy holds a
    verified sector, rule L2), and how a sound copy repairs the other."""
    from lcm_device.hal.fs import pump

    out = hal.fs.open_write(dst + ".tmp")
    try:
        with open(src, "rb") as f:
            pump(f, memoryview(buf), -1, out, None)
    finally:
        out.close()
    hal.fs.rename(dst + ".tmp", dst)


def file_sha(file, buf):
    """SHA-256 of a file on flash, read through `buf`, or None when there is none."""
    import hashlib

    from lcm_device.hal.fs import pump

    h = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            pump(f, memoryview(buf), -1, None, h)
    except OSError:
        return None
    return h.digest()


def _sound(file, buf):
    """(the Sector in `file`, None) when it passes rule L2, (None, None) when there is
    none, else (None, why)."""
    from cert_sector.errors import TrustError
    from cert_sector.sector import PinnedRoots, check_sector

    try:
        sector = read_sector(file, buf)
        if sector is None:
            return sector, None  # no file (sector: a name, not a tuple constant in RAM)
        # Rule S5: signed by its own roots (the body as read). Another repo's sector
        # is sound too: the repo was changed in the config, `installed` answers None.
        own = PinnedRoots(sector.repo, sector.roots, sector.threshold)
        check_sector(sector, sector.digest, own, None)
    except (TrustError, ValueError) as exc:  # ValueError: UnicodeError in a text field
        return None, exc.__class__.__name__ + ": " + str(exc)
    return sector, None


def installed(hal, kind, repo, buf, log):
    """The installed Sector of `repo`, or None (none yet, one for another repo, or
    both copies damaged): rules L1-L3 above; `log` (or None) gets a line for each repair."""
    main = path(hal, kind, ".sector")
    copy = main + ".copy"
    digest = file_sha(main, buf)
    if digest is not None and digest == file_sha(copy, buf):  # Rule L1
        from cert_sector.errors import TrustError

        try:
            sector = read_sector(main, buf)
            return sector if sector.repo == repo else None
        except (TrustError, ValueError):
            pass  # the same damage in both (not written so): rule L3
    else:
        for file, other in ((main, copy), (copy, main)):  # Rule L2
            sector, why = _sound(file, buf)
            if sector is None:
                if log and why is not None:
                    log("cert sector: %s damaged: %s" % (file[len(hal.root) :], why))
                continue
            copy_over(hal, file, other, buf)
            if log:
                log(
                    "cert sector: %s restored from %s"
                    % (other[len(hal.root) :], file[len(CERTS) + len(hal.root) :])
                )
            return sector if sector.repo == repo else None
        if digest is None and file_size(copy) < 0:
            return None  # none installed yet: a first install
    if log:  # Rule L3
        log("cert sector: no sound copy installed; the pinned roots decide, as on a first install")
    return None


def pinned(repo, roots_hex, threshold):
    """The pinned roots from the config (hex of uncompressed points)."""
    from cert_sector.sector import PinnedRoots

    roots = [binascii.unhexlify(r) for r in roots_hex]
    return PinnedRoots(repo, roots, threshold or 1)


def save_cas(hal, kind, file, cas, buf):
    """Cache the CAs of the sector `file` (`cas`: their (offset, length) in it) as
    u16 length + DER each, copied through `buf`, so that a check sets up TLS without
    parsing the sector (and its keys) first. Temp + rename, as every state file."""
    from lcm_device.hal.fs import pump

    final = path(hal, kind, ".cas")
    out = hal.fs.open_write(final + ".tmp")
    try:
        with open(file, "rb") as f:
            for offset, n in cas:
                out.write(bytes((n >> 8, n & 255)))
                f.seek(offset)
                if pump(f, memoryview(buf), n, out, None) != n:
                    raise OSError("sector file shorter than its CA list")
    finally:
        out.close()
    hal.fs.rename(final + ".tmp", final)


def tls_anchors(hal, kind, repo):
    """DER CAs for the HTTP client: the installed sector's, plus the bootstrap anchor.

    Read from flash only when a TLS connection needs them (the client's load_cas)."""
    data = read_small(path(hal, kind, ".cas"), 16 * 1024)
    if data is None:
        # A sector installed before the cache existed: its CAs from the sector file.
        sector = installed(hal, kind, repo, bytearray(256), None)
        cas = []
        if sector is not None:
            with open(path(hal, kind, ".sector"), "rb") as f:
                for offset, n in sector.cas:
                    f.seek(offset)
                    cas.append(f.read(n))
    else:
        cas = []
        i = 0
        while i + 2 <= len(data):
            n = (data[i] << 8) | data[i + 1]
            cas.append(data[i + 2 : i + 2 + n])
            i += 2 + n
    boot = read_small(hal.root + BOOTSTRAP_CA, 8192)
    if boot:
        cas.append(boot)
    return cas or None
