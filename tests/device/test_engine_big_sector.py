"""Real cert sectors fit the design heap: a full 4096-byte sector carrying two real-sized
root CA certificates (an RSA-4096 root and a P-384 root, made here) installs at the
24 KB data heap every time, because the device streams the sector to flash, hashes it
on the way and parses it field by field from flash (CAs stay there until TLS needs
them). Junk sectors of any size up to the cap are refused by their format or their
signature, never by MemoryError; the app runs and the next genuine sector installs.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cert_sector.sector import MAX_SECTOR_SIZE
from publisher import sector_format as sf
from tests.device.attackserver import point, release_routes
from tests.device.enginekit import (
    Repo,
    install_first_release,
    run,
    slot_is_complete,
    text,
)
from tests.keyfactory import make_sector, new_signer
from tests.test_http_servers import RawServer

ROUNDS = 20


def root_ca(key: Any, name: str, pad: int = 0) -> bytes:
    """A self-signed root CA certificate (DER); `pad` bytes of an unknown, non-critical
    extension make it as long as the test needs."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if pad:
        oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\0" * pad), False)
    cert = builder.sign(key, hashes.SHA384())
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def cas() -> tuple[bytes, Any]:
    """The RSA-4096 root (DER) and the P-384 root's key (its certificate is sized per sector)."""
    rsa_der = root_ca(rsa.generate_private_key(65537, 4096), "Test RSA-4096 Root")
    return rsa_der, ec.generate_private_key(ec.SECP384R1())


def full_sector(repo: Repo, seq: int, rsa_der: bytes, p384: Any) -> bytes:
    """A sector of exactly MAX_SECTOR_SIZE bytes with both root CAs."""
    pad = 1
    for _ in range(100):  # ECDSA signatures vary in DER length: re-signed until it fits
        ders = [rsa_der, root_ca(p384, "Test P-384 Root", pad)]
        sector = sf.Sector(
            repo.name, seq, 0, 1, [repo.root.public_key], [repo.release_key.public_key], ders
        )
        size = len(sf.pack_body(sector)) + 1 + 72  # one signature
        if size == MAX_SECTOR_SIZE:
            return make_sector(repo.name, [repo.root], [repo.release_key], seq=seq, cas=ders)
        pad += MAX_SECTOR_SIZE - size
    raise AssertionError(f"could not size the sector: {size} bytes")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    tmp = tmp_path_factory.mktemp("bigsector")
    return install_first_release(tmp, mpy_build)


def test_full_sector_with_two_real_root_cas_installs_every_time(
    cas: tuple[bytes, Any], installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    rsa_der, p384 = cas
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    for n in range(2, 2 + ROUNDS):
        # Each round rotates the release key: a new 4096-byte sector every time.
        repo.release_key = new_signer()
        repo.sector = full_sector(repo, n, rsa_der, p384)
        with RawServer(release_routes(repo, f"{n}.0.0", n)) as server:
            point(state, server.url())
            status = run(state, mpy)
        out = text(status)
        assert f"cert sector: installed sequence {n} " in out and "2 CAs" in out, out
        assert status.state["app_tag"] == f"v{n}.0.0", out
    assert (state / "lcm/state/certs/app.sector").read_bytes() == repo.sector
    # The CAs were copied to the TLS cache from flash, byte for byte.
    cache = (state / "lcm/state/certs/app.cas").read_bytes()
    assert cache[2 : 2 + len(rsa_der)] == rsa_der


def most_fields(repo: Repo, with_cas: bool) -> bytes:
    """A well-formed sector with every list at its most (8 roots, 8 release keys with
    scopes, 16 signatures, one of them naming the trusted root), CAs filling the rest,
    signed by no one the device trusts: held whole while signatures were verified, it
    ran the 24 KB data heap out (found from outside)."""
    owners, keys = [new_signer() for _ in range(8)], [new_signer() for _ in range(8)]
    scopes = {i: (3, [f"b{j:02d}" * 10 + "xx" for j in range(3)]) for i in range(8)}
    roots, rel = [o.public_key for o in owners], [k.public_key for k in keys]
    bare = sf.pack_body(sf.Sector(repo.name, 2, 0, 8, roots, rel, [], scopes=scopes))
    room = MAX_SECTOR_SIZE - len(bare) - 1 - 16 * 72 - 8 * 2 - 2
    cas = [os.urandom(room // 8 - 1) for _ in range(8)] if with_cas else []
    body = sf.pack_body(sf.Sector(repo.name, 2, 0, 8, roots, rel, cas, scopes=scopes))
    sigs = [(o.key_id, o.sign(body)) for o in owners] + [(repo.root.key_id, owners[0].sign(body))]
    sigs += [(os.urandom(8), owners[0].sign(body)) for _ in range(7)]
    return sf.pack_sector(body, sigs)


def junk(repo: Repo, rsa_der: bytes, p384: Any) -> dict[str, tuple[bytes, str]]:
    genuine = full_sector(repo, 2, rsa_der, p384)
    forged = bytearray(genuine)
    forged[-1] ^= 1  # the last signature byte
    other = new_signer()
    return {
        "1 byte": (b"L", "FormatError"),
        "random 1500": (os.urandom(1500), "FormatError"),
        "random 4096": (os.urandom(MAX_SECTOR_SIZE), "FormatError"),
        "magic then zeros": (b"LCMS\x01\x00" + bytes(MAX_SECTOR_SIZE - 6), "FormatError"),
        "huge CA lengths": (genuine[:40] + b"\xff" * (MAX_SECTOR_SIZE - 40), "FormatError"),
        "bad signature": (bytes(forged), "SignatureError"),
        "another root": (
            make_sector(repo.name, [other], [other], seq=2, cas=[rsa_der]),
            "SignatureError",
        ),
        "every field at its most": (most_fields(repo, True), "SignatureError"),
        "every field at its most, no CAs": (most_fields(repo, False), "SignatureError"),
    }


def test_junk_sectors_are_refused_by_format_or_signature(
    cas: tuple[bytes, Any], installed: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    rsa_der, p384 = cas
    repo, golden = installed
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    for name, (sector, error) in junk(repo, rsa_der, p384).items():
        with RawServer(release_routes(repo, "2.0.0", 2, sector=sector)) as server:
            point(state, server.url())
            status = run(state, mpy)
        out = text(status)
        assert f"app: refused v2.0.0: Refused: cert sector: {error}" in out, (name, out)
        assert "MemoryError" not in out and "crashed" not in out, (name, out)
        assert status.state["app_tag"] == "v1.0.0" and "APP v1.0.0 running" in out, name
    assert slot_is_complete(state, "app0")
    # The genuine full sector next: it installs, with the release it authorises.
    repo.sector = full_sector(repo, 2, rsa_der, p384)
    with RawServer(release_routes(repo, "2.0.0", 2)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.0.0", text(status)
