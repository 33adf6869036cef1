"""`lcm host` on the command line: serves until interrupted, refuses bad arguments clearly."""

from __future__ import annotations

import http.client
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from publisher.cli import app

runner = CliRunner()


def lcm_host(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from publisher.cli import main; main()", "host", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})},
        cwd=tmp_path,
    )


def test_serves_until_interrupted_and_token_comes_from_env(tmp_path):
    proc = lcm_host(
        tmp_path,
        "--port", "0", "--data", "store", "--repo", "acme/widget", "--token-env", "MY_TOKEN",
        env={"MY_TOKEN": "s3cret"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "lcm host serving store at http://127.0.0.1:" in first
        port = int(first.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for method, path, token, status in [
            ("GET", "/api/v3/repos/acme/widget", None, 200),
            ("GET", "/api/v3/user", "wrong", 401),
            ("GET", "/api/v3/user", "s3cret", 200),
        ]:
            headers = {"Authorization": "token " + token} if token else {}
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == status, path
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert "s3cret" not in first and "s3cret" not in errors
    assert (tmp_path / "store" / "meta.json").exists()


def test_refuses_half_a_tls_pair():
    result = runner.invoke(app, ["host", "--tls-cert", "cert.pem"])
    assert result.exit_code == 1
    assert "give both --tls-cert and --tls-key" in result.output


def test_refuses_a_connection_limit_below_one(tmp_path):
    result = runner.invoke(
        app, ["host", "--data", str(tmp_path / "d"), "--max-connections-per-ip", "0"]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--max-connections-per-ip'" in result.output


def test_refuses_unreadable_tls_files(tmp_path):
    result = runner.invoke(
        app,
        ["host", "--data", str(tmp_path / "d"), "--port", "0",
         "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k.pem")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot load TLS certificate" in result.output


def test_refuses_a_bad_repo_name(tmp_path):
    result = runner.invoke(
        app, ["host", "--data", str(tmp_path / "d"), "--port", "0", "--repo", "no-slash"]
    )
    assert result.exit_code == 1
    assert "not a repository name: 'no-slash'" in result.output


@pytest.mark.parametrize("meta", ["{not json", "[]", "null", '"x"', '{"format": []}'])
def test_refuses_a_corrupt_data_folder(tmp_path, meta):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.json").write_text(meta)
    result = runner.invoke(app, ["host", "--data", str(tmp_path / "d"), "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "is not a valid host metadata file" in result.output
    assert (tmp_path / "d" / "meta.json").read_text() == meta  # nothing overwritten


def test_refuses_a_port_out_of_range():
    result = runner.invoke(app, ["host", "--port", "70000"])
    assert result.exit_code == 2
    assert "65535" in result.output


def test_mirror_refreshes_at_start_and_on_sighup(tmp_path):
    """`lcm host --mirror` copies the upstream's verified latest release at start, and a
    newer one on SIGHUP (the schedule is an hour away)."""
    import time

    from publisher.demo import make_repo
    from publisher.release.github import Session
    from publisher.release.publish import PublishRequest, publish
    from publisher.signing import load_signer
    from tests.hostserver import TEST_REPO, TEST_TOKEN, running_host

    keys = make_repo(TEST_REPO, tmp_path / "keys")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('app')\n")

    def release(upstream, tag: str) -> None:
        request = PublishRequest(
            app, TEST_REPO, tag, load_signer(keys.release_pem), sector=keys.sector
        )
        publish(Session(upstream.api_url, TEST_TOKEN), request)

    def latest_tag(port: int, want: str) -> str:
        deadline = time.monotonic() + 60
        location = ""
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"/{TEST_REPO}/releases/latest")
            response = conn.getresponse()
            response.read()
            conn.close()
            location = response.getheader("Location") or ""
            if location == f"http://mirror.lan:8080/{TEST_REPO}/releases/tag/{want}":
                return want
            time.sleep(0.1)
        return location

    with running_host(tmp_path / "upstream") as upstream:
        release(upstream, "v1.0.0")
        proc = lcm_host(
            tmp_path,
            "--port", "0", "--data", "mirror", "--mirror-interval", "3600",
            "--mirror", f"{TEST_REPO}={keys.root_pub}", "--upstream", upstream.url,
            "--public-url", "http://mirror.lan:8080",
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            assert proc.stdout.readline().split() == ["public", "URL", "http://mirror.lan:8080"]
            assert latest_tag(port, "v1.0.0") == "v1.0.0"
            release(upstream, "v1.1.0")
            proc.send_signal(signal.SIGHUP)
            assert latest_tag(port, "v1.1.0") == "v1.1.0"
        finally:
            proc.send_signal(signal.SIGINT)
            _out, errors = proc.communicate(timeout=60)
        assert proc.returncode == 0, errors
    # The operator sees what the mirror stored, one timestamped line each, on stderr.
    for tag in ("v1.0.0", "v1.1.0"):
        line = f"Z mirror {TEST_REPO}: {tag} verified and stored"
        assert any(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + line, row)
            for row in errors.splitlines()
        ), errors


def test_a_hostile_upstreams_text_reaches_the_operator_escaped(tmp_path):
    """From outside: an upstream whose beta.tag holds terminal escape sequences. The mirror
    refuses the release, and `lcm host` logs why on stderr without the control bytes."""
    import io

    from publisher.demo import make_repo
    from publisher.release.github import Session
    from publisher.release.publish import PublishRequest, publish
    from publisher.signing import load_signer
    from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host

    keys = make_repo(TEST_REPO, tmp_path / "keys")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text("print('app')\n")
    hostile = b"\x1b]0;pwned\x07\x1b[2Jv9.9.9\n"
    with running_host(tmp_path / "upstream") as upstream:
        request = PublishRequest(
            app_dir, TEST_REPO, "v1.0.0", load_signer(keys.release_pem), sector=keys.sector
        )
        publish(Session(upstream.api_url, TEST_TOKEN), request)
        release = github_client(upstream).get_repo(TEST_REPO).get_release("v1.0.0")
        next(a for a in release.get_assets() if a.name == "beta.tag").delete_asset()
        release.upload_asset_from_memory(io.BytesIO(hostile), len(hostile), "beta.tag")
        proc = lcm_host(
            tmp_path,
            "--port", "0", "--data", "mirror", "--mirror-interval", "3600",
            "--mirror", f"{TEST_REPO}={keys.root_pub}", "--upstream", upstream.url,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = ""
            while "mirror " not in line:  # past the read-only warning: the refusal
                line = proc.stderr.readline()
                assert line, "lcm host ended before logging the refusal"
        finally:
            proc.send_signal(signal.SIGINT)
            _out, errors = proc.communicate(timeout=60)
    errors = line + errors
    assert f"mirror {TEST_REPO}: " in line, errors
    assert "\x1b" not in errors and "\x07" not in errors, repr(errors)
    assert "\\x1b]0;pwned\\x07" in errors, errors


def test_the_host_log_shows_upstream_text_escaped():
    """A mirror's refusal quotes what an upstream sent: its control characters are shown
    as escapes, never sent to the operator's terminal."""
    from publisher.commands.host import _LogFormatter

    record = logging.LogRecord(
        "lcm.host.mirror", logging.WARNING, __file__, 1, "mirror %s: %s", ("a/b", "tag \x1b[2Jx"),
        None,
    )  # fmt: skip
    line = _LogFormatter("%(message)s").format(record)
    assert line == "mirror a/b: tag \\x1b[2Jx"


def test_refuses_a_mirror_without_pins(tmp_path):
    result = runner.invoke(
        app, ["host", "--data", str(tmp_path / "d"), "--port", "0", "--mirror", "acme/widget"]
    )
    assert result.exit_code == 1
    assert "give OWNER/REPO=PINS" in result.output


def test_mirror_pins_are_a_sector_or_root_keys(tmp_path):
    from publisher.commands.host import mirror_spec
    from publisher.demo import make_repo

    keys = make_repo("acme/widget", tmp_path / "keys")
    other = make_repo("acme/widget", tmp_path / "other")
    sector = tmp_path / "widget.sector"
    sector.write_bytes(keys.sector)
    assert mirror_spec(f"acme/widget={sector}").trust.sector == keys.sector
    both = mirror_spec(f"acme/widget={keys.root_pub},{other.root_pub}").trust
    assert both.roots == [keys.root.public_key, other.root.public_key] and both.sector is None
    result = runner.invoke(
        app,
        ["host", "--data", str(tmp_path / "d"), "--port", "0",
         "--mirror", f"acme/widget={tmp_path / 'missing.pub'}"],
    )  # fmt: skip
    assert result.exit_code == 1 and "missing.pub" in result.output


def test_a_second_host_on_the_same_data_folder_is_refused(tmp_path):
    first = lcm_host(tmp_path, "--port", "0", "--data", "store", "--repo", "acme/widget")
    try:
        assert first.stdout is not None
        assert "lcm host serving store" in first.stdout.readline()
        second = runner.invoke(app, ["host", "--port", "0", "--data", str(tmp_path / "store")])
        assert second.exit_code == 1
        assert "another lcm host is serving" in second.output
        assert "one host per data folder" in " ".join(second.output.split())
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    # Once the first has stopped, the folder is free.
    again = lcm_host(tmp_path, "--port", "0", "--data", "store")
    try:
        assert again.stdout is not None
        assert "lcm host serving store" in again.stdout.readline()
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=60)
