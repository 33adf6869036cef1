"""Key scopes (rules S8 and M7): a release key limited to channels and boards.

The format round-trips and refuses malformed scopes; `lcm certs build --scope`
writes them; `lcm release publish` refuses to sign outside a key's scope;
`lcm release verify` names a violation uploaded by someone who bypassed the
publisher. (The device's refusal: tests/device/test_engine_custody.py.)
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cert_sector.assets import MANIFEST_ASSET, PACK_ASSET, SECTOR_ASSET
from cert_sector.errors import FormatError, ScopeError
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher import signing
from publisher.cli import app
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.keyfactory import make_manifest, make_sector, new_signer

BETA = 2
STABLE = 1


def lcm(*args: str, env: dict[str, str] | None = None, code: int = 0):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def keys():
    return {name: new_signer() for name in ("root", "prod", "ci", "lab")}


def scoped_sector(keys) -> bytes:
    # prod: anything; ci: beta only; lab: stable and beta, esp8266 only.
    return make_sector(
        TEST_REPO,
        [keys["root"]],
        [keys["prod"], keys["ci"], keys["lab"]],
        scopes={1: (BETA, []), 2: (STABLE | BETA, ["esp8266"])},
    )


def test_scopes_round_trip_and_are_enforced(keys):
    data = scoped_sector(keys)
    sector = sf.verify_sector(data, sf.PinnedRoots(TEST_REPO, [keys["root"].public_key]))
    assert sector.scope(keys["prod"].key_id) is None
    assert sector.scope(keys["ci"].key_id) == (["beta"], [])
    assert sector.scope(keys["lab"].key_id) == (["stable", "beta"], ["esp8266"])
    files = {"main.py": b"print(1)\n"}

    def verify(key, **kw):
        m, _ = make_manifest(TEST_REPO, keys[key], files, **kw)
        return mf.verify_manifest(m, sector, TEST_REPO, channel="beta", board=None)

    verify("prod", channel="stable", boards=())
    verify("ci", channel="beta", boards=())
    verify("lab", channel="stable", boards=("esp8266",))
    with pytest.raises(ScopeError, match="limited to channel beta and any board: a stable"):
        verify("ci", channel="stable")
    with pytest.raises(ScopeError, match="board esp32 is outside it"):
        verify("lab", boards=("esp8266", "esp32"))
    with pytest.raises(ScopeError, match="a release for any board is outside it"):
        verify("lab", boards=())
    # A sector without scopes is byte-identical to the format before scopes (flags 0).
    plain = make_sector(TEST_REPO, [keys["root"]], [keys["prod"]])
    assert plain[5] == 0 and data[5] == sf.FLAG_SCOPES
    assert sf.SCOPE_CHANNELS == mf.CHANNELS  # channel bit i is the manifest's channel code i


@pytest.mark.parametrize(
    "scopes, error",
    [
        ({3: (BETA, [])}, "release key 3 of 3"),
        ({1: (0, [])}, "no or unknown channels"),
        ({1: (4, [])}, "no or unknown channels"),
        ({1: (BETA, ["esp32", "esp32"])}, "duplicate scope board"),
        ({1: (BETA, [f"b{i}" for i in range(9)])}, "more than 8 boards"),
    ],
)
def test_malformed_scopes_are_refused(keys, scopes, error):
    with pytest.raises(FormatError, match=error):
        make_sector(TEST_REPO, [keys["root"]], [keys["prod"], keys["ci"], keys["lab"]],
                    scopes=scopes)  # fmt: skip


def test_malformed_scope_bytes_are_refused(keys):
    data = bytearray(scoped_sector(keys))
    sector = sf.parse_sector(bytes(data))
    at = len(sector.body) - len(b"\x02\x01\x02\x00\x02\x03\x01\x07esp8266")
    assert data[at : len(sector.body)] == b"\x02\x01\x02\x00\x02\x03\x01\x07esp8266"
    swapped = (
        bytes(data[:at])
        + b"\x02\x02\x03\x01\x07esp8266\x01\x02\x00"
        + bytes(data[len(sector.body) :])
    )
    with pytest.raises(FormatError, match="ascending"):
        sf.parse_sector(swapped)
    data[5] |= 4  # a flag this version does not know: refused, never ignored
    with pytest.raises(FormatError, match="unknown cert sector flags"):
        sf.parse_sector(bytes(data))


def test_publish_refuses_and_verify_names_a_scope_violation(tmp_path):
    keydir = tmp_path / "keys"
    for name in ("root", "ci"):
        lcm("keys", "new", name, "--dir", str(keydir))
    sector = tmp_path / "certs.sector"
    lcm("certs", "build", "--repo", TEST_REPO, "--root-key", str(keydir / "root.pem"),
        "--release-key", str(keydir / "ci.pub"), "--scope", f"{keydir / 'ci.pub'}:beta:esp32",
        "-o", str(sector))  # fmt: skip
    shown = json.loads(lcm("certs", "show", str(sector), "--json").output)
    ci_id = json.loads(lcm("keys", "show", str(keydir / "ci.pub"), "--json").output)["key_id"]
    assert shown["scopes"] == {ci_id: {"channels": ["beta"], "boards": ["esp32"]}}
    assert (
        f"release     {ci_id} (channel beta, board esp32)"
        in lcm("certs", "show", str(sector)).output
    )
    beta_only = tmp_path / "beta.sector"
    lcm("certs", "build", "--repo", TEST_REPO, "--root-key", str(keydir / "root.pem"),
        "--release-key", str(keydir / "ci.pub"), "--scope", f"{keydir / 'ci.pub'}:beta",
        "-o", str(beta_only))  # fmt: skip
    shown_beta = lcm("certs", "show", str(beta_only)).output
    assert f"release     {ci_id} (channel beta, any board)" in shown_beta, shown_beta
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("print('hi')\n")
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        base = ["release", "publish", str(app_dir), "--repo", TEST_REPO, "--certs", str(sector),
                "--key", str(keydir / "ci.pem"), "--retry-delay", "0"]  # fmt: skip
        res = lcm(*base, "--tag", "v1.0.0", "--board", "esp32", env=env, code=1)
        assert "refusing to sign" in res.output and "a stable release is outside it" in res.output
        res = lcm(*base, "--tag", "v1.0.0", "--prerelease", env=env, code=1)
        assert "a release for any board is outside it" in res.output
        repo = github_client(host).get_repo(TEST_REPO)
        assert list(repo.get_releases()) == []
        lcm(*base, "--tag", "v1.0.0-rc1", "--prerelease", "--board", "esp32", env=env)

        # Someone with the token but outside the publisher uploads a stable release
        # signed by the beta-only key: verify names the scope it broke.
        ci = signing.load_signer(keydir / "ci.pem")
        manifest, pack = make_manifest(TEST_REPO, ci, {"main.py": b"x=1\n"}, seq=2,
                                       version="1.0.0", boards=("esp32",))  # fmt: skip
        rel = repo.create_git_release("v1.0.0", "v1.0.0", "", draft=True)
        for name, data in ((SECTOR_ASSET, sector.read_bytes()), (MANIFEST_ASSET, manifest),
                           (PACK_ASSET, pack)):  # fmt: skip
            rel.upload_asset_from_memory(data, len(data), name)
        rel.update_release("v1.0.0", "", draft=False)
        res = lcm("release", "verify", "--repo", TEST_REPO, "--root", str(keydir / "root.pub"),
                  "--tag", "v1.0.0", env=env, code=1)  # fmt: skip
        assert "manifest.lcm" in res.output and "ScopeError" in res.output
        assert f"release key {ci_id} is limited to channel beta and board esp32" in res.output
