"""The GitHub CLI (Debian's `gh`) against `lcm host` in Enterprise mode over HTTPS: every
`gh release` subcommand and `gh auth status`, ten times each, green every time."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import trustme

from tests.hostserver import TEST_REPO, TEST_TOKEN, running_host
from tests.sysdeps import require

ROUNDS = 10


@pytest.fixture
def gh_host(tmp_path: Path):
    """A host over HTTPS (trustme CA) and the environment that points gh at it."""
    gh = require("/usr/bin/gh", "gh")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with running_host(tmp_path, tls=(tmp_path / "cert.pem", tmp_path / "key.pem")) as host:
        hostname = f"localhost:{host.port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "GH_HOST": hostname,
            "GH_ENTERPRISE_TOKEN": TEST_TOKEN,
            "GH_CONFIG_DIR": str(tmp_path / "gh-config"),
            "SSL_CERT_FILE": str(tmp_path / "ca.pem"),
            "GH_NO_UPDATE_NOTIFIER": "1",
            "GH_PROMPT_DISABLED": "1",
            "NO_COLOR": "1",
        }

        def run(*args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [gh, *args],
                env={**env, **extra},
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if check:
                assert done.returncode == 0, f"gh {' '.join(args)}: {done.stdout}{done.stderr}"
            return done

        yield host, run, f"{hostname}/{TEST_REPO}", env


def test_every_release_subcommand_and_auth_status_ten_times(gh_host, tmp_path):
    host, gh, repo, _env = gh_host
    pack = tmp_path / "pack.lcm"
    pack.write_bytes(bytes(range(256)) * 64)
    notes = tmp_path / "SHA256SUMS"
    notes.write_text("sums\n")
    for n in range(ROUNDS):
        tag = f"v1.{n}.0"
        gh(
            "release",
            "create",
            tag,
            str(pack),
            "--draft",
            "--notes",
            "n",
            "--title",
            tag,
            "-R",
            repo,
        )
        listed = gh("release", "list", "-R", repo).stdout.splitlines()
        # This round's draft first, then one draft left by each earlier round.
        assert listed[0].startswith(f"{tag}\tDraft\t{tag}\t") and len(listed) == n + 1
        view = gh("release", "view", tag, "-R", repo).stdout  # a draft, found by tag
        assert f"tag:\t{tag}" in view and "draft:\ttrue" in view
        gh("release", "upload", tag, str(notes), "-R", repo)
        gh("release", "edit", tag, "--draft=false", "-R", repo)
        got = tmp_path / f"got{n}"
        gh("release", "download", tag, "-p", "pack.lcm", "-D", str(got), "-R", repo)
        assert (got / "pack.lcm").read_bytes() == pack.read_bytes()
        gh("release", "delete-asset", tag, "SHA256SUMS", "--yes", "-R", repo)
        # The tag exists now (a published release carries it): a draft may reuse it.
        gh("release", "create", tag, "--verify-tag", "--draft", "--notes", "again", "-R", repo)
        # The published one, and its tag (names only here: gone with the release).
        gh("release", "delete", tag, "--yes", "--cleanup-tag", "-R", repo)
        status = gh("auth", "status")
        assert "Logged in to" in status.stdout + status.stderr
    # What is left: one draft per round, every published release deleted.
    listed = gh("release", "list", "-R", repo).stdout.splitlines()
    assert len(listed) == ROUNDS and all("\tDraft\t" in line for line in listed)
    assert not [r for r in host.requests if r.status >= 500]


def test_verify_tag_refuses_a_tag_no_release_carries(gh_host):
    _host, gh, repo, _env = gh_host
    refused = gh(
        "release", "create", "v9.9.9", "--verify-tag", "--notes", "x", "-R", repo, check=False
    )
    assert refused.returncode != 0
    assert "tag v9.9.9 doesn't exist in the repo" in refused.stderr


class ConnectProxy:
    """An HTTPS proxy (CONNECT) that sends every tunnel to one local port: `gh auth login`
    takes a host name without a port, so gh reaches `lcm-host.test` (port 443) through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.tunnel, args=(client,), daemon=True).start()

    def tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            assert head.startswith(b"CONNECT lcm-host.test:443 "), head[:80]
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
                back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
                back.start()
                pipe(client, upstream)
                back.join(timeout=30)

    def close(self) -> None:
        self.listener.close()


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_auth_login_with_a_token_then_status(tmp_path):
    """`gh auth login --hostname lcm-host.test --with-token`, as against a real GHE host."""
    gh = require("/usr/bin/gh", "gh")
    ca = trustme.CA()
    cert = ca.issue_cert("lcm-host.test")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = (tmp_path / "cert.pem", tmp_path / "key.pem")
    with running_host(tmp_path, tls=tls, public_url="https://lcm-host.test") as host:
        proxy = ConnectProxy(host.port)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "GH_CONFIG_DIR": str(tmp_path / "gh-config"),
            "SSL_CERT_FILE": str(tmp_path / "ca.pem"),
            "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}",
            "GH_NO_UPDATE_NOTIFIER": "1",
            "NO_COLOR": "1",
        }

        def run(*args: str, token: str = "") -> subprocess.CompletedProcess:
            return subprocess.run(
                [gh, *args], input=token, env=env, capture_output=True, text=True, timeout=60
            )

        try:
            wrong = run("auth", "login", "--hostname", "lcm-host.test", "--with-token", token="x\n")
            assert wrong.returncode != 0
            done = run(
                "auth",
                "login",
                "--hostname",
                "lcm-host.test",
                "--with-token",
                token=TEST_TOKEN + "\n",
            )
            assert done.returncode == 0, done.stderr
            status = run("auth", "status", "--hostname", "lcm-host.test")
            assert status.returncode == 0, status.stderr
            assert "Logged in to lcm-host.test as lcm-host" in status.stdout + status.stderr
            listed = run("release", "list", "-R", f"lcm-host.test/{TEST_REPO}")
            assert listed.returncode == 0 and listed.stdout == "", listed.stderr
        finally:
            proxy.close()
