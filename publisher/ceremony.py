"""The root ceremony: root holders co-sign a cert sector without bringing keys together.

  1. `lcm certs build --unsigned` writes the sector's body with no signature.
  2. Each holder, on their own machine, runs `lcm certs sign SECTOR --key K`
     (any signer kind): it shows the body's summary, then adds one signature.
  3. `lcm certs combine` merges the signatures of copies signed in parallel
     (or the holders pass one file along, signing it in turn).
  4. `lcm certs verify` says which roots signed and whether the thresholds of
     the new roots and of the roots it replaces are met.

Signatures cover exactly the body: nothing here rebuilds a body once it
exists, `combine` refuses copies whose bodies differ, and a signature made
over another body does not verify against this one and is reported as
invalid. A sector still being signed has fewer signatures than a device
needs; devices refuse it (S4/S5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cert_sector.keys import key_id, key_id_hex
from publisher import sector_format as fmt
from publisher.certs import load_sector
from publisher.errors import PublisherError
from publisher.signing import Signer, verify_with_cryptography


def read_unfinished(path: Path) -> fmt.Sector:
    """A sector file with any number of signatures, none included."""
    return load_sector(path, min_signatures=0)


def pack(sector: fmt.Sector, signatures: list[tuple[bytes, bytes]]) -> bytes:
    return fmt.pack_sector(sector.body, signatures, min_signatures=0)


def add_signature(sector: fmt.Sector, signer: Signer) -> bytes:
    """The sector with `signer`'s signature over its body (replacing an earlier one by it)."""
    signature = signer.sign(sector.body)
    others = [(kid, sig) for kid, sig in sector.signatures if kid != signer.key_id]
    return pack(sector, [*others, (signer.key_id, signature)])


def combine(
    copies: list[tuple[Path, fmt.Sector]], old_roots: Sequence[bytes] = ()
) -> tuple[bytes, list[str]]:
    """One sector holding every signature of `copies`, which must share one body, and
    warnings; `old_roots` (the previous sector's) have their signatures checked too."""
    warnings: list[str] = []
    if not copies:
        raise PublisherError("nothing to combine")
    first_path, first = copies[0]
    roots = {key_id(k): k for k in [*old_roots, *first.roots]}
    merged: dict[bytes, bytes] = {}
    for path, sector in copies:
        if sector.body != first.body:
            raise PublisherError(
                f"{path}: its body differs from {first_path}'s (sequence {sector.seq} vs "
                f"{first.seq}): signatures cover exactly the body, so these cannot be "
                "combined; have every holder sign the same file"
            )
        for kid, sig in sector.signatures:
            # A bad copy first would replace a holder's good signature and lose the threshold
            # unnoticed; one is a sign of tampering or damage, so the ceremony stops there.
            key = roots.get(kid)
            if key is not None and not verify_with_cryptography(key, first.body, sig):
                raise PublisherError(
                    f"{path}: its signature by root {kid.hex()} does not verify against the "
                    "body (damaged or forged): leave this copy out, or have that holder sign again"
                )
            if key is None and merged.get(kid, sig) != sig:
                # Two signatures by a key of neither sector (an old root's, without
                # --previous): both may be good (ECDSA signs anew each time), or not.
                warnings.append(
                    f"{path}: another signature by key {kid.hex()}, which is not a root of this "
                    "sector, so it is not checked; the first is kept (--previous checks an old "
                    "root's)"
                )
            merged.setdefault(kid, sig)
    if not merged:
        # Nothing to merge: written over the -o file (often the sector in use), the
        # result would only destroy what was there.
        raise PublisherError("none of these copies is signed: there is nothing to combine")
    return pack(first, list(merged.items())), warnings


@dataclass
class RootSet:
    """A set of roots whose threshold a sector must meet: its own, or the trusted ones."""

    name: str
    roots: list[bytes]
    threshold: int


def report(sector: fmt.Sector, trusted: RootSet | None) -> dict[str, Any]:
    """Which roots signed the body, and whether each threshold is met."""
    sets = [RootSet("new", sector.roots, sector.threshold)]
    if trusted is not None:
        sets.append(trusted)
    known = {key_id(k): k for s in sets for k in s.roots}
    signatures = []
    valid_keys: list[bytes] = []
    for kid, sig in sector.signatures:
        key = known.get(kid)
        valid = None if key is None else verify_with_cryptography(key, sector.body, sig)
        if key is not None and valid:
            valid_keys.append(key)
        signatures.append(
            {
                "key_id": kid.hex(),
                "roots_of": [s.name for s in sets if key in s.roots] if key else [],
                "valid": valid,
            }
        )
    thresholds = []
    for s in sets:
        signed = [key_id_hex(k) for k in s.roots if k in valid_keys]
        thresholds.append(
            {
                "roots": s.name,
                "signed": signed,
                "missing": [key_id_hex(k) for k in s.roots if k not in valid_keys],
                "threshold": s.threshold,
                "met": len(signed) >= s.threshold,
            }
        )
    return {"signatures": signatures, "thresholds": thresholds}


# How report_lines names each root set.
SET_NAMES = {"new": "this sector's", "previous": "the previous sector's", "pinned": "the pinned"}


def report_lines(info: dict[str, Any]) -> list[str]:
    lines = []
    for sig in info["signatures"]:
        if sig["valid"] is None:
            state = "not a root of the sets checked: ignored"
        elif sig["valid"]:
            state = "valid, root of " + " and ".join(sig["roots_of"])
        else:
            state = "INVALID: made over another body (or garbage)"
        lines.append(f"signature  {sig['key_id']} {state}")
    for t in info["thresholds"]:
        total = len(t["signed"]) + len(t["missing"])
        verdict = "met" if t["met"] else "NOT met"
        missing = f"; missing {', '.join(t['missing'])}" if t["missing"] and not t["met"] else ""
        lines.append(
            f"{SET_NAMES[t['roots']]} roots: {len(t['signed'])} of {total} signed, "
            f"threshold {t['threshold']} {verdict}{missing}"
        )
    return lines
