"""certs.chain as the publisher builds it: ascending, one sector per sequence, ending with
the release's own sector, bounded (the oldest dropped), and read back exactly."""

from __future__ import annotations

import pytest

from cert_sector import sector as sf
from cert_sector.assets import MAX_CHAIN_SIZE
from cert_sector.errors import FormatError
from publisher.release.chain import build_chain, split_chain
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
