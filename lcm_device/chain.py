"""Catching up across root rotations: walking a release's `certs.chain`.

Loaded only when a new sector is newer than the trusted one but not signed by
its roots (docs/formats.md, "Sector chain"). `walk` streams the chain to
flash, copies each member to a file and parses it from there (no sector in
RAM), and checks each link against the last one accepted.
"""

from cert_sector.errors import FormatError, SignatureError, TrustError
from cert_sector.manifest import MAX_MANIFEST_SIZE
from cert_sector.sector import MAX_SECTOR_SIZE
from lcm_device import trust
from lcm_device.compat import collect
from lcm_device.fetch import download
from lcm_device.hal.fs import remove_if_exists
from lcm_device.http import StatusError


def walk(inst, tag, trusted, top, why):
    """The last sector below sequence `top` reached from `trusted` through the
    release's certs.chain, each link checked with the rotation rules (S3-S6, S9;
    not S7: a link may have expired since, the end of the chain must not)."""
    from cert_sector.assets import CHAIN_ASSET, MAX_CHAIN_SIZE
    from cert_sector.sector import check_sector

    hal = inst.hal
    base = trust.sector_path(hal, inst.kind)
    chain, link = base + ".chain", base + ".link"
    # The chain may be this long: the check's budget grows by as much.
    inst.client.budget_ms = inst.u.budget_ms(MAX_SECTOR_SIZE + MAX_CHAIN_SIZE + MAX_MANIFEST_SIZE)
    try:
        size = download(
            inst.client,
            hal.fs,
            inst._url(tag, CHAIN_ASSET),
            chain,
            MAX_CHAIN_SIZE,
            inst.io,
            None,
            inst.log,
        )[0]
    except StatusError as exc:
        if exc.status != 404:
            raise
        raise SignatureError(str(why) + "; no certs.chain in " + tag) from None
    io = inst.io
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
                inst.log("cert sector: chain link sequence " + str(s.seq) + " verified")
    finally:
        remove_if_exists(hal.fs, link)
        remove_if_exists(hal.fs, chain)
    return trusted
