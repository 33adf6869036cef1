"""`lcm keys` and `lcm certs` through the real Typer app."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import trustme
from typer.testing import CliRunner

from publisher.cli import app

REPO = "acme/widget"


def run(*args: str, env: dict[str, str] | None = None, code: int = 0):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def keydir(tmp_path):
    for name in ("root", "root2", "release"):
        run("keys", "new", name, "--dir", str(tmp_path))
    return tmp_path


def test_keys_new_writes_0600_and_shows_id(tmp_path):
    result = run("keys", "new", "k", "--dir", str(tmp_path), "--json")
    info = json.loads(result.stdout)
    # No terminal to ask for a passphrase (found by a new user in a script): said.
    assert "k.pem is not encrypted (no terminal to ask for a passphrase)" in result.stderr
    assert not info["encrypted"]
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    for file in ("k.pem", "k.pub"):
        shown = json.loads(run("keys", "show", str(tmp_path / file), "--json").output)
        assert shown["key_id"] == info["key_id"]
    # Never overwrites a key.
    assert "already exists" in run("keys", "new", "k", "--dir", str(tmp_path), code=1).output


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../k", "a file name in --dir"),
        ("sub/k", "a file name in --dir"),
        (".k", "a file name in --dir"),
        ("k\\x", "a file name in --dir"),
        ("ev\x1b[31mil", "control characters"),
    ],
)
def test_a_key_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name, reason):
    folder = tmp_path / "keys"
    res = run("keys", "new", name, "--dir", str(folder), code=1)
    assert "invalid key name" in res.output and reason in res.output
    assert "\x1b" not in res.output  # the name is shown escaped, never sent to the terminal
    assert not list(tmp_path.rglob("*.p*"))  # nothing written, inside the folder or out


def test_a_long_path_is_printed_on_one_line(tmp_path):
    """Output is never wrapped by the console: a path stays one line to copy or grep, in a
    pipe (80 columns by default) as in a terminal."""
    folder = tmp_path / ("k" * 100)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    lcm = [sys.executable, "-c", "from publisher.cli import main; main()"]
    proc = subprocess.run(
        [*lcm, "keys", "new", "ci", "--dir", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert any(line.endswith(f"{folder / 'ci.pem'} (mode 0600)") for line in lines), lines
    assert any(line.endswith(str(folder / "ci.pub")) for line in lines), lines


def test_encrypted_key_needs_passphrase_from_env(tmp_path):
    env = {"KEYPASS": "correct horse"}
    run("keys", "new", "enc", "--dir", str(tmp_path), "--passphrase-env", "KEYPASS", env=env)
    pem = tmp_path / "enc.pem"
    assert b"ENCRYPTED" in pem.read_bytes()
    run("keys", "show", str(pem), "--passphrase-env", "KEYPASS", env=env)
    assert "encrypted" in run("keys", "show", str(pem), code=1).output
    bad = run("keys", "show", str(pem), "--passphrase-env", "KEYPASS", env={"KEYPASS": "x"}, code=1)
    assert "wrong passphrase" in bad.output
    assert "not set" in run("keys", "show", str(pem), "--passphrase-env", "NOPE", code=1).output


def test_an_empty_or_unset_passphrase_variable_is_an_error(tmp_path):
    """A CI secret that is missing expands to "": taken as no passphrase, the key was
    written unencrypted."""
    for value in ("", None):
        res = run("keys", "new", "root", "--dir", str(tmp_path), "--passphrase-env", "ROOT_PASS",
                  env={"ROOT_PASS": value}, code=1)  # fmt: skip
        assert "ROOT_PASS" in res.output and not list(tmp_path.iterdir())
    run("keys", "new", "enc", "--dir", str(tmp_path), "--passphrase-env", "P", env={"P": "s3"})
    res = run("keys", "show", str(tmp_path / "enc.pem"), "--passphrase-env", "P", env={"P": ""},
              code=1)  # fmt: skip
    assert "environment variable P is empty" in res.output


def test_the_same_root_given_twice_is_refused_up_front(keydir, tmp_path):
    """Counted twice, one root's signature read as "2 of 2 signed, threshold 2 met"."""
    sector = str(tmp_path / "s.sector")
    run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
        "--root-key", str(keydir / "root2.pub"), "--release-key", str(keydir / "release.pub"),
        "-o", sector)  # fmt: skip
    pub, pem = str(keydir / "root.pub"), str(keydir / "root.pem")
    for twice in ([pub, pub], [pem, pub]):
        roots = [arg for root in twice for arg in ("--root", root)]
        res = run("certs", "verify", sector, *roots, "--threshold", "2", code=1)
        assert f"--root {twice[1]}: the same root key" in " ".join(res.output.split())
        assert "met" not in res.output
        res = run("release", "verify", "--repo", REPO, *roots, "--threshold", "2",
                  "--web-url", "http://127.0.0.1:9", code=1)  # fmt: skip
        assert "the same root key" in res.output


def test_an_encrypted_private_key_given_as_a_trusted_root_names_its_public_key(keydir, tmp_path):
    """Commands that pin roots take public keys and have no passphrase option: an encrypted
    .pem there is named with the .pub to give (it used to ask for --passphrase-env, which
    these commands do not have)."""
    env = {"KEYPASS": "correct horse"}
    run("keys", "new", "enc", "--dir", str(tmp_path), "--passphrase-env", "KEYPASS", env=env)
    pem = str(tmp_path / "enc.pem")
    said = f"{pem} is an encrypted private key; a trusted root is given by its public key: "
    sector = str(tmp_path / "certs.sector")
    run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
        "--release-key", str(keydir / "release.pub"), "--web-url", "http://x",
        "-o", sector)  # fmt: skip
    commands = [
        ["release", "verify", "--repo", REPO, "--root", pem, "--web-url", "http://127.0.0.1:9"],
        ["certs", "verify", sector, "--root", pem],
        ["device", "simulate", "--state", str(tmp_path / "dev"), "--repo", REPO,
         "--web-url", "http://127.0.0.1:9", "--root", pem, "--once"],
        ["host", "--data", str(tmp_path / "h"), "--mirror", f"{REPO}={pem}"],
    ]  # fmt: skip
    for args in commands:
        res = run(*args, code=1)
        assert said in " ".join(res.output.split()), (args, res.output)
        assert "--passphrase-env" not in res.output
    assert not (tmp_path / "dev").exists()


def test_keys_show_rejects_garbage(tmp_path):
    junk = tmp_path / "junk.pub"
    junk.write_bytes(b"hello")
    assert "not a public key" in run("keys", "show", str(junk), code=1).output
    assert "cannot read" in run("keys", "show", str(tmp_path / "missing.pub"), code=1).output


def test_certs_build_show_verify(keydir, tmp_path):
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    out = tmp_path / "certs.sector"
    run(
        "certs", "build", "--repo", REPO,
        "--root-key", str(keydir / "root.pem"), "--root-key", str(keydir / "root2.pub"),
        "--release-key", str(keydir / "release.pub"), "--ca", str(ca_pem),
        "--expires", "2099-01-01", "-o", str(out),
    )  # fmt: skip
    info = json.loads(run("certs", "show", str(out), "--json").output)
    assert info["repo"] == REPO and info["sequence"] == 1 and info["threshold"] == 1
    assert len(info["roots"]) == 2 and len(info["signatures"]) == 1
    assert (
        info["cas"][0]["subject"].startswith("O=trustme") or "trustme" in info["cas"][0]["subject"]
    )
    assert info["expires"].startswith("2099-01-01")
    assert "valid" in run("certs", "verify", str(out), "--root", str(keydir / "root.pub")).output
    # Pinned to another key: refused, with the reason.
    res = run("certs", "verify", str(out), "--root", str(keydir / "release.pub"), code=1)
    assert "0 of the trusted roots" in res.output
    res = run(
        "certs", "verify", str(out), "--root", str(keydir / "root.pub"), "--repo", "x/y", code=1
    )
    assert "expected x/y" in res.output


def test_a_file_that_is_not_a_sector_is_named_by_every_certs_command(keydir, tmp_path):
    """`lcm certs show keys/root.pub` (a key, not a sector), and every other certs command
    given such a file as its sector or --previous: the error names the file; no file is
    written or changed."""
    good = tmp_path / "certs.sector"
    run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
        "--release-key", str(keydir / "release.pub"), "-o", str(good))  # fmt: skip
    before = good.read_bytes()
    key = keydir / "root.pub"
    out = tmp_path / "out.sector"
    root, signer = ("--root", str(key)), ("--key", str(keydir / "root.pem"), "--yes")
    for args in [
        ("certs", "show", str(key)),
        ("certs", "show", str(key), "--json"),
        ("certs", "verify", str(key), *root),
        ("certs", "verify", str(good), "--previous", str(key)),
        ("certs", "sign", str(key), *signer),
        ("certs", "sign", str(good), *signer, "--previous", str(key)),
        ("certs", "combine", str(good), str(key), "-o", str(out)),
        ("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
         "--release-key", str(keydir / "release.pub"), "--previous", str(key), "-o", str(out)),
    ]:  # fmt: skip
        res = run(*args, code=1)
        assert f"error: {key}: not a cert sector (bad magic)" in res.output, (args, res.output)
        assert res.stdout == ""
    assert good.read_bytes() == before and not out.exists()


def test_certs_rotation(keydir, tmp_path):
    old = tmp_path / "old.sector"
    new = tmp_path / "new.sector"
    run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
        "--release-key", str(keydir / "release.pub"), "-o", str(old))  # fmt: skip
    # Rotating to root2 without the old root's signature is refused at build time.
    res = run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root2.pem"),
              "--release-key", str(keydir / "release.pub"), "--previous", str(old),
              "-o", str(new), code=1)  # fmt: skip
    assert "--old-root-key" in res.output and not new.exists()
    run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root2.pem"),
        "--release-key", str(keydir / "release.pub"), "--previous", str(old),
        "--old-root-key", str(keydir / "root.pem"), "-o", str(new))  # fmt: skip
    assert json.loads(run("certs", "show", str(new), "--json").output)["sequence"] == 2
    run("certs", "verify", str(new), "--previous", str(old))
    # Going back: the old sector is not signed by the new roots.
    res = run("certs", "verify", str(old), "--previous", str(new), code=1)
    assert "0 of the trusted roots" in res.output
    # Replay of the same sector: not above the trusted sequence.
    assert "not above" in run("certs", "verify", str(new), "--previous", str(new), code=1).output


def test_certs_bad_arguments(keydir, tmp_path):
    out = tmp_path / "s"
    res = run("certs", "build", "--repo", "not-a-repo", "--root-key", str(keydir / "root.pem"),
              "--release-key", str(keydir / "release.pub"), "-o", str(out), code=1)  # fmt: skip
    assert "owner/name" in res.output
    res = run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
              "--threshold", "2", "--release-key", str(keydir / "release.pub"), "-o", str(out),
              code=1)  # fmt: skip
    assert "threshold" in res.output
    res = run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pub"),
              "--release-key", str(keydir / "release.pub"), "-o", str(out), code=1)  # fmt: skip
    assert "no root key to sign with" in res.output and "--unsigned" in res.output
    garbage = tmp_path / "garbage.sector"
    garbage.write_bytes(b"LCMS\x01\x00\x05acme")
    assert "truncated" in run("certs", "show", str(garbage), code=1).output
    res = run("certs", "verify", str(garbage), code=1)
    assert "either --root" in res.output
    assert run("certs", "build", "--repo", REPO, code=2).exit_code == 2


def test_an_output_path_that_cannot_be_written_is_named(keydir, tmp_path):
    """A folder that does not exist, or a file where a folder should be: one error line
    naming the path, exit 1, no traceback, nothing half-written."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run("keys", "new", "root", "--dir", str(blocker / "keys"), code=1)
    assert res.output.startswith(f"error: {blocker / 'keys'}: "), res.output
    assert isinstance(res.exception, SystemExit), res.exception  # an exit, not a traceback
    missing = tmp_path / "no-such-folder" / "certs.sector"
    res = run("certs", "build", "--repo", REPO, "--root-key", str(keydir / "root.pem"),
              "--release-key", str(keydir / "release.pub"), "-o", str(missing), code=1)  # fmt: skip
    assert res.output == f"error: {missing}: No such file or directory\n", res.output
    assert not missing.parent.exists()


def test_brackets_in_what_is_printed_are_text_not_markup(tmp_path):
    """Paths (and tags, certificate names, a host's strings) may hold "[...]": printed as
    they are, where the console once read them as markup (a crash: MarkupError)."""
    res = run("keys", "show", str(tmp_path / "x[/y].pub"), code=1)
    assert (
        res.output
        == f"error: cannot read key file {tmp_path / 'x[/y].pub'}: No such file or directory\n"
    )
    odd = tmp_path / "keys [/odd] [bold]"
    res = run("keys", "new", "root", "--dir", str(odd))
    assert f"public key  {odd / 'root.pub'}" in res.output.replace("\n", ""), res.output
