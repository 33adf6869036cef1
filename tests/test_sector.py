"""Cert sector format and rotation rules (S1-S7) on CPython."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cert_sector.errors import (
    ExpiredError,
    FormatError,
    MismatchError,
    RollbackError,
    SignatureError,
)
from cert_sector.keys import key_id_hex
from publisher import sector_format as sf
from tests.keyfactory import make_sector, new_signer

REPO = "acme/widget"


@pytest.fixture(scope="module")
def keys():
    return {name: new_signer() for name in ("r1", "r2", "r3", "rel", "rel2", "evil")}


def pinned(keys, *names, threshold=1):
    return sf.PinnedRoots(REPO, [keys[n].public_key for n in names], threshold)


def test_round_trip(keys):
    data = make_sector(
        REPO,
        [keys["r1"], keys["r2"]],
        [keys["rel"]],
        seq=7,
        expires=2_000_000_000,
        cas=[b"\x30\x03abc"],
    )
    s = sf.verify_sector(data, pinned(keys, "r1", "r2"))
    assert (s.repo, s.seq, s.expires, s.threshold) == (REPO, 7, 2_000_000_000, 1)
    assert s.roots == [keys["r1"].public_key, keys["r2"].public_key]
    assert s.release_key(keys["rel"].key_id) == keys["rel"].public_key
    assert s.release_key(keys["evil"].key_id) is None
    assert s.cas == [b"\x30\x03abc"]
    assert len(data) <= sf.MAX_SECTOR_SIZE


def test_threshold_k_of_n(keys):
    roots = [keys["r1"], keys["r2"], keys["r3"]]
    two = make_sector(REPO, roots, [keys["rel"]], threshold=2, signers=[keys["r1"], keys["r3"]])
    assert sf.verify_sector(two, pinned(keys, "r1", "r2", "r3", threshold=2)).threshold == 2
    one = make_sector(REPO, roots, [keys["rel"]], threshold=1, signers=[keys["r1"]])
    with pytest.raises(SignatureError, match="1 of the trusted roots, 2 required"):
        sf.verify_sector(one, pinned(keys, "r1", "r2", "r3", threshold=2))


def test_own_threshold_must_be_met(keys):
    # Signed by the pinned root, but the new roots never accepted their role (S5).
    data = make_sector(REPO, [keys["r2"]], [keys["rel"]], signers=[keys["r1"]])
    with pytest.raises(SignatureError, match="its own roots"):
        sf.verify_sector(data, pinned(keys, "r1"))


def test_rotation_needs_old_roots_and_higher_sequence(keys):
    first = sf.verify_sector(
        make_sector(REPO, [keys["r1"]], [keys["rel"]], seq=1), pinned(keys, "r1")
    )
    # Root rotation r1 -> r2, signed by both.
    rotated = make_sector(
        REPO, [keys["r2"]], [keys["rel2"]], seq=2, signers=[keys["r1"], keys["r2"]]
    )
    second = sf.verify_sector(rotated, first)
    assert second.roots == [keys["r2"].public_key]
    # Forged: signed only by the new (attacker's) root.
    forged = make_sector(REPO, [keys["evil"]], [keys["rel"]], seq=3, signers=[keys["evil"]])
    with pytest.raises(SignatureError):
        sf.verify_sector(forged, second)
    # Replay of the first sector against the second.
    with pytest.raises(RollbackError, match="not above"):
        sf.verify_sector(
            make_sector(REPO, [keys["r2"]], [keys["rel"]], seq=2, signers=[keys["r2"]]), second
        )


def test_other_repo_refused(keys):
    data = make_sector("acme/other", [keys["r1"]], [keys["rel"]])
    with pytest.raises(MismatchError, match="acme/other"):
        sf.verify_sector(data, pinned(keys, "r1"))


def test_expiry_only_when_clock_known(keys):
    data = make_sector(REPO, [keys["r1"]], [keys["rel"]], expires=1_000)
    assert sf.verify_sector(data, pinned(keys, "r1"), now=None).expires == 1_000
    assert sf.verify_sector(data, pinned(keys, "r1"), now=999).expires == 1_000
    with pytest.raises(ExpiredError):
        sf.verify_sector(data, pinned(keys, "r1"), now=1_000)


def test_bad_signature_bytes(keys):
    data = bytearray(make_sector(REPO, [keys["r1"]], [keys["rel"]]))
    data[-5] ^= 1
    with pytest.raises(SignatureError):
        sf.verify_sector(bytes(data), pinned(keys, "r1"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XXXX" + d[4:], "bad magic"),
        (lambda d: d[:4] + b"\x09" + d[5:], "format version"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\0", "trailing"),
        (lambda d: d[:40], "truncated"),
        (lambda d: b"", "truncated"),
        (lambda d: d + b"\0" * 5000, "larger than"),
    ],
)
def test_malformed(keys, mutate, message):
    data = make_sector(REPO, [keys["r1"]], [keys["rel"]])
    with pytest.raises(FormatError, match=message):
        sf.parse_sector(mutate(data))


def test_pack_refuses_bad_sectors(keys):
    r1 = keys["r1"].public_key
    rel = keys["rel"].public_key
    with pytest.raises(FormatError, match="duplicate root"):
        sf.pack_body(sf.Sector(REPO, 1, 0, 1, [r1, r1], [rel], []))
    with pytest.raises(FormatError, match="threshold"):
        sf.pack_body(sf.Sector(REPO, 1, 0, 2, [r1], [rel], []))
    with pytest.raises(FormatError, match="not a valid P-256"):
        sf.pack_body(sf.Sector(REPO, 1, 0, 1, [b"\x04" + b"\x01" * 64], [rel], []))
    with pytest.raises(FormatError, match="owner/name"):
        sf.pack_body(sf.Sector("nope", 1, 0, 1, [r1], [rel], []))
    body = sf.pack_body(sf.Sector(REPO, 1, 0, 1, [r1], [rel], [b"x" * 4000]))
    with pytest.raises(FormatError, match="more than 4096"):
        sf.pack_sector(body, [(keys["r1"].key_id, keys["r1"].sign(body))])


def test_parse_refuses_duplicates_and_threshold(keys):
    r1 = keys["r1"].public_key
    rel = keys["rel"].public_key
    good = sf.pack_body(sf.Sector(REPO, 1, 0, 1, [r1, keys["r2"].public_key], [rel], []))
    # Patch the second root into a copy of the first: the parser must refuse it.
    dup = good.replace(keys["r2"].public_key, r1)
    sig = (keys["r1"].key_id, keys["r1"].sign(dup))
    with pytest.raises(FormatError, match="duplicate root key"):
        sf.parse_sector(dup + b"\x01" + sig[0] + sig[1])
    # Threshold byte raised above the number of roots.
    i = good.index(r1) - 2
    assert good[i] == 1
    high = good[:i] + b"\x03" + good[i + 1 :]
    with pytest.raises(FormatError, match="threshold 3 for 2 root keys"):
        sf.parse_sector(high + b"\x01" + sig[0] + sig[1])


def test_formats_doc_worked_example_is_a_sector_its_notes_describe():
    # docs/formats.md shows a hex dump and annotates it by hand: the notes once named
    # keys from an older dump. Parse the dump and hold the notes to it.
    doc = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text()
    example = doc.split("## Cert sector", 1)[1].split("### Worked example", 1)[1]
    example = example.split("\n## ", 1)[0]
    dump, notes = re.fullmatch(r"\s*One root[^\n]*\n\n```\n(.*?)```\n(.*)", example, re.S).groups()
    data = bytes.fromhex(" ".join(" ".join(line.split()[1:]) for line in dump.splitlines()))
    s = sf.parse_sector(data)
    sf.verify_sector(data, sf.PinnedRoots(s.repo, s.roots, s.threshold))
    assert f"({len(data)} bytes)" in doc
    assert (s.repo, s.seq, s.expires, s.threshold, s.cas) == ("acme/widget", 1, 0, 1, [])
    assert (len(s.roots), len(s.release_keys), len(s.signatures)) == (1, 1, 1)
    assert f"`{s.roots[0][:3].hex(' ')} …`" in notes
    assert f"`{s.release_keys[0][:3].hex(' ')} …`" in notes
    assert f"key id `{s.signatures[0][0].hex()}` (the root's)" in notes
    assert s.signatures[0][0].hex() == key_id_hex(s.roots[0])
