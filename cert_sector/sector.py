"""The cert sector: a repo's trust store, signed by its root keys.

Trust rules (each check below names the rule it enforces):

  S1  The sector parses: magic, format version, every length inside the
      buffer, no trailing bytes, at most MAX_SECTOR_SIZE (one flash sector).
  S2  1 <= threshold <= number of roots; no duplicate root, release key or
      signature key id; every key is a valid P-256 point.
  S3  It belongs to the repo the device expects.
  S4  At least `threshold` distinct roots of the sector it replaces (or of
      the pinned roots, for the first one) signed its body.
  S5  At least its own `threshold` distinct roots signed it too, so a new
      root set has accepted its role (TUF's rule for root rotation).
  S6  Its sequence is strictly higher than the trusted one (no roll-back,
      no replay).
  S7  It has not expired, when the device knows the time.
  S8  Key scopes (when flags has FLAG_SCOPES) name existing release keys in
      ascending order, each with a non-empty set of known channels and at
      most MAX_BOARDS boards; a manifest's signer must be within its scope
      (rule M7, cert_sector/manifest.py).
  S9  Its epoch (when flags has FLAG_EPOCH, else 0) is not below the trusted
      one. Manifests are ordered by (epoch of the sector that verifies them,
      sequence), and in an epoch only sequences from its `first_seq` count
      (manifest_order, cert_sector/manifest.py):
      a root-signed sector with a higher epoch undoes a fast-forward by a
      stolen release key (docs/formats.md, "Epochs").

Layout (big-endian; see docs/formats.md):

  "LCMS" | u8 version | u8 flags(0) | str8 repo | u32 seq | u32 expires
  | u8 threshold | u8 n_roots | n_roots x 65 | u8 n_release | n_release x 65
  | u8 n_cas | n_cas x (u16 len | DER)
  [flags & FLAG_SCOPES: u8 n_scopes | n_scopes x (u8 release key index
   | u8 channel bits | u8 n_boards | n_boards x str8 board)]
  [flags & FLAG_EPOCH: u32 epoch | u32 first_seq]
  ... end of signed body ...
  | u8 n_sigs | n_sigs x (8 key id | 64 r‖s)

A device reads a sector from flash (read_sector_file) and checks it
(check_sector). Building one and reading one held in memory (the publisher's
side) are in publisher/sector_format.py: a board does not keep them in RAM.
"""

import hashlib

from cert_sector.encoding import Reader, check_repo
from cert_sector.errors import (
    ExpiredError,
    FormatError,
    MismatchError,
    RollbackError,
    SignatureError,
)
from cert_sector.keys import (
    KEY_ID_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    check_public_key,
    key_id,
    valid_signers,
)

MAGIC = b"LCMS"
FORMAT_VERSION = 1
MAX_SECTOR_SIZE = 4096
MAX_REPO_LEN = 100
MAX_KEYS = 8
MAX_CAS = 8
MAX_SIGNATURES = 16
# Flags: bit 0 says key scopes follow the CA list. A device that predates a flag
# refuses the sector (unknown flags), never ignores a limit it cannot read.
FLAG_SCOPES = 1
# Bit 1: an epoch and its first sequence follow (after the scopes, if any).
FLAG_EPOCH = 2
# A scope's channel bits: bit i allows SCOPE_CHANNELS[i] (the manifest's channel codes).
SCOPE_CHANNELS = ("stable", "beta")
MAX_BOARD_NAME = 32


class PinnedRoots:
    """What a device trusts before it has any sector: root keys pinned at build or provisioning."""

    # Any first sector (sequence 0 or more) is newer than nothing; class attributes,
    # so that an instance's dict holds only what differs (see Sector).
    seq = -1
    epoch = 0

    def __init__(self, repo, roots, threshold=1):
        self.repo = check_repo(repo)
        self.roots = list(roots)
        self.threshold = threshold
        if not 1 <= threshold <= len(self.roots):
            raise FormatError("threshold must be between 1 and the number of pinned roots")


class Sector:
    """A parsed cert sector. `body` is the signed part; `cas` are DER certificates, or
    (offset, length) in the file when read with read_sector_file (then `body` is empty
    and `digest` is the body's SHA-256).

    Fields at their usual value are class attributes, set on an instance only when
    they differ: a sector read on a device (no scopes, epoch 0) has 9 instance
    attributes, whose dict is one block of 10 slots (160 bytes on a 64-bit port)
    instead of 17 (272 bytes, for 14 attributes), made at the update's peak: it was
    the allocation that failed first in a small heap.
    """

    # Release key index -> (channel bits, [boards]); a key absent here may sign anything.
    scopes = ()
    # Rule S9: manifests verified by this sector are ordered after every earlier
    # epoch's, from sequence first_seq on (docs/formats.md, "Epochs").
    epoch = 0
    first_seq = 0
    body = b""
    digest = None  # SHA-256 of the body, when read from a file

    def __init__(
        self,
        repo,
        seq,
        expires,
        threshold,
        roots,
        release_keys,
        cas,
        signatures=(),
        scopes=None,
        epoch=0,
        first_seq=0,
    ):
        self.repo = repo
        self.seq = seq
        self.expires = expires
        self.threshold = threshold
        self.roots = list(roots)
        self.release_keys = list(release_keys)
        self.cas = list(cas)
        self.signatures = list(signatures)
        if scopes:
            self.scopes = dict(scopes)
        if epoch:
            self.epoch = epoch
        if first_seq:
            self.first_seq = first_seq

    def release_key(self, kid):
        """The release key with id `kid`, or None."""
        for key in self.release_keys:
            if key_id(key) == kid:
                return key
        return None

    def scope(self, kid):
        """(channels, boards) the release key `kid` is limited to, or None: unlimited.
        An empty boards list means any board."""
        for i, key in enumerate(self.release_keys):
            if key_id(key) == kid and i in self.scopes:
                bits, boards = self.scopes[i]
                channels = [c for n, c in enumerate(SCOPE_CHANNELS) if bits & (1 << n)]
                return channels, boards
        return None


def check_unique(items, what):
    # Rule S2: duplicates would let one key count twice toward a threshold.
    seen = []
    for item in items:
        item = bytes(item)
        if item in seen:
            raise FormatError("duplicate " + what)
        seen.append(item)


def check_key_scope(index, bits, n_boards, n_keys):
    # Rule S8: a scope limits a listed key to known channels and a bounded board list.
    if index >= n_keys:
        raise FormatError("key scope for release key %s of %s" % (index, n_keys))
    if not 0 < bits < (1 << len(SCOPE_CHANNELS)):
        raise FormatError("key scope with no or unknown channels")
    if n_boards > MAX_KEYS:
        raise FormatError("key scope with more than %s boards" % (MAX_KEYS,))


def read_sector_file(f, size, buf):
    """Parse (S1, S2) a sector from the open file `f` of `size` bytes, field by field.

    For a device: nothing sector-sized is held. The body is hashed while it is
    read (`sector.digest`, what the signatures cover) and each CA certificate
    stays on flash: `sector.cas` lists (offset, length) in the file instead of
    bytes; `buf` (any size) is what they are read through.
    """
    if size > MAX_SECTOR_SIZE:  # Rule S1
        raise FormatError("sector larger than %s bytes" % (MAX_SECTOR_SIZE,))
    r = Reader(None, f, size)
    r.hasher = hashlib.sha256()
    return parse_fields(r, 1, buf)[0]


def parse_fields(r, min_signatures, buf):
    # (Sector, size of its body) from Reader `r`; with `buf`, CAs are skipped (left
    # where they are, as (offset, length)) and the body's digest is taken on the way.
    if bytes(r.take(4, "magic")) != MAGIC:
        raise FormatError("not a cert sector (bad magic)")
    version = r.uint(1, "format version")
    if version != FORMAT_VERSION:
        raise FormatError("unsupported cert sector format version " + str(version))
    flags = r.uint(1, "flags")
    if flags & ~(FLAG_SCOPES | FLAG_EPOCH):
        raise FormatError("unknown cert sector flags")
    repo = r.text("repo", MAX_REPO_LEN)
    try:
        check_repo(repo)
    except FormatError as exc:
        raise FormatError("sector " + str(exc)) from None
    seq = r.uint(4, "sequence")
    expires = r.uint(4, "expiry")
    threshold = r.uint(1, "threshold")
    roots = _keys(r, "root key")
    if not 1 <= threshold <= len(roots):  # Rule S2
        raise FormatError("threshold %s for %s root keys" % (threshold, len(roots)))
    release_keys = _keys(r, "release key")
    n_cas = r.uint(1, "CA count")
    if n_cas > MAX_CAS:
        raise FormatError("more than %s CA certificates" % (MAX_CAS,))
    cas = []
    for _ in range(n_cas):
        n = r.uint(2, "CA length")
        if n == 0:
            raise FormatError("empty CA certificate")
        if buf is None:
            cas.append(bytes(r.take(n, "CA certificate")))
        else:
            cas.append((r.pos, n))
            r.skip(n, "CA certificate", buf)
    scopes = None
    if flags & FLAG_SCOPES:
        n = r.uint(1, "key scope count")
        if not 1 <= n <= MAX_KEYS:  # Rule S8
            raise FormatError("key scope count " + str(n))
        scopes = {}
        previous = -1
        for _ in range(n):
            index, bits, n_boards = r.take(3, "key scope")
            if index <= previous:  # Rule S8: ascending, so no key has two scopes
                raise FormatError("key scopes not in ascending key order")
            previous = index
            check_key_scope(index, bits, n_boards, len(release_keys))
            boards = [r.text("board", MAX_BOARD_NAME) for _ in range(n_boards)]
            check_unique([b.encode() for b in boards], "scope board")
            scopes[index] = (bits, boards)
    epoch = first_seq = 0
    if flags & FLAG_EPOCH:
        epoch = r.uint(4, "epoch")
        first_seq = r.uint(4, "epoch's first sequence")
        if not epoch:
            raise FormatError("epoch flag with epoch 0")
    body_end = r.pos
    digest = None
    if r.hasher is not None:
        digest = r.hasher.digest()
        r.hasher = None
    n_sigs = r.uint(1, "signature count")
    if not min_signatures <= n_sigs <= MAX_SIGNATURES:
        raise FormatError("a sector needs 1 to %s signatures" % (MAX_SIGNATURES,))
    signatures = []
    for _ in range(n_sigs):
        kid = bytes(r.take(KEY_ID_SIZE, "signature key id"))
        signatures.append((kid, bytes(r.take(SIGNATURE_SIZE, "signature"))))
    r.end("signatures")
    check_unique([kid for kid, _ in signatures], "signature key id")
    sector = Sector(
        repo,
        seq,
        expires,
        threshold,
        roots,
        release_keys,
        cas,
        signatures,
        scopes,
        epoch,
        first_seq,
    )
    if digest is not None:
        sector.digest = digest
    return sector, body_end


def _keys(r, what):
    n = r.uint(1, what + " count")
    if n > MAX_KEYS:
        raise FormatError("more than %s %ss" % (MAX_KEYS, what))
    keys = [bytes(r.take(PUBLIC_KEY_SIZE, what)) for _ in range(n)]
    check_unique(keys, what)
    for key in keys:
        check_public_key(key, what)
    return keys


def check_sector(sector, digest, trusted, now):
    """S3-S7 for a parsed `sector` whose body has SHA-256 `digest` (from read_sector_file
    on a device); returns it, or raises a TrustError subclass naming the failed rule."""
    if sector.repo != trusted.repo:  # Rule S3
        raise MismatchError("sector is for %s, expected %s" % (sector.repo, trusted.repo))
    # Each root signs once for both rules: a verify takes seconds on a board, and the
    # trusted roots and the sector's own are mostly the same keys.
    keys = list(trusted.roots)
    for key in sector.roots:
        if key not in keys:
            keys.append(key)
    signers = valid_signers(digest, sector.signatures, keys)
    got = own = 0
    for key in signers:
        got += key in trusted.roots
        own += key in sector.roots
    if got < trusted.threshold:  # Rule S4
        raise SignatureError(
            "sector signed by %s of the trusted roots, %s required" % (got, trusted.threshold)
        )
    if own < sector.threshold:  # Rule S5
        raise SignatureError(
            "sector signed by %s of its own roots, %s required" % (own, sector.threshold)
        )
    if sector.seq <= trusted.seq:  # Rule S6
        raise RollbackError(
            "sector sequence %s is not above the trusted %s" % (sector.seq, trusted.seq)
        )
    if sector.epoch < trusted.epoch:  # Rule S9
        raise RollbackError(
            "sector epoch %s is below the trusted %s" % (sector.epoch, trusted.epoch)
        )
    check_expiry(sector, now)
    return sector


def check_expiry(sector, now):
    # Rule S7: an expired sector is refused only when the clock is known; a
    # device without time must still be able to fetch the sector that renews it.
    if now is not None and sector.expires and now >= sector.expires:
        raise ExpiredError("sector expired at %s (now %s)" % (sector.expires, now))
