"""Pinning an app repo's root keys from its first cert sector (chosen on the setup page).

A board flashed without the app's root keys gets them on the setup page:
either a fingerprint of a root key, copied from the maintainer's README (16
hex digits is the key id `lcm keys show` prints; up to the full 64), or
"trust on first use". The first sector fetched from the repo then decides.

Rules (each check below names the rule it enforces):

  P1  The sector parses, is for the configured repo, and carries at least
      its own threshold of valid signatures by its own roots (S1-S5 with its
      roots as the trusted set): a sector its roots did not sign is refused,
      fingerprint or not.
  P2  With a fingerprint: one of the sector's roots has a SHA-256 that starts
      with it (at least 16 hex digits, 64 bits; case, spaces and colons are
      ignored). A sector signed by other keys is refused.
  P3  Trust on first use accepts any sector that passes P1; the log says so.

The roots and threshold found become `app_roots` / `app_threshold` in the
config, and the fingerprint and trust-on-first-use settings are dropped, so
this happens once; every later sector must pass the rotation rule (S4).
"""

import binascii
import hashlib

from cert_sector.errors import SignatureError, TrustError

MIN_FINGERPRINT = 16


def normalise_fingerprint(text):
    """Lower-case hex digits of `text` without spaces or colons; TrustError if not a fingerprint."""
    digits = ""
    for ch in text.lower():
        if ch in " :":
            continue
        if ch not in "0123456789abcdef":
            raise TrustError("fingerprint has a character that is not hex: " + repr(ch))
        digits += ch
    if not MIN_FINGERPRINT <= len(digits) <= 64:
        raise TrustError("fingerprint must be 16 to 64 hex digits, got " + str(len(digits)))
    return digits


def roots_from_first_sector(sector, repo, fingerprint=None, tofu=False, now=None):
    """(roots, threshold) to pin from the first sector of `repo`, parsed from flash
    (cert_sector.sector.read_sector_file: `sector.digest` is its body's); raises TrustError."""
    from cert_sector.sector import PinnedRoots, check_sector

    if not fingerprint and not tofu:
        raise TrustError("no pinned app root keys, no fingerprint, no trust on first use")
    # Rule P1: its own roots signed it (and it is for this repo, fresh, not expired).
    check_sector(sector, sector.digest, PinnedRoots(repo, sector.roots, sector.threshold), now)
    if fingerprint:
        want = normalise_fingerprint(fingerprint)
        for root in sector.roots:  # Rule P2
            if binascii.hexlify(hashlib.sha256(root).digest()).decode().startswith(want):
                return sector.roots, sector.threshold
        raise SignatureError("no root key of the first sector matches the fingerprint " + want)
    return sector.roots, sector.threshold  # Rule P3


def pin_in_config(cfg, roots, threshold):
    """The config with the roots pinned and the one-time settings dropped (a new dict)."""
    out = dict(cfg)
    out["app_roots"] = [binascii.hexlify(r).decode() for r in roots]
    out["app_threshold"] = threshold
    out.pop("app_root_fingerprint", None)
    out.pop("app_trust_first_use", None)
    return out


def pin_first_sector(u, sector):
    """Pin the roots of the first app sector in the config and in the Updater `u`
    (lcm_device.install's first step, when no app roots are pinned); TrustError when
    refused."""
    from cert_sector.keys import key_id_hex
    from lcm_device import config

    cfg = u.cfg
    fingerprint = cfg.get("app_root_fingerprint")
    tofu = cfg.get("app_trust_first_use") is True
    roots, threshold = roots_from_first_sector(sector, u.repo, fingerprint, tofu, u.hal.time())
    pinned = pin_in_config(cfg, roots, threshold)
    # Saved before the sector is swapped in: a power cut in between leaves the
    # pin, and the next check verifies the same sector against it.
    config.save(u.hal, pinned)
    cfg.pop("app_root_fingerprint", None)
    cfg.pop("app_trust_first_use", None)
    cfg["app_roots"] = u.roots = pinned["app_roots"]
    cfg["app_threshold"] = u.threshold = threshold
    u.log(
        "app: pinned root keys "
        + " ".join(key_id_hex(r) for r in roots)
        + " from the first sector ("
        + ("fingerprint" if fingerprint else "trust on first use")
        + ")"
    )
