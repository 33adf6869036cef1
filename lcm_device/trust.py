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


def sector_path(hal, kind):
    return hal.root + CERTS + kind + ".sector"


def etag_path(hal, kind):
    return hal.root + CERTS + kind + ".etag"


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

    path = etag_path(hal, kind)
    try:
        data = read_small(path, MAX_ETAG)
    except ValueError:  # longer than any usable one
        data = b" "
    if data is None:
        return None
    if usable_etag(data):
        return data.decode()
    remove_if_exists(hal.fs, path)
    return None


def save_etag(hal, kind, etag):
    """Store the ETag a new sector came with, or keep none when it is unusable."""
    from lcm_device.hal.fs import remove_if_exists, write_atomic

    path = etag_path(hal, kind)
    if etag and usable_etag(etag):
        write_atomic(hal.fs, path, etag.encode())
    else:
        remove_if_exists(hal.fs, path)


def read_small(path, limit):
    """The bytes of a small file (at most `limit`), or None when it does not exist."""
    n = file_size(path)
    if n < 0:
        return None
    if n > limit:
        raise ValueError(path + " is larger than " + str(limit) + " bytes")
    with open(path, "rb") as f:
        return f.read(n)


def read_sector(path, buf):
    """The Sector in the file `path`, parsed field by field from flash (its CAs stay
    there: (offset, length) in `sector.cas`), or None when there is none."""
    from cert_sector.sector import read_sector_file

    n = file_size(path)
    if n < 0:
        return None
    with open(path, "rb") as f:
        return read_sector_file(f, n, buf)


def installed(hal, kind, repo, buf):
    """The installed Sector of `repo`, or None (none yet, or one for another repo)."""
    sector = read_sector(sector_path(hal, kind), buf)
    if sector is None or sector.repo != repo:
        return None
    return sector


def pinned(repo, roots_hex, threshold):
    """The pinned roots from the config (hex of uncompressed points)."""
    from cert_sector.sector import PinnedRoots

    roots = [binascii.unhexlify(r) for r in roots_hex]
    return PinnedRoots(repo, roots, threshold or 1)


def cas_path(hal, kind):
    return hal.root + CERTS + kind + ".cas"


def save_cas(hal, kind, path, cas, buf):
    """Cache the CAs of the sector file `path` (`cas`: their (offset, length) in it) as
    u16 length + DER each, copied through `buf`, so that a check sets up TLS without
    parsing the sector (and its keys) first. Temp + rename, as every state file."""
    final = cas_path(hal, kind)
    out = hal.fs.open_write(final + ".tmp")
    mv = memoryview(buf)
    try:
        with open(path, "rb") as f:
            for offset, n in cas:
                out.write(bytes((n >> 8, n & 255)))
                f.seek(offset)
                while n:
                    k = f.readinto(mv[: min(n, len(mv))])
                    if not k:
                        raise OSError("sector file shorter than its CA list")
                    out.write(mv[:k])
                    n -= k
    finally:
        out.close()
    hal.fs.rename(final + ".tmp", final)


def tls_anchors(hal, kind, repo):
    """DER CAs for the HTTP client: the installed sector's, plus the bootstrap anchor.

    Read from flash only when a TLS connection needs them (the client's load_cas)."""
    data = read_small(cas_path(hal, kind), 16 * 1024)
    if data is None:
        # A sector installed before the cache existed: its CAs from the sector file.
        sector = installed(hal, kind, repo, bytearray(256))
        cas = []
        if sector is not None:
            with open(sector_path(hal, kind), "rb") as f:
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
