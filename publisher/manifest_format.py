"""The release manifest on the publisher's side: building one, and reading one held in memory.

cert_sector.manifest is what a device imports: streaming a manifest from flash
and the trust rules M1-M7. Building a manifest (`pack_body`, `pack_manifest`)
and parsing or verifying one held in memory (`parse_manifest`,
`verify_manifest`) only the publisher and the tests do; they live here, so that
a board does not keep them in RAM. The format (docs/formats.md) and every rule
are cert_sector.manifest's: this module re-exports its names, so
`from publisher import manifest_format as mf` is the whole format in one place.
"""

import hashlib
import io
import struct

from cert_sector.encoding import check_repo, pack_text
from cert_sector.errors import FormatError
from cert_sector.keys import KEY_ID_SIZE, SIGNATURE_SIZE
from cert_sector.manifest import (
    CHANNELS,
    FORMAT_VERSION,
    KINDS,
    MAGIC,
    MAX_BOARDS,
    MAX_FILE_SIZE,
    MAX_FILES,
    MAX_MANIFEST_SIZE,
    MAX_NAME,
    MAX_PATH,
    SIGNATURE_BLOCK,
    FileEntry,
    Manifest,
    ManifestReader,
    check_header,
    check_path,
    check_scope,
    check_signature,
    manifest_order,
)
from cert_sector.semver import parse_version

__all__ = [
    "CHANNELS",
    "KINDS",
    "MAX_BOARDS",
    "MAX_FILES",
    "MAX_FILE_SIZE",
    "MAX_MANIFEST_SIZE",
    "MAX_PATH",
    "SIGNATURE_BLOCK",
    "FileEntry",
    "Manifest",
    "ManifestReader",
    "check_header",
    "check_path",
    "check_scope",
    "check_signature",
    "manifest_order",
    "pack_body",
    "pack_manifest",
    "parse_manifest",
    "split_signature",
    "verify_manifest",
]


def pack_body(m):
    """The signed body of manifest `m` (files in any order; they are sorted and tiled here)."""
    check_repo(m.repo)
    parse_version(m.version)
    if m.min_manager:
        parse_version(m.min_manager)
    if m.kind not in KINDS or m.channel not in CHANNELS:
        raise FormatError("kind must be files|firmware and channel stable|beta")
    if not 0 <= m.seq <= 0xFFFFFFFF:
        raise FormatError("sequence must fit in 32 bits")
    if len(m.boards) > MAX_BOARDS or not 1 <= len(m.files) <= MAX_FILES:
        raise FormatError("1.." + str(MAX_FILES) + " files and at most 8 boards")
    parts = [
        MAGIC,
        bytes([FORMAT_VERSION, KINDS.index(m.kind), CHANNELS.index(m.channel), 0]),
        struct.pack(">II", m.seq, m.created),
        pack_text(m.repo, "repo", MAX_NAME * 2),
        pack_text(m.version, "version", MAX_NAME),
        pack_text(m.min_manager, "minimum manager version", MAX_NAME),
        bytes([len(m.boards)]),
    ]
    for board in m.boards:
        parts.append(pack_text(board, "board", 32))
    parts.append(pack_text(m.pack_name, "pack name", MAX_NAME))
    parts.append(struct.pack(">I", m.pack_size) + m.pack_sha256)
    parts.append(struct.pack(">H", len(m.files)))
    offset = 0
    previous = b""
    for f in sorted(m.files, key=lambda f: f.path.encode("utf-8")):
        raw = check_path(f.path).encode("utf-8")
        if raw == previous:
            raise FormatError("duplicate path " + repr(f.path))
        previous = raw
        if f.offset != offset or not 0 <= f.size <= MAX_FILE_SIZE or len(f.sha256) != 32:
            raise FormatError("file " + repr(f.path) + " does not tile the pack")
        parts.append(pack_text(f.path, "path", MAX_PATH))
        parts.append(struct.pack(">II", f.size, f.offset) + f.sha256)
        offset += f.size
    if offset != m.pack_size:
        raise FormatError(
            "files cover " + str(offset) + " bytes of a " + str(m.pack_size) + "-byte pack"
        )
    return b"".join(parts)


def pack_manifest(body, kid, signature):
    """The bytes of the manifest asset: body, then the release key id and r‖s."""
    if len(kid) != KEY_ID_SIZE or len(signature) != SIGNATURE_SIZE:
        raise FormatError("a signature is an 8-byte key id and 64 bytes r‖s")
    return body + kid + signature


def split_signature(data):
    """(body, key id, r‖s) of manifest bytes; checks only the sizes."""
    if len(data) > MAX_MANIFEST_SIZE:
        raise FormatError("manifest larger than " + str(MAX_MANIFEST_SIZE) + " bytes")
    if len(data) <= SIGNATURE_BLOCK:
        raise FormatError("manifest truncated")
    end = len(data) - SIGNATURE_BLOCK
    return data[:end], bytes(data[end : end + KEY_ID_SIZE]), bytes(data[end + KEY_ID_SIZE :])


def parse_manifest(data):
    """Parse manifest bytes fully (CPython side and tests): Manifest with `files`. M1-M3."""
    body, kid, signature = split_signature(data)
    reader = ManifestReader(io.BytesIO(body), len(body))
    m = reader.header()
    m.files = list(reader.files())
    m.key_id = kid
    m.signature = signature
    return m


def verify_manifest(
    data, sector, repo, installed_seq=-1, board=None, channel="stable", manager_version=""
):
    """Apply M1-M6 to manifest bytes held in memory; returns the Manifest."""
    body, kid, signature = split_signature(data)
    check_signature(hashlib.sha256(body).digest(), sector.release_key(kid), signature)
    m = parse_manifest(data)
    check_scope(kid, sector.scope(kid), m.channel, m.boards)
    check_header(m, repo, installed_seq, board, channel, manager_version)
    return m
