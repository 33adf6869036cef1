"""Building, describing and checking cert sectors (the signing side of `cert_sector.sector`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cert_sector.errors import TrustError
from cert_sector.keys import key_id, key_id_hex
from publisher import sector_format as fmt
from publisher.errors import PublisherError
from publisher.release.preflight import KNOWN_BOARDS
from publisher.signing import Signer, is_signer_spec, load_public_key, open_signer
from publisher.timefmt import format_date

MAX_PEM_FILE = 256 * 1024


def read_sector(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(fmt.MAX_SECTOR_SIZE + 1)
    except OSError as exc:
        raise PublisherError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > fmt.MAX_SECTOR_SIZE:
        raise PublisherError(f"{path} is larger than a cert sector ({fmt.MAX_SECTOR_SIZE} bytes)")
    return data


def parse_sector_file(data: bytes, path: Path, min_signatures: int = 1) -> fmt.Sector:
    """`data`, read from file `path`, parsed (signatures not checked); an error names the
    file. `min_signatures=0` reads a sector still being signed."""
    try:
        return fmt.parse_sector(data, min_signatures=min_signatures)
    except TrustError as exc:
        raise PublisherError(f"{path}: {exc}") from None


def load_sector(path: Path, min_signatures: int = 1) -> fmt.Sector:
    """The sector in file `path`, parsed as `parse_sector_file` does."""
    return parse_sector_file(read_sector(path), path, min_signatures)


def load_ca_certificates(path: Path) -> list[bytes]:
    """DER certificates from a PEM file (one or several)."""
    try:
        data = path.read_bytes()[: MAX_PEM_FILE + 1]
    except OSError as exc:
        raise PublisherError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PEM_FILE:
        raise PublisherError(f"{path} is too large for a CA file")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PublisherError(f"{path} holds no PEM certificate ({exc})") from None
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def parse_date(text: str) -> int:
    """YYYY-MM-DD (midnight UTC) or an ISO date-time, as Unix seconds."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PublisherError(f"--expires: {text!r} is not a date (YYYY-MM-DD)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(when.timestamp())
    if not 0 < seconds < 2**32:  # the sector's expiry field: 32-bit Unix seconds
        raise PublisherError(
            f"--expires {text}: a sector expires by 2106-02-07 at the latest (32-bit time)"
        )
    return seconds


def _load_keys(
    specs: Sequence[str], passphrase_env: str | None
) -> tuple[list[bytes], list[Signer]]:
    """Public keys of `specs`, and signers for those that name a private key
    (a .pem file, `pkcs11:` or `exec:`; see publisher/signing.py)."""
    publics: list[bytes] = []
    signers: list[Signer] = []
    for spec in specs:
        if is_signer_spec(spec):
            signer = open_signer(spec, passphrase_env)
            signers.append(signer)
            publics.append(signer.public_key)
        else:
            publics.append(load_public_key(spec))
    return publics, signers


def parse_scope(
    text: str, release_specs: Sequence[str], releases: list[bytes]
) -> tuple[int, int, list[str]]:
    """`--scope KEY:CHANNELS[:BOARDS]` -> (release key index, channel bits, boards).

    KEY is a release key's id (as `lcm keys show` prints it) or the very text
    given to --release-key; CHANNELS and BOARDS are comma lists, empty = any.
    """
    key, _, rest = text.partition(":")
    channels_text, _, boards_text = rest.partition(":")
    ids = [key_id_hex(k) for k in releases]
    if key in ids:
        index = ids.index(key)
    elif key in release_specs:
        index = list(release_specs).index(key)
    else:
        raise PublisherError(
            f"--scope {text!r}: {key!r} is not a --release-key (give its key id or its file)"
        )
    channels = [c for c in channels_text.split(",") if c] or list(fmt.SCOPE_CHANNELS)
    for channel in channels:
        if channel not in fmt.SCOPE_CHANNELS:
            raise PublisherError(f"--scope {text!r}: channel must be stable or beta")
    bits = sum(1 << fmt.SCOPE_CHANNELS.index(c) for c in set(channels))
    boards = [b for b in boards_text.split(",") if b]
    if not boards and set(channels) == set(fmt.SCOPE_CHANNELS):
        raise PublisherError(
            f"--scope {text!r} limits nothing: give CHANNELS (stable, beta) or BOARDS"
        )
    return index, bits, boards


def unknown_scope_boards(sector: fmt.Sector) -> list[str]:
    """Warnings for scope boards no lcm device reports unless configured so (a typo makes
    a key that signs for no device; `release publish` refuses them without --new-board,
    rule P1)."""
    return [
        f"--scope limits key {key_id_hex(key)} to board {board!r}, which no lcm device "
        f"reports ({', '.join(KNOWN_BOARDS)}) unless configured so: check the name"
        for key in sector.release_keys
        if (scope := sector.scope(key_id(key))) is not None
        for board in scope[1]
        if board not in KNOWN_BOARDS
    ]


def build_sector(
    *,
    repo: str,
    root_keys: Sequence[str],
    release_keys: Sequence[str],
    threshold: int = 1,
    ca_files: Sequence[Path] = (),
    seq: int | None = None,
    expires: str | None = None,
    previous: Path | None = None,
    old_root_keys: Sequence[str] = (),
    passphrase_env: str | None = None,
    unsigned: bool = False,
    scopes: Sequence[str] = (),
    epoch: int | None = None,
    first_seq: int | None = None,
) -> tuple[bytes, fmt.Sector]:
    """Build and sign a sector, and check it verifies before returning its bytes.

    Roots given as private keys sign; roots given as .pub are listed only (an
    offline backup root). With `previous`, the sequence defaults to the old one
    plus one and the old roots' threshold must be met too (rotation rule).
    `unsigned` returns the body with no signature, for the root ceremony
    (publisher/ceremony.py): no key signs, the roots may all be .pub files.
    The epoch (rule S9, docs/formats.md "Epochs") stays the previous sector's
    unless `epoch` raises it, which needs `first_seq`: the first manifest
    sequence of the new epoch, above every genuine release's.
    """
    signers: list[Signer] = []
    if unsigned:
        roots = [load_public_key(k, passphrase_env) for k in root_keys]
    else:
        roots, signers = _load_keys(root_keys, passphrase_env)
    releases = [load_public_key(p, passphrase_env) for p in release_keys]
    if not release_keys:
        raise PublisherError("a sector needs at least one --release-key")
    old: fmt.Sector | None = None
    if previous is not None:
        old = load_sector(previous)
        if old.repo != repo:
            raise PublisherError(f"--previous is a sector for {old.repo}, not {repo}")
        if not unsigned:
            _, old_signers = _load_keys(old_root_keys, passphrase_env)
            for signer in old_signers:
                # As `certs sign` checks it: a signature that counts for nothing is a slip.
                if signer.public_key not in old.roots:
                    raise PublisherError(
                        f"--old-root-key {key_id_hex(signer.public_key)} is not a root of "
                        f"--previous (sequence {old.seq}): its signature would count for "
                        "nothing"
                    )
            signers += [s for s in old_signers if s.public_key not in roots]
    elif old_root_keys:
        raise PublisherError("--old-root-key signs for --previous: give the sector it replaces")
    if seq is None:
        seq = old.seq + 1 if old else 1
    expiry = parse_date(expires) if expires else 0
    if expiry and expiry <= time.time():
        raise PublisherError(
            f"--expires {format_date(expiry)} is in the past: devices that know the time "
            "would refuse the sector; give a later date (or none)"
        )
    cas = [der for path in ca_files for der in load_ca_certificates(path)]
    epoch, first_seq = _epoch(old, epoch, first_seq)
    limits = {}
    for text in scopes:
        index, bits, boards = parse_scope(text, release_keys, releases)
        if index in limits:
            raise PublisherError(f"--scope {text!r}: that key already has a --scope")
        limits[index] = (bits, boards)
    new = fmt.Sector(
        repo,
        seq,
        expiry,
        threshold,
        roots,
        releases,
        cas,
        scopes=limits,
        epoch=epoch,
        first_seq=first_seq,
    )
    try:
        body = fmt.pack_body(new)
        if unsigned:
            if old is not None and seq <= old.seq:
                raise PublisherError(
                    f"--seq {seq} is not above the previous sector's sequence {old.seq}"
                )
            data = fmt.pack_sector(body, [], min_signatures=0)
            return data, fmt.parse_sector(data, min_signatures=0)
        if not signers:
            raise PublisherError(
                "no root key to sign with: at least one --root-key must be a private key "
                "(a .pem, pkcs11:URI or exec:CMD); or build it --unsigned for the root "
                "holders to sign (lcm certs sign, lcm certs combine)"
            )
        data = fmt.pack_sector(body, [(s.key_id, s.sign(body)) for s in signers])
        trusted = old if old is not None else fmt.PinnedRoots(repo, roots, threshold)
        verified = fmt.verify_sector(data, trusted)
    except TrustError as exc:
        hint = " (pass the old roots' keys with --old-root-key)" if old else ""
        raise PublisherError(f"the sector would not verify: {exc}{hint}") from None
    return data, verified


def _epoch(old: fmt.Sector | None, epoch: int | None, first_seq: int | None) -> tuple[int, int]:
    """(epoch, first sequence) of a new sector: the previous one's unless raised."""
    old_epoch, old_first = (old.epoch, old.first_seq) if old is not None else (0, 0)
    if epoch is None or epoch == old_epoch:
        if first_seq is not None and first_seq != old_first:
            raise PublisherError("--first-seq starts a new epoch: pass --epoch above the old one")
        return old_epoch, old_first
    if epoch < old_epoch:
        raise PublisherError(f"--epoch {epoch} is below the previous sector's epoch {old_epoch}")
    if first_seq is None:
        raise PublisherError(
            "--epoch needs --first-seq: the first release sequence of the new epoch, "
            "above every genuine release's (see docs/formats.md, Epochs)"
        )
    return epoch, first_seq


def describe(sector: fmt.Sector) -> dict[str, Any]:
    """A JSON-able description of a parsed sector."""
    cas = []
    for der in sector.cas:
        try:
            cert = x509.load_der_x509_certificate(der)
            cas.append(
                {
                    "subject": cert.subject.rfc4514_string(),
                    "not_after": cert.not_valid_after_utc.isoformat(),
                    "bytes": len(der),
                }
            )
        except ValueError:
            cas.append({"subject": "(unparseable certificate)", "bytes": len(der)})
    expires = format_date(sector.expires) if sector.expires else None
    return {
        # What root holders compare out of band before signing (the body is what they sign).
        "body_sha256": hashlib.sha256(sector.body).hexdigest(),
        "repo": sector.repo,
        "sequence": sector.seq,
        "epoch": sector.epoch,
        "first_seq": sector.first_seq,
        "expires": expires,
        "threshold": sector.threshold,
        "roots": [key_id_hex(k) for k in sector.roots],
        "release_keys": [key_id_hex(k) for k in sector.release_keys],
        "scopes": {
            key_id_hex(k): {"channels": scope[0], "boards": scope[1]}
            for k in sector.release_keys
            if (scope := sector.scope(key_id(k))) is not None
        },
        "cas": cas,
        "signatures": [kid.hex() for kid, _ in sector.signatures],
        "size": len(sector.body) + 1 + 72 * len(sector.signatures),
    }


def summary_lines(info: dict[str, Any]) -> list[str]:
    """`describe`'s result as the lines `lcm certs show` and `lcm certs sign` print."""
    lines = [
        f"repo        {info['repo']}",
        f"sequence    {info['sequence']}",
        f"epoch       {info['epoch']} (releases from sequence {info['first_seq']})",
        f"expires     {info['expires'] or 'never'}",
        f"roots       {info['threshold']} of {', '.join(info['roots'])}",
    ]
    for kid in info["release_keys"]:
        scope = info["scopes"].get(kid)
        limit = "any channel, any board"
        if scope is not None:
            boards = "board " + ",".join(scope["boards"]) if scope["boards"] else "any board"
            limit = f"channel {','.join(scope['channels'])}, {boards}"
        lines.append(f"release     {kid} ({limit})")
    for ca_info in info["cas"]:
        lines.append(f"CA          {ca_info['subject']} (until {ca_info.get('not_after', '?')})")
    lines.append(f"body        SHA-256 {info['body_sha256']}")
    lines.append(f"signed by   {', '.join(info['signatures']) or 'nobody yet'}")
    return lines
