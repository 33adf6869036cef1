"""The root ceremony through the real `lcm` app: roots in separate folders (one in a
SoftHSM token) co-sign a rotation without ever meeting; signatures cover exactly the body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from publisher import sector_format as sf
from publisher import signing
from publisher.cli import app
from tests.softhsm import SoftHsm, softhsm

REPO = "acme/widget"


def lcm(*args: str, env: dict[str, str] | None = None, code: int = 0):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return softhsm()


@pytest.fixture
def holders(tmp_path: Path, hsm: SoftHsm):
    """An old root (sector 1) and three new roots, each in its own folder; C in the token."""
    keys = {}
    for name in ("old", "a", "b"):
        pem, pub, _ = signing.generate(tmp_path / name, "root", None)
        keys[name] = (str(pem), str(pub))
    uri = hsm.uri(hsm.new_label("root-c"))
    lcm("keys", "new", "root", "--dir", str(tmp_path / "c"), "--pkcs11", uri, env=hsm.env)
    keys["c"] = (uri, str(tmp_path / "c" / "root.pub"))
    _, release_pub, _ = signing.generate(tmp_path / "release", "release", None)
    old = tmp_path / "old.sector"
    lcm("certs", "build", "--repo", REPO, "--root-key", keys["old"][0],
        "--release-key", str(release_pub), "-o", str(old))  # fmt: skip
    return keys, str(release_pub), old


def test_two_of_three_rotation_signed_apart(holders, hsm, tmp_path):
    keys, release_pub, old = holders
    body = tmp_path / "new.sector"
    lcm("certs", "build", "--repo", REPO, "--unsigned", "--previous", str(old), "--threshold", "2",
        "--root-key", keys["a"][1], "--root-key", keys["b"][1], "--root-key", keys["c"][1],
        "--release-key", release_pub, "-o", str(body))  # fmt: skip
    shown = json.loads(lcm("certs", "show", str(body), "--json").output)
    assert shown["sequence"] == 2 and shown["signatures"] == [] and shown["threshold"] == 2
    # Not valid yet, and verify says why.
    res = lcm("certs", "verify", str(body), "--previous", str(old), code=1)
    assert "this sector's roots: 0 of 3 signed, threshold 2 NOT met" in res.output

    # Each holder signs a copy on their own machine; the old root authorises the change.
    copies = []
    for who in ("old", "a", "c"):
        copy = tmp_path / f"copy-{who}.sector"
        copy.write_bytes(body.read_bytes())
        res = lcm("certs", "sign", str(copy), "--key", keys[who][0], "--previous", str(old),
                  env=hsm.env)  # fmt: skip
        # The summary comes first: repo, sequence, roots, keys, expiry, the body's hash.
        assert res.output.index("repo        acme/widget") < res.output.index("signed ")
        assert shown["body_sha256"] in res.output
        copies.append(str(copy))
    final = tmp_path / "certs.sector"
    lcm("certs", "combine", *copies, "-o", str(final))
    report = json.loads(lcm("certs", "verify", str(final), "--previous", str(old), "--json").output)
    assert report["valid"] is True
    new_roots, previous = report["thresholds"]
    assert (len(new_roots["signed"]), new_roots["met"]) == (2, True)
    assert (len(previous["signed"]), previous["met"]) == (1, True)
    res = lcm("certs", "verify", str(final), "--previous", str(old))
    assert "the previous sector's roots: 1 of 1 signed, threshold 1 met" in res.output
    # The device's own rules agree.
    parsed = sf.parse_sector(old.read_bytes())
    assert sf.verify_sector(final.read_bytes(), parsed).threshold == 2

    # Signing the same file again with the same key replaces its signature.
    lcm("certs", "sign", str(final), "--key", keys["a"][0], "--yes")
    assert len(sf.parse_sector(final.read_bytes()).signatures) == 3


def test_signatures_cover_exactly_the_body(holders, tmp_path):
    keys, release_pub, old = holders
    body = tmp_path / "new.sector"
    lcm("certs", "build", "--repo", REPO, "--unsigned", "--previous", str(old),
        "--root-key", keys["a"][1], "--release-key", release_pub, "-o", str(body))  # fmt: skip
    other = tmp_path / "other.sector"
    lcm("certs", "build", "--repo", REPO, "--unsigned", "--previous", str(old), "--seq", "5",
        "--root-key", keys["a"][1], "--release-key", release_pub, "-o", str(other))  # fmt: skip
    lcm("certs", "sign", str(body), "--key", keys["old"][0])
    lcm("certs", "sign", str(body), "--key", keys["a"][0])
    lcm("certs", "sign", str(other), "--key", keys["a"][0])
    res = lcm("certs", "combine", str(body), str(other), "-o", str(tmp_path / "x"), code=1)
    assert "body differs" in res.output and not (tmp_path / "x").exists()
    # A body changed after signing (sequence 2 -> 3): every signature is reported invalid.
    data = bytearray(body.read_bytes())
    seq_at = 4 + 2 + 1 + len(REPO)
    assert data[seq_at : seq_at + 4] == (2).to_bytes(4, "big")
    data[seq_at + 3] = 3
    body.write_bytes(bytes(data))
    res = lcm("certs", "verify", str(body), "--previous", str(old), code=1)
    assert res.output.count("INVALID") == 2 and "0 of 1 signed" in res.output
    # A key that is a root of neither sector is refused before it signs.
    stranger, _, _ = signing.generate(tmp_path / "s", "stranger", None)
    res = lcm("certs", "sign", str(other), "--key", str(stranger), "--previous", str(old), code=1)
    assert "root of neither" in res.output
    # --unsigned with a sequence not above the previous one is refused.
    res = lcm("certs", "build", "--repo", REPO, "--unsigned", "--previous", str(old),
              "--seq", "1", "--root-key", keys["a"][1], "--release-key", release_pub,
              "-o", str(tmp_path / "y"), code=1)  # fmt: skip
    assert "not above" in res.output


def test_combine_refuses_a_copy_with_a_bad_signature_by_a_root(holders, tmp_path):
    """First copy wins: a damaged (or planted) copy placed first replaced a holder's valid
    signature, and the threshold was lost without a word."""
    keys, release_pub, _ = holders
    body = tmp_path / "body.sector"
    lcm("certs", "build", "--repo", REPO, "--unsigned", "--threshold", "2",
        "--root-key", keys["a"][1], "--root-key", keys["b"][1],
        "--release-key", release_pub, "-o", str(body))  # fmt: skip
    copies = {}
    for who in ("a", "b"):
        copies[who] = tmp_path / f"{who}.sector"
        copies[who].write_bytes(body.read_bytes())
        lcm("certs", "sign", str(copies[who]), "--key", keys[who][0], "--yes")
    bad = tmp_path / "a-bad.sector"
    data = bytearray(copies["a"].read_bytes())
    data[-1] ^= 1  # the last byte of a's signature
    bad.write_bytes(bytes(data))
    out = tmp_path / "certs.sector"
    res = lcm("certs", "combine", str(bad), str(copies["a"]), str(copies["b"]), "-o", str(out),
              code=1)  # fmt: skip
    kid = signing.load_public_key(keys["a"][1])
    assert f"{bad}: its signature by root" in " ".join(res.output.split())
    assert sf.key_id(kid).hex() in res.output and not out.exists()
    lcm("certs", "combine", str(copies["a"]), str(copies["b"]), "-o", str(out))
    lcm("certs", "verify", str(out), "--root", keys["a"][1], "--root", keys["b"][1],
        "--threshold", "2")  # fmt: skip


def test_combine_checks_an_old_roots_signatures_with_previous(holders, tmp_path):
    """An old root's signature could not be checked by combine (it is no root of the new
    sector): a bad copy first won unnoticed. With --previous it is checked; without, two
    different signatures by one unknown key are said."""
    keys, release_pub, old = holders
    body = tmp_path / "new.sector"
    lcm("certs", "build", "--repo", REPO, "--unsigned", "--previous", str(old),
        "--root-key", keys["a"][1], "--release-key", release_pub, "-o", str(body))  # fmt: skip
    copies = {}
    for who in ("old", "a"):
        copies[who] = tmp_path / f"copy-{who}.sector"
        copies[who].write_bytes(body.read_bytes())
        lcm("certs", "sign", str(copies[who]), "--key", keys[who][0], "--previous", str(old),
            "--yes")  # fmt: skip
    bad = tmp_path / "old-bad.sector"
    data = bytearray(copies["old"].read_bytes())
    data[-1] ^= 1  # the last byte of the old root's signature
    bad.write_bytes(bytes(data))
    out = tmp_path / "certs.sector"
    files = [str(bad), str(copies["old"]), str(copies["a"])]
    res = lcm("certs", "combine", *files, "--previous", str(old), "-o", str(out), code=1)
    assert f"{bad}: its signature by root" in " ".join(res.output.split())
    assert not out.exists()
    res = lcm("certs", "combine", *files, "-o", str(out))
    assert "which is not a root of this sector, so it is not checked" in " ".join(
        res.output.split()
    )
    lcm("certs", "combine", *files[1:], "--previous", str(old), "-o", str(out))
    lcm("certs", "verify", str(out), "--previous", str(old))
