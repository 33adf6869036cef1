"""Signers behind one interface: PEM files, a real PKCS#11 token (SoftHSM), `exec:` commands.

Through the real `lcm` Typer app and a real `lcm host`: each kind of key
signs a cert sector and a release, and each way a key can fail (wrong PIN,
missing object, a token without the key, a command that fails or answers
garbage) is a clear error naming it, with nothing published.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher import signing
from publisher.cli import app
from publisher.exec_signer import recover_public_keys
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.keyfactory import new_signer
from tests.softhsm import EMPTY_TOKEN, SoftHsm, softhsm

# A signing service as an external command: signs the digest on stdin with a PEM key.
SIGNING_SERVICE = """
import os
import sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

mode, pem = sys.argv[1], sys.argv[2]
digest = sys.stdin.buffer.read()
if mode == "fail":
    sys.stderr.write("kms: permission denied for key release\\n")
    sys.exit(3)
if mode == "garbage":
    sys.stdout.buffer.write(b"\\x30" * 64)
    sys.exit(0)
if mode == "short":
    sys.stdout.buffer.write(b"not a signature")
    sys.exit(0)
if mode == "switch":
    # Honest for the two public-key probes, then signs with another key (a
    # service whose key was swapped, or that mixes up its keys).
    count = int(open(pem + ".count").read()) if os.path.exists(pem + ".count") else 0
    open(pem + ".count", "w").write(str(count + 1))
    if count >= 2:
        pem = pem + ".other"
key = serialization.load_pem_private_key(open(pem, "rb").read(), None)
der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
if mode == "raw":
    r, s = utils.decode_dss_signature(der)
    der = r.to_bytes(32, "big") + s.to_bytes(32, "big")
sys.stdout.buffer.write(der)
"""


def lcm(*args: str, env: dict[str, str | None] | None = None, code: int = 0):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return softhsm()


@pytest.fixture
def service(tmp_path: Path):
    """`exec:` specs for a signing service backed by a fresh PEM key, by mode."""
    script = tmp_path / "sign.py"
    script.write_text(SIGNING_SERVICE)
    pem, _, signer = signing.generate(tmp_path / "svc", "svc", None)

    def spec(mode: str = "der") -> str:
        return "exec:" + shlex.join([sys.executable, str(script), mode, str(pem)])

    return spec, signer


def test_pkcs11_key_made_in_the_token_signs(hsm, tmp_path, monkeypatch):
    uri = hsm.uri(hsm.new_label("release"))
    made = json.loads(
        lcm(
            "keys", "new", "rel", "--dir", str(tmp_path), "--pkcs11", uri, "--json", env=hsm.env
        ).output
    )
    assert made["private"] == uri and (tmp_path / "rel.pub").exists()
    shown = json.loads(lcm("keys", "show", uri, "--json", env=hsm.env).output)
    assert shown["key_id"] == made["key_id"]
    from_pub = json.loads(lcm("keys", "show", str(tmp_path / "rel.pub"), "--json").output)
    assert from_pub == shown
    # The key signs, r‖s checked against its public key (on CPython and by the device's code).
    for name, value in hsm.env.items():
        monkeypatch.setenv(name, value)
    signer = signing.open_signer(uri)
    sig = signer.sign(b"body")
    assert signing.verify_with_cryptography(signer.public_key, b"body", sig)
    # A second key under the same label is refused (the first stays usable).
    res = lcm("keys", "new", "--pkcs11", uri, env=hsm.env, code=1)
    assert "already exists" in res.output


def test_a_bad_key_name_is_refused_before_the_token_makes_a_key(hsm, tmp_path):
    uri = hsm.uri(hsm.new_label("named"))
    res = lcm("keys", "new", "../out", "--dir", str(tmp_path / "k"), "--pkcs11", uri,
              env=hsm.env, code=1)  # fmt: skip
    assert "invalid key name '../out'" in res.output
    assert not (tmp_path / "out.pub").exists()
    # No key was made under the label: making one now works.
    lcm("keys", "new", "named", "--dir", str(tmp_path / "k"), "--pkcs11", uri, env=hsm.env)


def test_pkcs11_failures_are_named(hsm, tmp_path):
    uri = hsm.uri(hsm.new_label("k"))
    lcm("keys", "new", "--pkcs11", uri, env=hsm.env)
    wrong_pin = {**hsm.env, "LCM_PKCS11_PIN": "0000"}
    assert "wrong PIN" in lcm("keys", "show", uri, env=wrong_pin, code=1).output
    missing = hsm.uri("no-such-key")
    assert "no EC private key" in lcm("keys", "show", missing, env=hsm.env, code=1).output
    empty = hsm.uri("k", token=EMPTY_TOKEN)
    assert "no EC private key" in lcm("keys", "show", empty, env=hsm.env, code=1).output
    res = lcm("keys", "show", "pkcs11:token=nope;object=k", env=hsm.env, code=1)
    assert "no such token" in res.output
    for with_pin in (uri + "?pin-value=1234", uri + ";pin-value=1234"):  # query or path
        res = lcm("keys", "show", with_pin, env=hsm.env, code=1)
        assert "PIN never goes in the key's name" in res.output
        assert "LCM_PKCS11_PIN" in " ".join(res.output.split())
        assert "1234" not in res.output  # the error does not repeat the PIN it refuses
    no_module = {**hsm.env, "LCM_PKCS11_MODULE": None}
    assert "LCM_PKCS11_MODULE" in lcm("keys", "show", uri, env=no_module, code=1).output
    no_pin = {**hsm.env, "LCM_PKCS11_PIN": None}
    assert "LCM_PKCS11_PIN" in lcm("keys", "show", uri, env=no_pin, code=1).output
    res = lcm("keys", "show", "pkcs11:token=lcm;colour=red", env=hsm.env, code=1)
    assert "unsupported attribute 'colour'" in res.output


def test_exec_signer_der_and_raw(service):
    spec, signer = service
    for mode in ("der", "raw"):
        shown = json.loads(lcm("keys", "show", spec(mode), "--json").output)
        assert shown["key_id"] == signer.key_id.hex()
        sig = signing.open_signer(spec(mode)).sign(b"manifest body")
        assert signing.verify_with_cryptography(signer.public_key, b"manifest body", sig)


def test_exec_signer_failures_are_named(service):
    spec, _ = service
    res = lcm("keys", "show", spec("fail"), code=1)
    assert "the command failed (exit status 3): kms: permission denied" in res.output
    res = lcm("keys", "show", spec("short"), code=1)
    assert "neither a 64-byte r‖s nor a DER ECDSA signature" in res.output
    res = lcm("keys", "show", spec("garbage"), code=1)
    assert "not signatures by one P-256 key" in res.output
    res = lcm("keys", "show", "exec:/no/such/signer --key x", code=1)
    assert "command '/no/such/signer' not found" in res.output
    assert "no command" in lcm("keys", "show", "exec:", code=1).output


def test_public_key_recovery_finds_the_signing_key():
    signer = new_signer()
    sig = signer.sign(b"x")
    keys = recover_public_keys(hashlib.sha256(b"x").digest(), sig)
    assert signer.public_key in keys and len(keys) <= 4
    assert recover_public_keys(hashlib.sha256(b"x").digest(), b"\0" * 64) == []


def test_every_signer_kind_builds_a_sector_and_publishes(hsm, service, tmp_path):
    """Roots in a file, a token and a service sign one 3-of-3 sector; a token key publishes."""
    spec, _ = service
    root_pem, _, _ = signing.generate(tmp_path / "keys", "root", None)
    root_token = hsm.uri(hsm.new_label("root"))
    release_token = hsm.uri(hsm.new_label("release"))
    lcm("keys", "new", "--pkcs11", root_token, env=hsm.env)
    lcm("keys", "new", "release", "--dir", str(tmp_path / "keys"), "--pkcs11", release_token,
        env=hsm.env)  # fmt: skip
    sector = tmp_path / "certs.sector"
    lcm("certs", "build", "--repo", TEST_REPO, "--threshold", "3",
        "--root-key", str(root_pem), "--root-key", root_token, "--root-key", spec("raw"),
        "--release-key", str(tmp_path / "keys" / "release.pub"), "-o", str(sector),
        env=hsm.env)  # fmt: skip
    parsed = sf.parse_sector(sector.read_bytes())
    assert len(parsed.signatures) == 3
    sf.verify_sector(sector.read_bytes(), sf.PinnedRoots(TEST_REPO, parsed.roots, 3))

    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("print('hi')\n")
    with running_host(tmp_path) as host:
        env = {**hsm.env, "GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        base = ["release", "publish", str(app_dir), "--repo", TEST_REPO, "--certs", str(sector),
                "--retry-delay", "0"]  # fmt: skip
        # A failing key: refused before anything reaches the host.
        bad = {**env, "LCM_PKCS11_PIN": "0000"}
        res = lcm(*base, "--tag", "v1.0.0", "--key", release_token, env=bad, code=1)
        assert "wrong PIN" in res.output
        res = lcm(*base, "--tag", "v1.0.0", "--key", spec("fail"), env=env, code=1)
        assert "the command failed" in res.output
        repo = github_client(host).get_repo(TEST_REPO)
        assert list(repo.get_releases()) == []
        lcm(*base, "--tag", "v1.0.0", "--key", release_token, env=env)
        release = repo.get_release("v1.0.0")
        data = next(a for a in release.get_assets() if a.name == "manifest.lcm")
        blob = requests.get(data.browser_download_url, timeout=10).content
        m = mf.verify_manifest(blob, parsed, TEST_REPO)
        assert m.version == "1.0.0" and m.key_id == sf.key_id(parsed.release_keys[0])


def test_openssl_as_a_signing_service(tmp_path):
    """docs/keys.md's example: `openssl pkeyutl -sign` behind exec: is a signer."""
    pem, _, signer = signing.generate(tmp_path, "release", None)
    spec = "exec:" + shlex.join(["openssl", "pkeyutl", "-sign", "-inkey", str(pem)])
    assert json.loads(lcm("keys", "show", spec, "--json").output)["key_id"] == signer.key_id.hex()
    sig = signing.open_signer(spec).sign(b"body")
    assert signing.verify_with_cryptography(signer.public_key, b"body", sig)


def test_a_service_that_signs_with_another_key_publishes_nothing(service, tmp_path):
    """The probes pass, the release's signature is by another key: caught before upload."""
    spec, signer = service
    pem = Path(shlex.split(spec("der").removeprefix("exec:"))[-1])
    other, _, _ = signing.generate(tmp_path / "other", "other", None)
    Path(f"{pem}.other").write_bytes(other.read_bytes())
    root, _, _ = signing.generate(tmp_path / "keys", "root", None)
    sector = tmp_path / "certs.sector"
    lcm("certs", "build", "--repo", TEST_REPO, "--root-key", str(root),
        "--release-key", spec("der"), "-o", str(sector))  # fmt: skip
    assert sf.parse_sector(sector.read_bytes()).release_keys == [signer.public_key]
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("print('hi')\n")
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        res = lcm("release", "publish", str(app_dir), "--repo", TEST_REPO, "--tag", "v1.0.0",
                  "--certs", str(sector), "--key", spec("switch"), env=env, code=1)  # fmt: skip
        assert "returned a signature that does not verify against its public key" in res.output
        assert list(github_client(host).get_repo(TEST_REPO).get_releases()) == []


def test_a_signing_command_that_leaves_a_child_holding_its_output_cannot_hold_lcm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command exits (status 3) but leaves a background child with its stdout open (an
    agent it started): reading the output to its end waited for that child."""
    import time

    from publisher import exec_signer

    monkeypatch.setattr(exec_signer, "EXEC_TIMEOUT", 1)
    started = time.monotonic()
    with pytest.raises(signing.SigningKeyError, match=r"exit status 3"):
        signing.open_signer("exec:sh -c 'sleep 30 & exit 3'")
    assert time.monotonic() - started < 10  # one second and the kill, not the child's 30


def _token_keypair(
    label: str, curve: str = "secp256r1", count: int = 1, ids: bool = False, sign: bool = True
) -> None:
    """Keys made in the test token outside lcm, as another tool would make them."""
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    from tests.softhsm import MODULE, PIN, TOKEN

    token = pkcs11.lib(MODULE).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        for n in range(count):
            params.generate_keypair(
                store=True,
                label=label,
                id=bytes([n + 1]) if ids else None,
                private_template={Attribute.SIGN: sign},
            )


def _lcm_process(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`lcm` in a process of its own: what a user sees on stderr, and how it takes signals."""
    return subprocess.Popen(
        [sys.executable, "-c", "from publisher.cli import main; main()", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_a_token_key_on_another_curve_is_named(hsm, tmp_path):
    """A secp256k1 point has P-256's length: `keys show` printed a key id, signing crashed."""
    label = hsm.new_label("k1")
    uri = hsm.uri(label)
    _token_keypair(label, curve="secp256k1")
    assert "not a P-256" in lcm("keys", "show", uri, env=hsm.env, code=1).output
    res = lcm("certs", "build", "--unsigned", "--repo", TEST_REPO, "--root-key", uri,
              "--release-key", uri, "-o", str(tmp_path / "s"), env=hsm.env, code=1)  # fmt: skip
    assert "not a P-256" in res.output and not (tmp_path / "s").exists()


def test_a_token_key_that_may_not_sign_is_named(hsm, tmp_path):
    """CKA_SIGN false (a key-management slot): signing crashed with an AttributeError."""
    label = hsm.new_label("nosign")
    _token_keypair(label, sign=False)
    res = lcm("keys", "show", hsm.uri(label), env=hsm.env, code=1)
    assert "does not allow this key to sign" in res.output


def test_two_token_keys_under_one_label_are_one_error_with_a_hint_that_helps(hsm):
    label = hsm.new_label("dup")
    _token_keypair(label, count=2)
    proc = _lcm_process("keys", "show", hsm.uri(label), env=hsm.env)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 1, output
    # One line: the search was left open past the session, and its cleanup printed a traceback.
    assert output.strip().count("\n") == 0 and "Traceback" not in output, output
    assert "2 private keys match" in output and "cannot tell them apart" in output
    # Keys with distinct ids: the hint names them.
    with_ids = hsm.new_label("dup-ids")
    _token_keypair(with_ids, count=2, ids=True)
    res = lcm("keys", "show", hsm.uri(with_ids), env=hsm.env, code=1)
    assert "add id= to the URI (their ids: %01, %02)" in " ".join(res.output.split())
    lcm("keys", "show", hsm.uri(with_ids) + ";id=%02", env=hsm.env)


def test_no_error_repeats_a_pin(hsm):
    """Another unsupported attribute before the PIN used to print the whole URI."""
    uri = hsm.uri("release")
    for with_pin in (
        uri + "?module-name=softhsm2&pin-value=SECRET-4711",
        uri + ";pin=SECRET-4711",
        "pkcs11:colour=red;object=x?pin-source=file:SECRET-4711",
        "pkcs11:pin-value=SECRET-4711;token=x",  # first: after "pkcs11:", not a separator
        "pkcs11:PIN-value=SECRET-4711",
    ):
        res = lcm("keys", "show", with_pin, env=hsm.env, code=1)
        assert "SECRET-4711" not in res.output and "PIN never goes" in res.output


def test_a_dir_that_is_a_file_is_refused_before_the_token_makes_a_key(hsm, tmp_path):
    uri = hsm.uri(hsm.new_label("rel"))
    (tmp_path / "notadir").write_text("")
    res = lcm("keys", "new", "rel", "--dir", str(tmp_path / "notadir"), "--pkcs11", uri,
              env=hsm.env, code=1)  # fmt: skip
    assert "is not a folder" in res.output
    assert "no EC private key" in lcm("keys", "show", uri, env=hsm.env, code=1).output


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_signing_command_that_exits_leaving_an_agent_is_not_waited_for(tmp_path, monkeypatch):
    """It signs at once but leaves a child holding its stdout: lcm waited for the whole
    timeout, twice for the key's probes (600 s with the real one)."""
    import time

    from publisher import exec_signer

    monkeypatch.setattr(exec_signer, "EXEC_TIMEOUT", 15)
    pem, _, signer = signing.generate(tmp_path, "release", None)
    pids = tmp_path / "agent.pids"
    script = f"sleep 60 & echo $! >> {pids}; exec openssl pkeyutl -sign -inkey {pem}"
    started = time.monotonic()
    opened = signing.open_signer("exec:" + shlex.join(["sh", "-c", script]))
    assert time.monotonic() - started < 10  # a short grace each, not the 15 s timeout
    assert opened.public_key == signer.public_key
    agents = [int(pid) for pid in pids.read_text().split()]
    assert len(agents) == 2 and not any(_alive(pid) for pid in agents)


def test_ctrl_c_stops_lcm_and_its_signing_command(tmp_path):
    """The command runs in a session of its own (the terminal's SIGINT misses it): lcm kept
    waiting for it, and a second Ctrl-C left it running."""
    import signal
    import time

    pidfile = tmp_path / "signer.pid"
    spec = "exec:" + shlex.join(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 555"])
    proc = _lcm_process("keys", "show", spec, env={})
    try:
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.1)
        signer = int(pidfile.read_text())
        proc.send_signal(signal.SIGINT)
        proc.wait(8)
        time.sleep(0.2)
        assert not _alive(signer)
    finally:
        proc.kill()
        proc.wait()
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
