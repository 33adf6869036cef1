"""The roll-out document (`rollout.lcm`): which share of a fleet may take one release.

Layout (big-endian; docs/formats.md, "Roll-out document"):

  magic "LCMR" | version 1 | flags u8 (bit 0: halted) | repo str8 | tag str8 |
  manifest sequence u32 | roll-out sequence u32 | share u8 (percent, 0..100) |
  key id 8 | r||s 64   (signature over SHA-256 of everything before the key id)

Rules a device applies (R1-R6), each named where it is checked:
  R1 it parses exactly: magic, version, lengths inside the buffer, no trailing bytes,
     flags only bit 0, share at most 100;
  R2 it names the repo and the tag being installed (no reuse for another release);
  R3 it is signed by a release key of the repo's verified cert sector whose scope, if it
     has one, allows the channel (a beta-only key stages no stable release: rule S8);
  R4 its manifest sequence is the release's (checked once the manifest is read);
  R5 its roll-out sequence is not below one already seen for this tag (an older,
     narrower or un-halted document cannot be replayed);
  R6 a device takes part when `bucket(device, repo, tag) < share` and not halted.

`bucket` is a stable hash of the device id and the release, 0..99: as the share
grows the same devices stay in, and each release draws a different tenth.
"""

import hashlib
import struct

from cert_sector.encoding import Reader, check_repo, pack_text
from cert_sector.errors import FormatError, SignatureError

MAGIC = b"LCMR"
VERSION = 1
MAX_ROLLOUT_SIZE = 256
HALTED = 1
_SIG = 72  # key id 8 + r||s 64


class Rollout:
    def __init__(self, repo, tag, manifest_seq, seq, share, halted=False):
        self.repo = repo
        self.tag = tag
        self.manifest_seq = manifest_seq
        self.seq = seq
        self.share = share
        self.halted = halted


def bucket(device_id, repo, tag):
    """0..99 from SHA-256("lcm-rollout|REPO|TAG|DEVICE_ID") (DEVICE_ID: the MAC's hex)."""
    h = hashlib.sha256(("lcm-rollout|" + repo + "|" + tag + "|" + device_id).encode()).digest()
    return struct.unpack(">I", h[:4])[0] % 100


def takes_part(r, device_id):
    """Rule R6."""
    return not r.halted and bucket(device_id, r.repo, r.tag) < r.share


def pack_body(r):
    if not 0 <= r.share <= 100:
        raise FormatError("share must be 0..100 percent")
    check_repo(r.repo)
    return (
        MAGIC
        + bytes([VERSION, HALTED if r.halted else 0])
        + pack_text(r.repo, "repo", 201)
        + pack_text(r.tag, "tag", 64)
        + struct.pack(">IIB", r.manifest_seq, r.seq, r.share)
    )


def parse_rollout(data):
    """Rule R1: the document's fields; the signature is not checked here."""
    if len(data) > MAX_ROLLOUT_SIZE:
        raise FormatError("roll-out document larger than " + str(MAX_ROLLOUT_SIZE) + " bytes")
    if len(data) <= _SIG:
        raise FormatError("roll-out document truncated")
    r = Reader(data, None, len(data) - _SIG)
    if bytes(r.take(4, "magic")) != MAGIC:
        raise FormatError("not a roll-out document (bad magic)")
    if r.uint(1, "version") != VERSION:
        raise FormatError("unknown roll-out document version")
    flags = r.uint(1, "flags")
    if flags & ~HALTED:
        raise FormatError("unknown roll-out flags")
    repo = r.text("repo", 201)
    tag = r.text("tag", 64)
    manifest_seq = r.uint(4, "manifest sequence")
    seq = r.uint(4, "roll-out sequence")
    share = r.uint(1, "share")
    r.end("roll-out document")
    if share > 100:
        raise FormatError("roll-out share over 100 %")
    return Rollout(repo, tag, manifest_seq, seq, share, bool(flags & HALTED))


def verify_rollout(data, sector, repo, tag, seen_seq=0, channel=None):
    """Rules R1-R3 and R5 against the repo's verified `sector`; R4 is the caller's.
    `channel`: the device's (or the release's), which the signer's scope must allow."""
    from cert_sector.p256 import verify_p256

    r = parse_rollout(data)
    if r.repo != repo or r.tag != tag:
        raise FormatError("roll-out document for " + r.repo + " " + r.tag + ", not " + tag)  # R2
    end = len(data) - _SIG
    key = sector.release_key(bytes(data[end : end + 8]))
    if key is None:
        raise SignatureError("roll-out document signed by an unknown key")  # R3
    if not verify_p256(key, hashlib.sha256(data[:end]).digest(), bytes(data[end + 8 :])):
        raise SignatureError("bad roll-out document signature")  # R3
    scope = sector.scope(bytes(data[end : end + 8])) if channel is not None else None
    if scope is not None and channel not in scope[0]:
        from cert_sector.errors import ScopeError

        # R3 with S8: a key that may not sign this channel's releases does not stage them.
        raise ScopeError("roll-out document signed by a key limited to " + ",".join(scope[0]))
    if r.seq < seen_seq:
        from cert_sector.errors import RollbackError

        raise RollbackError(
            "roll-out sequence " + str(r.seq) + " is below " + str(seen_seq) + " seen before"
        )  # R5
    return r
