"""The release manifest: what one release contains, signed by a release key.

Trust rules (each check below names the rule it enforces):

  M1  It parses: magic, version, lengths inside the buffer, no trailing bytes,
      at most MAX_FILES files and MAX_MANIFEST_SIZE bytes.
  M2  Every path is relative, normalised and bounded: no "/" at either end,
      no "", "." or ".." component, no backslash, no control character, at
      most MAX_PATH bytes. Paths are strictly ascending (so no duplicates,
      checked in constant memory while streaming).
  M3  Files tile the pack: each offset is the end of the previous file, and
      the last one ends at the pack's size.
  M4  The signature is by a release key listed in the repo's verified cert
      sector, over the SHA-256 of the body.
  M5  It is for the expected repo (no mix-and-match), board and channel, and
      the running manager is recent enough.
  M6  Its sequence is strictly above the installed one (no roll-back, replay
      or freeze on an old release).
  M7  Its signer's scope in the sector, if the key has one, allows its
      channel, and every board it targets (a key limited to boards may not
      sign a release for any board).

Layout (big-endian; see docs/formats.md):

  "LCMM" | u8 version | u8 kind | u8 channel | u8 flags(0) | u32 seq | u32 created
  | str8 repo | str8 version | str8 min_manager | u8 n_boards | n x str8 board
  | str8 pack name | u32 pack size | 32 pack sha256 | u16 n_files
  | n_files x (str8 path | u32 size | u32 offset | 32 sha256)
  ... end of signed body ... | 8 key id | 64 r‖s

The device never holds the file list: it streams records from flash with
`ManifestReader.files()`. Building a manifest and reading one held in memory
(the publisher's side) are in publisher/manifest_format.py: a board does not
keep them in RAM.
"""

from cert_sector.assets import (  # noqa: F401 (re-exported: the cap, the trailer's size)
    MAX_MANIFEST_SIZE,
    SIGNATURE_BLOCK,
)
from cert_sector.encoding import Reader, check_repo
from cert_sector.errors import (
    FormatError,
    MismatchError,
    RollbackError,
    ScopeError,
    SignatureError,
)
from cert_sector.semver import parse_version, version_at_least

MAGIC = b"LCMM"
FORMAT_VERSION = 1
KINDS = ("files", "firmware")
CHANNELS = ("stable", "beta")
MAX_FILES = 512
MAX_PATH = 128
MAX_NAME = 64
MAX_BOARDS = 8
MAX_FILE_SIZE = 16 * 1024 * 1024


class FileEntry:
    # No __slots__: MicroPython ignores it, and on a board it is one more tuple in RAM.

    def __init__(self, path, size, offset, sha256):
        self.path = path
        self.size = size
        self.offset = offset
        self.sha256 = sha256


class Manifest:
    """Header fields of a manifest; `files` only on the publisher's side (given when
    building one, filled by publisher/manifest_format.py's `parse_manifest`). No
    argument has a default: on a board a default costs RAM.

    Fields at their usual value are class attributes, set on an instance only when
    they differ: a files/stable manifest for any board read on a device then has 9
    instance attributes, whose dict is one block of 10 slots (160 bytes on a 64-bit
    port) instead of 17 (272 bytes, for 16 attributes), made in the update's busiest
    heap.
    """

    kind = "files"
    channel = "stable"
    # An empty tuple stands for the empty list (read, never appended to): no list made.
    boards: "list[str]" = ()  # type: ignore[assignment]
    min_manager = ""
    files: "list[FileEntry]" = ()  # type: ignore[assignment]
    key_id = b""
    signature = b""

    def __init__(
        self,
        repo,
        version,
        seq,
        kind,
        channel,
        boards,
        min_manager,
        pack_name,
        pack_size,
        pack_sha256,
        created,
        files,  # a list of FileEntry, or None (a device streams them instead)
    ):
        self.repo = repo
        self.version = version
        self.seq = seq
        if kind != "files":
            self.kind = kind
        if channel != "stable":
            self.channel = channel
        if boards:
            self.boards = list(boards)
        if min_manager:
            self.min_manager = min_manager
        self.pack_name = pack_name
        self.pack_size = pack_size
        self.pack_sha256 = pack_sha256
        self.created = created
        if files is not None:
            self.files = files
        self.file_count = len(self.files)
        # Where it stands among the repo's releases (rule S9 in cert_sector/sector.py):
        # epoch x 2**32 + seq, set by the device from the sector that verified it.
        self.order = seq


def check_path(path):
    """Rule M2 for one path; returns it."""
    raw = path.encode("utf-8")
    if not raw or len(raw) > MAX_PATH:
        raise FormatError("path length must be 1..%s: %r" % (MAX_PATH, path))
    if "\\" in path:
        raise FormatError("backslash in path " + repr(path))
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise FormatError("path is not relative and normalised: " + repr(path))
    return path


class ManifestReader:
    """Streams a manifest's fields from `stream` (has .read(n)) holding `body_size` bytes
    of body.

    `header()` reads and checks everything before the file records; then
    `files()` yields each FileEntry, checking M2/M3 as it goes, and finally
    that nothing trails the last record (M1).
    """

    def __init__(self, stream, body_size):
        self._r = Reader(None, stream, body_size)
        self.manifest = None

    def header(self):
        r = self._r
        if bytes(r.take(4, "magic")) != MAGIC:  # Rule M1
            raise FormatError("not a manifest (bad magic)")
        version, kind, channel, flags = r.take(4, "format")
        if version != FORMAT_VERSION:
            raise FormatError("unsupported manifest format version " + str(version))
        if kind >= len(KINDS) or channel >= len(CHANNELS) or flags != 0:
            raise FormatError("unknown manifest kind, channel or flags")
        seq = r.uint(4, "sequence")
        created = r.uint(4, "created")
        repo = r.text("repo", MAX_NAME * 2)
        check_repo(repo)
        tag_version = r.text("version", MAX_NAME)
        parse_version(tag_version)
        min_manager = r.text("minimum manager version", MAX_NAME)
        if min_manager:
            parse_version(min_manager)
        n_boards = r.uint(1, "board count")
        if n_boards > MAX_BOARDS:
            raise FormatError("more than %s boards" % (MAX_BOARDS,))
        boards = [r.text("board", 32) for _ in range(n_boards)]
        pack_name = r.text("pack name", MAX_NAME)
        pack_size = r.uint(4, "pack size")
        pack_sha = bytes(r.take(32, "pack sha256"))
        n_files = r.uint(2, "file count")
        if not 1 <= n_files <= MAX_FILES:  # Rule M1
            raise FormatError("file count %s outside 1..%s" % (n_files, MAX_FILES))
        m = Manifest(
            repo,
            tag_version,
            seq,
            KINDS[kind],
            CHANNELS[channel],
            boards,
            min_manager,
            pack_name,
            pack_size,
            pack_sha,
            created,
            None,
        )
        m.file_count = n_files
        self.manifest = m
        return m

    def files(self):
        m = self.manifest
        if m is None:
            raise RuntimeError("header() first")
        r = self._r
        offset = 0
        previous = b""
        for _ in range(m.file_count):
            path = check_path(r.text("path", MAX_PATH))  # Rule M2
            raw = path.encode("utf-8")
            if raw <= previous:
                raise FormatError("paths not strictly ascending at " + repr(path))
            previous = raw
            size = r.uint(4, "file size")
            file_offset = r.uint(4, "file offset")
            sha = bytes(r.take(32, "file sha256"))
            if file_offset != offset or size > MAX_FILE_SIZE:  # Rule M3
                raise FormatError("file %r does not tile the pack" % (path,))
            offset += size
            yield FileEntry(path, size, file_offset, sha)
        if offset != m.pack_size:  # Rule M3
            raise FormatError("files do not cover the pack")
        r.end("file records")  # Rule M1


def check_signature(digest, key, signature):
    """Rule M4: signed by `key`, the release key of the verified sector whose id the
    trailer names (Sector.release_key; None: the sector lists no such key). The caller
    looks it up, so that the sector need not be loaded with the manifest's checks."""
    from cert_sector.p256 import verify_p256

    if key is None:
        raise SignatureError("manifest signed by an unknown key")
    if not verify_p256(key, digest, signature):
        raise SignatureError("bad manifest signature")


def check_scope(kid, scope, channel, boards):
    """Rule M7: a release key signs only within its scope (checked before signing too).
    `scope` is the sector's for the signer `kid` (Sector.scope): (channels, boards), or
    None when the key is unlimited."""
    if scope is None:
        return
    channels, allowed = scope
    outside = None
    if channel not in channels:
        outside = "a %s release" % (channel,)
    elif allowed and not boards:
        outside = "a release for any board"
    elif allowed:
        for board in boards:
            if board not in allowed:
                outside = "board " + board
                break
    if outside is not None:
        from binascii import hexlify

        raise ScopeError(
            "release key %s is limited to channel %s%s: %s is outside it"
            % (
                hexlify(kid).decode(),
                ",".join(channels),
                " and board " + ",".join(allowed) if allowed else " and any board",
                outside,
            )
        )


def manifest_order(epoch, first_seq, seq):
    """Rule S9 (cert_sector/sector.py): where a manifest of sequence `seq`, verified by a
    sector of `epoch` whose epoch starts at `first_seq`, stands among all the repo's
    releases: epoch x 2**32 + seq (what a device records), or None when the sequence is
    below the epoch's first sequence (a release of an earlier epoch)."""
    if seq < first_seq:
        return None
    return (epoch << 32) + seq


def check_header(m, repo, installed_seq, board, channel, manager_version):
    """Rules M5 and M6 for a parsed header (`board` None: any; `manager_version` "": not
    checked)."""
    if m.repo != repo:
        raise MismatchError("manifest is for %s, expected %s" % (m.repo, repo))
    if board is not None and m.boards and board not in m.boards:
        raise MismatchError("release is for %s, not %s" % (",".join(m.boards), board))
    if channel == "stable" and m.channel != "stable":
        raise MismatchError("beta release offered to a stable device")
    if manager_version and not version_at_least(manager_version, m.min_manager):
        raise MismatchError("release needs manager %s or newer" % (m.min_manager,))
    if m.seq <= installed_seq:
        raise RollbackError(
            "manifest sequence %s is not above the installed %s" % (m.seq, installed_seq)
        )
