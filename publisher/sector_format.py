"""The cert sector on the publisher's side: building one, and reading one held in memory.

cert_sector.sector is what a device imports: reading a sector from flash and the
trust rules S1-S9. Building a sector (`pack_body`, `pack_sector`) and parsing or
verifying one held in memory (`parse_sector`, `verify_sector`) only the
publisher and the tests do; they live here, so that a board does not keep them
in RAM (every function is an object there, docs/device.md, "Memory"). The
format (docs/formats.md) and every rule are cert_sector.sector's: this module
re-exports its names, so `from publisher import sector_format as sf` is the
whole format in one place.
"""

import hashlib
import struct

from cert_sector.encoding import Reader, check_repo, pack_text
from cert_sector.errors import FormatError
from cert_sector.keys import KEY_ID_SIZE, SIGNATURE_SIZE, check_public_key, key_id
from cert_sector.sector import (
    FLAG_EPOCH,
    FLAG_SCOPES,
    FORMAT_VERSION,
    MAGIC,
    MAX_BOARD_NAME,
    MAX_CAS,
    MAX_KEYS,
    MAX_REPO_LEN,
    MAX_SECTOR_SIZE,
    MAX_SIGNATURES,
    SCOPE_CHANNELS,
    PinnedRoots,
    Sector,
    check_expiry,
    check_key_scope,
    check_sector,
    check_unique,
    parse_fields,
    read_sector_file,
)

__all__ = [
    "FLAG_EPOCH",
    "FLAG_SCOPES",
    "MAX_SECTOR_SIZE",
    "SCOPE_CHANNELS",
    "PinnedRoots",
    "Sector",
    "check_expiry",
    "check_sector",
    "key_id",
    "pack_body",
    "pack_sector",
    "parse_sector",
    "read_sector_file",
    "verify_sector",
]


def pack_body(sector):
    """The signed body of `sector` (S1/S2 checked, so a bad sector cannot be produced)."""
    check_repo(sector.repo)
    if not 0 <= sector.seq <= 0xFFFFFFFF or not 0 <= sector.expires <= 0xFFFFFFFF:
        raise FormatError("sequence and expiry must fit in 32 bits")
    if not 1 <= sector.threshold <= len(sector.roots):
        raise FormatError("threshold must be between 1 and the number of roots")
    if len(sector.roots) > MAX_KEYS or len(sector.release_keys) > MAX_KEYS:
        raise FormatError("at most " + str(MAX_KEYS) + " root and release keys")
    if len(sector.cas) > MAX_CAS:
        raise FormatError("at most " + str(MAX_CAS) + " CA certificates")
    check_unique(sector.roots, "root key")
    check_unique(sector.release_keys, "release key")
    parts = [
        MAGIC,
        bytes(
            [
                FORMAT_VERSION,
                (FLAG_SCOPES if sector.scopes else 0) | (FLAG_EPOCH if sector.epoch else 0),
            ]
        ),
        pack_text(sector.repo, "repo", MAX_REPO_LEN),
        struct.pack(">IIBB", sector.seq, sector.expires, sector.threshold, len(sector.roots)),
    ]
    for key in sector.roots:
        parts.append(check_public_key(key, "root key"))
    parts.append(bytes([len(sector.release_keys)]))
    for key in sector.release_keys:
        parts.append(check_public_key(key, "release key"))
    parts.append(bytes([len(sector.cas)]))
    for der in sector.cas:
        if not 0 < len(der) <= 0xFFFF:
            raise FormatError("CA certificate of " + str(len(der)) + " bytes")
        parts.append(struct.pack(">H", len(der)) + der)
    if sector.scopes:
        parts.append(bytes([len(sector.scopes)]))
        for index in sorted(sector.scopes):
            bits, boards = sector.scopes[index]
            check_key_scope(index, bits, len(boards), len(sector.release_keys))
            parts.append(bytes([index, bits, len(boards)]))
            check_unique([b.encode() for b in boards], "scope board")
            for board in boards:
                parts.append(pack_text(board, "board", MAX_BOARD_NAME))
    if sector.epoch:
        if not 0 < sector.epoch <= 0xFFFFFFFF or not 0 <= sector.first_seq <= 0xFFFFFFFF:
            raise FormatError("epoch and first sequence must fit in 32 bits")
        parts.append(struct.pack(">II", sector.epoch, sector.first_seq))
    return b"".join(parts)


def pack_sector(body, signatures, min_signatures=1):
    """Body plus signatures [(key id, r‖s)]: the bytes of `certs.sector`.

    `min_signatures=0` packs a sector still being signed (the publisher's root
    ceremony); a device never accepts one (parse_sector's default is 1)."""
    if not min_signatures <= len(signatures) <= MAX_SIGNATURES:
        raise FormatError("a sector needs 1 to " + str(MAX_SIGNATURES) + " signatures")
    check_unique([kid for kid, _ in signatures], "signature key id")
    parts = [body, bytes([len(signatures)])]
    for kid, sig in signatures:
        if len(kid) != KEY_ID_SIZE or len(sig) != SIGNATURE_SIZE:
            raise FormatError("a signature is an 8-byte key id and 64 bytes r‖s")
        parts.append(kid + sig)
    data = b"".join(parts)
    if len(data) > MAX_SECTOR_SIZE:
        raise FormatError(
            "sector is " + str(len(data)) + " bytes, more than " + str(MAX_SECTOR_SIZE)
        )
    return data


def parse_sector(data, min_signatures=1):
    """Parse (S1, S2) without checking signatures. Raises FormatError.

    `min_signatures=0` reads a sector still being signed (publisher side only)."""
    if len(data) > MAX_SECTOR_SIZE:  # Rule S1
        raise FormatError("sector larger than " + str(MAX_SECTOR_SIZE) + " bytes")
    sector, body_end = parse_fields(Reader(data, None, len(data)), min_signatures, None)
    sector.body = bytes(data[:body_end])
    return sector


def verify_sector(data, trusted, now=None):
    """Parse `data` and apply S1-S7 against `trusted` (a Sector or PinnedRoots).

    `now` is the Unix time when the device knows it, else None. Returns the
    verified Sector; raises a TrustError subclass naming the failed rule.
    """
    sector = parse_sector(data)
    return check_sector(sector, hashlib.sha256(sector.body).digest(), trusted, now)
