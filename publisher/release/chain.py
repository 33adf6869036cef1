"""`certs.chain`: every cert sector a repo has published, so devices can catch up.

A device verifies a new sector against the one it trusts (rules S4-S6), so a
device that missed several root rotations needs each sector in between. Each
release carries them all in one asset (layout: docs/formats.md, "Sector
chain"): members `u16 length | sector`, ascending sequence, one per sequence,
the last being the release's own `certs.sector`, at most MAX_CHAIN_SIZE bytes
(the oldest members are dropped to fit: a device older than the chain needs
re-provisioning).

A mirror (`lcm host --mirror`) serves a chain only after `verify_chain`, which walks
it as a device does, from the mirror's trust (rules; the sector rules are
cert_sector.sector's, applied by its own functions):

  C1  The chain splits into members of 1 to 4096 bytes, at most MAX_CHAIN_SIZE in
      all; each member parses as a sector (S1, S2); sequences strictly ascend.
  C2  Its last member is the release's certs.sector, byte for byte.
  C3  The walk starts at the trust: members at or below a trusted sector's sequence
      are passed over (the one at its sequence must be that very sector); with
      pinned roots only, members whose signatures do not name enough of those roots
      (their key ids, as lcm_device/metadata.py tells them, without a signature
      check) are passed over, and the first that does must verify (as a first sector).
  C4  From there on, each member verifies against the one accepted before it by
      the rotation rules (S3-S6, S9; not S7: a link may have expired since, the
      end of the chain must not, which the caller checks): a missing or a forged
      link breaks the walk.
  C5  History does not change: a member with the sequence of a sector in `known`
      (the members of the chain the mirror verified and served before) is that
      very sector.

Members below the start are passed over as a device that trusts the start would:
beyond C5 the mirror cannot vouch for them (a device that trusts one checks each
link itself).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cert_sector.assets import CHAIN_ASSET, MAX_CHAIN_SIZE, SECTOR_ASSET
from cert_sector.errors import FormatError, MismatchError, RollbackError, SignatureError, TrustError
from publisher import sector_format as sf
from publisher.release.github import Session

if TYPE_CHECKING:
    from publisher.release.publish import KnownRelease


def split_chain(data: bytes) -> list[bytes]:
    """The members of a chain; TrustError (FormatError) when it is malformed."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise FormatError("certs.chain: truncated member length")
        (n,) = struct.unpack(">H", data[i : i + 2])
        if not 0 < n <= sf.MAX_SECTOR_SIZE or i + 2 + n > len(data):
            raise FormatError(f"certs.chain: member of {n} bytes at offset {i}")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def verify_chain(
    data: bytes,
    sector: bytes,
    trusted: sf.Sector | sf.PinnedRoots,
    known: list[bytes] | None = None,
) -> sf.Sector:
    """The release's `sector` reached through the chain `data` from `trusted`, `known`
    being sectors served before (rules C1-C5 above); raises a TrustError subclass
    naming the member that failed."""
    before = {sf.parse_sector(k).seq: k for k in known or []}
    if len(data) > MAX_CHAIN_SIZE:  # Rule C1
        raise FormatError(f"certs.chain: {len(data)} bytes, more than {MAX_CHAIN_SIZE}")
    members = split_chain(data)  # Rule C1
    if not members or members[-1] != sector:  # Rule C2
        raise MismatchError("certs.chain: its last member is not the release's certs.sector")
    pinned = isinstance(trusted, sf.PinnedRoots)
    started = False
    previous = -1
    for i, member in enumerate(members):
        try:
            link = sf.parse_sector(member)  # Rule C1: S1, S2
        except TrustError as exc:
            raise exc.__class__(f"certs.chain: member {i}: {exc}") from None
        if link.seq <= previous:  # Rule C1
            raise FormatError(f"certs.chain: sequence {link.seq} after {previous}")
        previous = link.seq
        if before.get(link.seq, member) != member:  # Rule C5
            raise MismatchError(
                f"certs.chain: its sector of sequence {link.seq} is not the one served before"
            )
        if not started and isinstance(trusted, sf.Sector) and link.seq <= trusted.seq:
            # Rule C3: below the trusted sector, passed over; at its sequence, itself.
            if link.seq == trusted.seq and link.body != trusted.body:
                raise MismatchError(
                    f"certs.chain: its sector of sequence {link.seq} is not the trusted one"
                )
            continue
        if pinned and not started:
            named = {kid for kid, _ in link.signatures} & {sf.key_id(r) for r in trusted.roots}
            if len(named) < trusted.threshold:
                continue  # Rule C3: a member from before the pinned roots
        try:
            trusted = sf.verify_sector(member, trusted, None)  # Rule C4 (C3 with pins)
        except TrustError as exc:
            raise exc.__class__(f"certs.chain: link sequence {link.seq}: {exc}") from None
        started = True
    if pinned and not started:  # Rule C3
        raise SignatureError("certs.chain: no member is signed by the pinned roots")
    if not started and previous < trusted.seq:  # Rule C3: the chain ends below the trust
        raise RollbackError(
            f"certs.chain: ends at sequence {previous}, below the trusted {trusted.seq}"
        )
    return sf.parse_sector(sector)


def build_chain(sectors: list[bytes], current: bytes) -> bytes:
    """The chain of `sectors` (any order, duplicates and unparseable ones dropped)
    up to and ending with `current`."""
    top = sf.parse_sector(current).seq
    by_seq: dict[int, bytes] = {}
    for data in sectors:
        try:
            seq = sf.parse_sector(data).seq
        except TrustError:
            continue
        if seq < top:
            by_seq.setdefault(seq, data)
    members = [by_seq[s] for s in sorted(by_seq)] + [current]
    parts = [struct.pack(">H", len(m)) + m for m in members]
    while sum(len(p) for p in parts) > MAX_CHAIN_SIZE:
        parts.pop(0)
    return b"".join(parts)


def published_sectors(session: Session, known: list[KnownRelease]) -> list[bytes]:
    """Every sector the repo's published releases carry: the newest release's chain
    when it has one (it holds all earlier ones), else each release's certs.sector."""
    published = sorted(
        (k for k in known if not k.release.draft and k.manifest is not None),
        key=lambda k: k.manifest.seq if k.manifest else -1,
        reverse=True,
    )
    found: list[bytes] = []
    for k in published:
        assets = {a.name: a for a in session.assets(k.release) if a.state == "uploaded"}
        if CHAIN_ASSET in assets:
            try:
                return found + split_chain(session.download(assets[CHAIN_ASSET], MAX_CHAIN_SIZE))
            except TrustError:
                pass  # a damaged chain: fall back to the releases' own sectors
        if SECTOR_ASSET in assets:
            found.append(session.download(assets[SECTOR_ASSET], sf.MAX_SECTOR_SIZE))
    return found
