"""Random and mutated sectors and manifests: only the documented error types come out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cert_sector.errors import TrustError
from publisher import manifest_format as mf
from publisher import sector_format as sf
from tests.keyfactory import make_manifest, make_sector, new_signer

REPO = "acme/widget"
ROOT, REL = new_signer(), new_signer()
SECTOR = make_sector(REPO, [ROOT], [REL], cas=[b"\x30\x82" + b"c" * 300])
TRUSTED = sf.verify_sector(SECTOR, sf.PinnedRoots(REPO, [ROOT.public_key]))
MANIFEST, _ = make_manifest(REPO, REL, {"main.py": b"x" * 10, "lib/a.py": b"y", "z/b.bin": b""})


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    out = bytes(buf[:cut]) if cut is not None else bytes(buf)
    return out + extra


mutations = st.tuples(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.none() | st.integers(0, 5000),
    st.binary(max_size=8),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_trust_errors(func, data):
    with contextlib.suppress(TrustError):
        func(data)


@SETTINGS
@given(st.binary(max_size=5000))
def test_random_sector_bytes(data):
    _only_trust_errors(sf.parse_sector, data)
    _only_trust_errors(lambda d: sf.verify_sector(d, TRUSTED), data)


@SETTINGS
@given(mutations)
def test_mutated_sectors(m):
    data = _mutate(SECTOR, *m)
    _only_trust_errors(lambda d: sf.verify_sector(d, sf.PinnedRoots(REPO, [ROOT.public_key])), data)


EPOCH_SECTOR = make_sector(
    REPO, [ROOT], [REL], cas=[b"\x30\x82" + b"c" * 300, b"d" * 40], epoch=2, first_seq=9
)


def _outcome(func, data):
    try:
        s = func(data)
    except TrustError as exc:
        return type(exc).__name__
    return (s.repo, s.seq, s.epoch, s.first_seq, s.roots, s.release_keys, s.signatures)


def _from_file(data):
    # As a device reads it: field by field from a file, through a small buffer.
    import hashlib
    import io

    s = sf.read_sector_file(io.BytesIO(data), len(data), bytearray(7))
    # What it returns instead of bytes: where each CA is, and the body's digest.
    assert [bytes(data[o : o + n]) for o, n in s.cas] == sf.parse_sector(data).cas
    assert s.digest == hashlib.sha256(sf.parse_sector(data).body).digest()
    return s


@SETTINGS
@given(mutations)
def test_sector_read_from_a_file_is_the_sector_parsed_in_memory(m):
    """read_sector_file (the device's) parses exactly what parse_sector (in memory) does."""
    data = _mutate(EPOCH_SECTOR, *m)
    assert _outcome(_from_file, data) == _outcome(sf.parse_sector, data)


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_manifest_bytes(data):
    _only_trust_errors(mf.parse_manifest, data)
    _only_trust_errors(lambda d: mf.verify_manifest(d, TRUSTED, REPO), data)


@SETTINGS
@given(mutations)
def test_mutated_manifests(m):
    data = _mutate(MANIFEST, *m)
    _only_trust_errors(mf.parse_manifest, data)
    _only_trust_errors(lambda d: mf.verify_manifest(d, TRUSTED, REPO), data)


@pytest.mark.parametrize("func", [sf.parse_sector, mf.parse_manifest])
def test_header_magic_swapped(func):
    with pytest.raises(TrustError):
        func(MANIFEST if func is sf.parse_sector else SECTOR)


# A sector with key scopes (rule S8): REL may sign only beta releases for esp32.
SCOPED = make_sector(REPO, [ROOT], [REL, new_signer()], scopes={0: (2, ["esp32"]), 1: (1, [])})
SCOPED_TRUSTED = sf.parse_sector(SCOPED)


@SETTINGS
@given(mutations)
def test_mutated_scoped_sectors_and_manifests_checked_against_them(m):
    _only_trust_errors(sf.parse_sector, _mutate(SCOPED, *m))
    _only_trust_errors(lambda d: mf.verify_manifest(d, SCOPED_TRUSTED, REPO), _mutate(MANIFEST, *m))
