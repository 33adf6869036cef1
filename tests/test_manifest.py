"""Release manifest format and rules (M1-M6) on CPython."""

from __future__ import annotations

import hashlib

import pytest

from cert_sector.errors import FormatError, MismatchError, RollbackError, SignatureError
from cert_sector.semver import parse_version
from publisher import manifest_format as mf
from publisher import sector_format as sf
from tests.keyfactory import make_manifest, make_sector, new_signer

REPO = "acme/widget"
FILES = {
    "main.py": b"print('hi')\n",
    "lib/util.py": b"X = 1\n" * 100,
    "data/a.bin": bytes(range(256)),
}


@pytest.fixture(scope="module")
def world():
    root, rel, evil = new_signer(), new_signer(), new_signer()
    sector = sf.verify_sector(
        make_sector(REPO, [root], [rel]), sf.PinnedRoots(REPO, [root.public_key])
    )
    return sector, rel, evil


def test_round_trip_and_tiling(world):
    sector, rel, _ = world
    data, pack = make_manifest(
        REPO,
        rel,
        FILES,
        seq=5,
        version="1.2.3-beta.1",
        channel="beta",
        boards=("esp32", "esp8266"),
        min_manager="0.1.0",
    )
    m = mf.verify_manifest(
        data,
        sector,
        REPO,
        installed_seq=4,
        board="esp8266",
        channel="beta",
        manager_version="0.2.0",
    )
    assert (m.repo, m.version, m.seq, m.channel, m.kind) == (
        REPO,
        "1.2.3-beta.1",
        5,
        "beta",
        "files",
    )
    assert [f.path for f in m.files] == ["data/a.bin", "lib/util.py", "main.py"]
    for f in m.files:
        assert pack[f.offset : f.offset + f.size] == FILES[f.path]
        assert f.sha256 == hashlib.sha256(FILES[f.path]).digest()
    assert m.pack_size == len(pack) and m.pack_sha256 == hashlib.sha256(pack).digest()


def test_streaming_reader_matches(world, tmp_path):
    _, rel, _ = world
    data, _ = make_manifest(REPO, rel, FILES)
    body, _, _ = mf.split_signature(data)
    path = tmp_path / "m"
    path.write_bytes(body)
    with open(path, "rb") as f:
        reader = mf.ManifestReader(stream=f, body_size=len(body))
        header = reader.header()
        paths = [e.path for e in reader.files()]
    assert header.file_count == 3 and paths == sorted(FILES, key=str.encode)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"repo": "acme/other"}, MismatchError, "acme/other"),
        ({"installed_seq": 1}, RollbackError, "not above"),
        ({"installed_seq": 2}, RollbackError, "not above"),
        ({"board": "rp2"}, MismatchError, "not rp2"),
        ({"manager_version": "0.0.9"}, MismatchError, "needs manager"),
    ],
)
def test_header_rules(world, kwargs, error, message):
    sector, rel, _ = world
    data, _ = make_manifest(REPO, rel, FILES, seq=1, min_manager="0.1.0")
    args = {
        "repo": REPO,
        "installed_seq": 0,
        "board": "esp32",
        "manager_version": "0.1.0",
        **kwargs,
    }
    with pytest.raises(error, match=message):
        mf.verify_manifest(data, sector, **args)


def test_beta_refused_on_stable(world):
    sector, rel, _ = world
    data, _ = make_manifest(REPO, rel, FILES, channel="beta", version="2.0.0-rc.1")
    with pytest.raises(MismatchError, match="beta"):
        mf.verify_manifest(data, sector, REPO, channel="stable")
    assert mf.verify_manifest(data, sector, REPO, channel="beta").channel == "beta"


def test_signature_rules(world):
    sector, rel, evil = world
    data, _ = make_manifest(REPO, evil, FILES)
    with pytest.raises(SignatureError, match="unknown key"):
        mf.verify_manifest(data, sector, REPO)
    good, _ = make_manifest(REPO, rel, FILES)
    tampered = bytearray(good)
    tampered[30] ^= 0x40
    with pytest.raises(SignatureError, match="bad manifest signature"):
        mf.verify_manifest(bytes(tampered), sector, REPO)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../x",
        "a/../b",
        "a//b",
        "a/",
        "./a",
        "a\\b",
        "",
        "a\x00b",
        "x" * 129,
        "a/\x1b[31m",
    ],
)
def test_bad_paths_refused(world, path):
    _, rel, _ = world
    with pytest.raises(FormatError):
        make_manifest(REPO, rel, {path: b"x"})


def test_duplicate_and_unsorted_paths_refused_by_reader(world):
    _, rel, _ = world
    data, _ = make_manifest(REPO, rel, {"a.py": b"1", "b.py": b"2"})
    body, kid, sig = mf.split_signature(data)
    dup = body.replace(b"\x04b.py", b"\x04a.py")
    with pytest.raises(FormatError, match="strictly ascending"):
        mf.parse_manifest(dup + kid + sig)


def test_tiling_enforced(world):
    _, rel, _ = world
    data, _ = make_manifest(REPO, rel, {"a.py": b"1", "b.py": b"22"})
    body, kid, sig = mf.split_signature(data)
    # Make b.py's offset overlap a.py.
    i = body.index(b"\x04b.py") + 5 + 4
    bad = body[:i] + (0).to_bytes(4, "big") + body[i + 4 :]
    with pytest.raises(FormatError, match="does not tile"):
        mf.parse_manifest(bad + kid + sig)


@pytest.mark.parametrize("cut", [0, 10, 72, 73, 100])
def test_truncation(world, cut):
    _, rel, _ = world
    data, _ = make_manifest(REPO, rel, FILES)
    with pytest.raises(FormatError):
        mf.parse_manifest(data[:cut] if cut < 100 else data[:-cut])


def test_trailing_bytes(world):
    _, rel, _ = world
    data, _ = make_manifest(REPO, rel, FILES)
    body, kid, sig = mf.split_signature(data)
    with pytest.raises(FormatError, match="trailing"):
        mf.parse_manifest(body + b"\0" + kid + sig)


def test_size_cap_holds_the_largest_manifest():
    # cert_sector.assets states the cap as a sum, so that the device need not load the
    # parser to budget for it: a header of 1024 bytes, MAX_BOARDS boards (str8 of at most
    # 32 bytes), MAX_FILES records (str8 path, u32 size, u32 offset, 32-byte sha256).
    largest = 1024 + mf.MAX_BOARDS * 33 + mf.MAX_FILES * (1 + mf.MAX_PATH + 4 + 4 + 32)
    assert largest == mf.MAX_MANIFEST_SIZE


def test_signature_block_is_key_id_and_signature():
    # cert_sector.assets states the trailer's size as a sum, so that the parser need not
    # load cert_sector.keys (released with the sector before the manifest's checks).
    from cert_sector.keys import KEY_ID_SIZE, SIGNATURE_SIZE

    assert mf.SIGNATURE_BLOCK == KEY_ID_SIZE + SIGNATURE_SIZE


def test_manifest_order():
    # Rule S9: epoch x 2**32 + sequence; below the epoch's first sequence, none.
    assert mf.manifest_order(0, 0, 5) == 5
    assert mf.manifest_order(2, 10, 10) == (2 << 32) + 10
    assert mf.manifest_order(2, 10, 9) is None


def test_too_many_files(world):
    _, rel, _ = world
    with pytest.raises(FormatError):
        make_manifest(REPO, rel, {f"f{i:04}.py": b"" for i in range(mf.MAX_FILES + 1)})


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.0", "1.0.1"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-2", "1.0.0-10"),
        ("1.0.0-10", "1.0.0-a"),
        ("0.9.9", "v1.0.0"),
    ],
)
def test_semver_order(lower, higher):
    assert parse_version(lower) < parse_version(higher)


@pytest.mark.parametrize(
    "bad", ["1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-a..b", "1.٣.0", "x.y.z", "1.0.0-é"]
)
def test_semver_invalid(bad):
    with pytest.raises(FormatError):
        parse_version(bad)
