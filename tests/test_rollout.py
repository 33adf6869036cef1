"""The roll-out document (cert_sector/rollout.py, rules R1-R6) and `lcm release rollout`'s
refusals, against a real `lcm host`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cert_sector.errors import FormatError, RollbackError, SignatureError
from cert_sector.rollout import Rollout, bucket, parse_rollout, takes_part, verify_rollout
from publisher import signing
from publisher.cli import app
from publisher.release.rollout import sign_rollout
from publisher.sector_format import parse_sector
from tests.hostserver import TEST_TOKEN, running_host
from tests.keyfactory import make_sector, new_signer

REPO = "acme/widget"


def test_bucket_is_stable_uniform_and_per_release() -> None:
    ids = [f"240ac4{n:06x}" for n in range(2000)]
    a = [bucket(i, REPO, "v1.0.0") for i in ids]
    assert a == [bucket(i, REPO, "v1.0.0") for i in ids]  # stable
    assert all(0 <= b < 100 for b in a)
    assert max(Counter(b // 10 for b in a).values()) < 260  # about 200 per tenth
    inside_10 = {i for i, b in zip(ids, a, strict=True) if b < 10}
    inside_50 = {i for i, b in zip(ids, a, strict=True) if b < 50}
    assert inside_10 < inside_50  # the same devices stay in as the share grows
    other = {i for i in ids if bucket(i, REPO, "v1.1.0") < 10}
    assert len(inside_10 & other) < len(inside_10) // 2  # another release, another tenth


def test_rules_r1_to_r6() -> None:
    root, key = new_signer(), new_signer()
    sector = parse_sector(make_sector(REPO, [root], [key]))
    doc = Rollout(REPO, "v1.2.0", 7, 3, 10)
    data = sign_rollout(key, doc)
    r = verify_rollout(data, sector, REPO, "v1.2.0", seen_seq=3)
    assert (r.manifest_seq, r.seq, r.share, r.halted) == (7, 3, 10, False)
    assert takes_part(r, "dev") == (bucket("dev", REPO, "v1.2.0") < 10)
    halted = parse_rollout(sign_rollout(key, Rollout(REPO, "v1.2.0", 7, 4, 100, True)))
    assert not takes_part(halted, "dev")  # R6: a halt stops everyone not on it
    with pytest.raises(FormatError, match=r"not v1\.2\.1"):  # R2
        verify_rollout(data, sector, REPO, "v1.2.1")
    with pytest.raises(FormatError, match=r"acme/widget v1\.2\.0, not"):  # R2
        verify_rollout(data, sector, "acme/other", "v1.2.0")
    with pytest.raises(SignatureError, match="unknown key"):  # R3
        verify_rollout(sign_rollout(root, doc), sector, REPO, "v1.2.0")
    forged = bytearray(data)
    forged[-80] ^= 1  # the share byte
    with pytest.raises(SignatureError, match="bad roll-out document signature"):  # R3
        verify_rollout(bytes(forged), sector, REPO, "v1.2.0")
    with pytest.raises(RollbackError, match="below 4"):  # R5
        verify_rollout(data, sector, REPO, "v1.2.0", seen_seq=4)
    for bad, why in [
        (b"XXXX" + data[4:], "bad magic"),
        (data[:4] + b"\x02" + data[5:], "version"),
        (data[:5] + b"\x02" + data[6:], "flags"),
        (data[:40], "truncated"),
        (data[:-72] + b"\x00" + data[-72:], "trailing"),
        (data + b"\x00" * 300, "larger than 256"),
    ]:
        with pytest.raises(FormatError, match=why):  # R1
            parse_rollout(bad)
    with pytest.raises(FormatError, match="over 100"):
        parse_rollout(data[:-73] + b"\x65" + data[-72:])


def keys_sector_app(tmp_path: Path) -> tuple[Path, Any, Path]:
    """A release key (its file and signer), a sector listing it, and an app folder."""
    keys = tmp_path / "keys"
    _, _, root = signing.generate(keys, "root", None)
    key, _, signer = signing.generate(keys, "release", None)
    sector = tmp_path / "certs.sector"
    sector.write_bytes(make_sector(REPO, [root], [signer]))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_bytes(b"x = 1\n")
    return key, signer, sector


def test_rollout_command_refuses_what_is_not_a_widening(tmp_path: Path) -> None:
    key, _, sector = keys_sector_app(tmp_path)
    keys = tmp_path / "keys"
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}

        def lcm(*args: str, code: int = 0) -> str:
            result = CliRunner().invoke(app, list(args), env=env)
            assert result.exit_code == code, result.output
            return result.output

        def publish(tag: str, *extra: str) -> None:
            lcm(
                "release", "publish", str(tmp_path / "app"), "--repo", REPO, "--tag", tag,
                "--key", str(key), "--certs", str(sector), *extra,
            )  # fmt: skip

        publish("v1.0.0")
        rollout = ("release", "rollout", "--repo", REPO, "--key", str(key))
        assert "already out to the whole fleet" in lcm(*rollout, "v1.0.0", "50", code=1)
        (tmp_path / "app" / "main.py").write_bytes(b"x = 2\n")
        publish("v1.1.0", "--rollout", "20")
        assert "only widens: v1.1.0 is at 20 %" in lcm(*rollout, "v1.1.0", "10", code=1)
        assert "not both" in lcm(*rollout, "v1.1.0", "50", "--halt", code=1)
        assert "has no published release v9.0.0" in lcm(*rollout, "v9.0.0", "50", code=1)
        out = json.loads(lcm(*rollout, "v1.1.0", "50", "--json"))
        assert (out["sequence"], out["share"], out["previous"]) == (2, 50, "20 %")
        listed = lcm("release", "list", "--repo", REPO)
        assert "published, roll-out 50 %" in listed and "v1.0.0" in listed, listed
        rows = json.loads(lcm("release", "list", "--repo", REPO, "--json"))
        staged = {r["tag"]: r["rollout"] for r in rows}
        assert staged == {"v1.1.0": {"share": 50, "halted": False, "sequence": 2}, "v1.0.0": None}
        assert "20 % -> 100 %" not in lcm(*rollout, "v1.1.0", "100")
        other_key, _, _ = signing.generate(keys, "stranger", None)
        stranger = ("release", "rollout", "--repo", REPO, "--key", str(other_key))
        assert "is not a release key" in lcm(*stranger, "v1.1.0", "100", code=1)
        halted = lcm(*rollout, "v1.1.0", "--halt")
        assert "-> halted" in halted and "no push hint (no --mqtt or $LCM_MQTT_URL)" in halted
        assert "published, halted at 100 %" in lcm("release", "list", "--repo", REPO)
        assert "is halted: publish a fixed release" in lcm(*rollout, "v1.1.0", "100", code=1)


def test_rollout_names_the_option_that_is_missing(tmp_path: Path) -> None:
    """`--repo` given without `--key` (or the other way round): the error names the one
    that is missing, not both, and nothing reaches the host."""
    key, _, _ = signing.generate(tmp_path / "keys", "release", None)
    with running_host(tmp_path / "host") as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url, "COLUMNS": "200"}
        for given, missing, other in [
            (["--repo", REPO], "--key", "--repo"),
            (["--key", str(key)], "--repo", "--key"),
        ]:
            result = CliRunner().invoke(
                app, ["release", "rollout", "v1.4.0", "100", *given], env=env
            )
            assert result.exit_code == 2, result.output
            assert f"Missing option '{missing}'" in result.output, result.output
            assert f"'{other}'" not in result.output and "are required" not in result.output
        assert host.requests == []


@pytest.mark.parametrize("killed", ["after the delete", "before the delete"])
def test_a_killed_rollout_change_is_finished_by_running_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed: str
) -> None:
    """A halt killed between the delete of rollout.lcm and the rename of its `.next` left
    the release without a document (every new device took it), and the re-run refused:
    the halt in `.next` read as "already halted" (found from outside)."""
    from publisher.release import github as gh
    from publisher.release import rollout as rollout_module

    key, signer, sector = keys_sector_app(tmp_path)
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        cli = CliRunner()
        published = cli.invoke(app, ["release", "publish", str(tmp_path / "app"), "--repo", REPO,
                                     "--tag", "v1.0.0", "--key", str(key), "--certs",
                                     str(sector), "--rollout", "20"], env=env)  # fmt: skip
        assert published.exit_code == 0, published.output
        session = gh.Session(host.api_url, TEST_TOKEN, retry=gh.RetryPolicy(base_delay=0))

        def killed_here(*_: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            if killed == "after the delete":
                m.setattr(rollout_module, "_renamer", lambda asset: killed_here)
            else:
                m.setattr(gh.Session, "call", lambda self, what, fn: killed_here())
            with pytest.raises(KeyboardInterrupt):
                rollout_module.widen(session, REPO, "v1.0.0", signer, None, True)
        assets = {a.name for r in session.releases(session.repo(REPO)) for a in session.assets(r)}
        assert ("rollout.lcm" in assets) == (killed == "before the delete"), assets
        if killed == "after the delete":
            # A re-run of the publish must not put a document of sequence 1 there.
            again = cli.invoke(app, ["release", "publish", str(tmp_path / "app"), "--repo",
                                     REPO, "--tag", "v1.0.0", "--key", str(key), "--certs",
                                     str(sector), "--rollout", "20"], env=env)  # fmt: skip
            assert again.exit_code == 1 and "in the middle of a roll-out change" in again.output
        rerun = cli.invoke(app, ["release", "rollout", "--repo", REPO, "--key", str(key),
                                 "v1.0.0", "--halt"], env=env)  # fmt: skip
        assert rerun.exit_code == 0, rerun.output
        listed = cli.invoke(app, ["release", "list", "--repo", REPO], env=env).output
        assert "published, halted at 20 %" in listed, listed
        assets = {a.name for r in session.releases(session.repo(REPO)) for a in session.assets(r)}
        assert "rollout.lcm" in assets and "rollout.lcm.next" not in assets, assets
