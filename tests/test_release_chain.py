"""certs.chain as the publisher builds it: ascending, one sector per sequence, ending with
the release's own sector, bounded (the oldest dropped), and read back exactly."""

from __future__ import annotations

import pytest

from cert_sector.assets import MAX_CHAIN_SIZE
from cert_sector.errors import FormatError, MismatchError, SignatureError
from publisher import sector_format as sf
from publisher.release.chain import build_chain, split_chain, verify_chain
from tests.keyfactory import make_sector, new_signer

ROOT, KEY = new_signer(), new_signer()


def sector(seq: int, pad: int = 0) -> bytes:
    return make_sector("acme/widget", [ROOT], [KEY], seq=seq, cas=[b"c" * pad] if pad else None)


def test_chain_is_ascending_unique_and_ends_with_the_current_sector() -> None:
    current = sector(5)
    older = [sector(3), sector(1), sector(3), b"junk", sector(7), sector(2)]
    members = split_chain(build_chain(older, current))
    assert [sf.parse_sector(m).seq for m in members] == [1, 2, 3, 5]
    assert members[-1] == current


def test_chain_drops_the_oldest_to_fit() -> None:
    big = [sector(n, pad=3500) for n in range(1, 30)]
    data = build_chain(big[:-1], big[-1])
    assert len(data) <= MAX_CHAIN_SIZE
    seqs = [sf.parse_sector(m).seq for m in split_chain(data)]
    assert seqs == list(range(30 - len(seqs), 30)) and len(seqs) > 10


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00", b"\x10\x00" + b"x" * 10])
def test_malformed_chain_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        split_chain(data)


def test_a_chain_is_walked_from_the_pins_that_sign_one_of_its_members() -> None:
    """Pinned to the newest root of a repo that rotated (rule C3): the walk starts at
    the member those roots verify; a stranger's pins verify none."""
    roots = [new_signer() for _ in range(3)]
    chain = [make_sector("acme/widget", [roots[0]], [KEY])]
    for n in (1, 2):
        signers = [roots[n - 1], roots[n]]
        chain.append(make_sector("acme/widget", [roots[n]], [KEY], seq=n + 1, signers=signers))
    data = build_chain(chain[:-1], chain[-1])
    for pin in roots:
        pinned = sf.PinnedRoots("acme/widget", [pin.public_key])
        assert verify_chain(data, chain[-1], pinned).seq == 3
    with pytest.raises(SignatureError, match="no member is signed by the pinned roots"):
        verify_chain(data, chain[-1], sf.PinnedRoots("acme/widget", [KEY.public_key]))
    # From a trusted sector: only what lies above it is walked; history below is kept.
    trusted = sf.parse_sector(chain[1])
    assert verify_chain(data, chain[-1], trusted, known=chain[:2]).seq == 3
    other = make_sector("acme/widget", [KEY], [KEY])
    with pytest.raises(MismatchError, match="sequence 1 is not the one served before"):
        verify_chain(build_chain([other, chain[1]], chain[2]), chain[2], trusted, chain[:2])


def test_from_pins_the_first_member_naming_them_must_verify() -> None:
    """As a device walks it (lcm_device/metadata.py): members that do not name the pinned
    roots are passed over by key id; the first that does must verify. Before, the mirror
    and `release verify --root` passed over a member that named them with a bad signature
    (found by review): a chain every board pinned there refuses was served as valid."""
    r1, r2, stranger = new_signer(), new_signer(), new_signer()
    body = sf.pack_body(
        sf.Sector("acme/widget", 1, 0, 1, [stranger.public_key], [KEY.public_key], [])
    )
    junk = sf.pack_sector(
        body, [(r1.key_id, stranger.sign(body)), (stranger.key_id, stranger.sign(body))]
    )
    s2 = make_sector("acme/widget", [r1], [KEY], seq=2, signers=[r1])
    s3 = make_sector("acme/widget", [r2], [KEY], seq=3, signers=[r1, r2])
    pinned = sf.PinnedRoots("acme/widget", [r1.public_key])
    with pytest.raises(SignatureError, match="link sequence 1: sector signed by 0"):
        verify_chain(build_chain([junk, s2], s3), s3, pinned)
    assert verify_chain(build_chain([s2], s3), s3, pinned).seq == 3
