"""A careless or confused user at the maintainer's CLI: each slip gets a clear error
naming what was wrong, exit 1, and nothing stored is lost (keys above all)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from publisher.cli import app
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host
from tests.test_release_publish import write_app

REPO = "acme/widget"


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for name in ("root", "release", "other"):
        run("keys", "new", name, "--dir", str(tmp_path))
    return tmp_path


def build(keys: Path, *extra: str, code: int = 0) -> str:
    return run(
        "certs", "build", "--repo", REPO, "--root-key", str(keys / "root.pem"),
        "--release-key", str(keys / "release.pub"), *extra, code=code,
    )  # fmt: skip


def test_certs_build_never_writes_over_a_key_or_a_folder(keys: Path) -> None:
    root = (keys / "root.pem").read_bytes()
    out = build(keys, "-o", str(keys / "root.pem"), code=1)
    assert f"-o {keys / 'root.pem'} holds a key: not overwritten" in out
    assert (keys / "root.pem").read_bytes() == root
    out = build(keys, "-o", str(keys), code=1)
    assert f"-o {keys} is a folder" in out
    build(keys, "-o", str(keys / "certs.sector"))
    build(keys, "-o", str(keys / "certs.sector"))  # a sector may be rebuilt in place


def test_a_signature_that_counts_for_nothing_is_refused(keys: Path) -> None:
    build(keys, "-o", str(keys / "certs.sector"))
    previous = ["--previous", str(keys / "certs.sector")]
    out = build(keys, *previous, "--old-root-key", str(keys / "release.pem"), "-o",
                str(keys / "new.sector"), code=1)  # fmt: skip
    assert "--old-root-key" in out and "is not a root of --previous" in out
    out = build(keys, "--old-root-key", str(keys / "root.pem"), "-o", str(keys / "n.sector"),
                code=1)  # fmt: skip
    assert "--old-root-key signs for --previous" in out
    assert not (keys / "new.sector").exists() and not (keys / "n.sector").exists()


def test_a_scope_that_limits_nothing_is_refused_and_an_unknown_board_warned(keys: Path) -> None:
    out = build(keys, "--scope", f"{keys / 'release.pub'}::", "-o", str(keys / "s"), code=1)
    assert "limits nothing" in out
    # A board no device reports: a typo, or a board configured so (the simulator's "unix").
    out = build(keys, "--scope", f"{keys / 'release.pub'}:beta:esp99", "-o", str(keys / "s"))
    assert "warning: --scope limits key" in out and "to board 'esp99', which no lcm" in out


def test_combining_copies_without_signatures_keeps_the_sector_in_use(keys: Path) -> None:
    build(keys, "-o", str(keys / "certs.sector"))
    before = (keys / "certs.sector").read_bytes()
    build(keys, "--unsigned", "--seq", "7", "-o", str(keys / "u.sector"))
    out = run("certs", "combine", str(keys / "u.sector"), "-o", str(keys / "certs.sector"), code=1)
    assert "none of these copies is signed" in out
    assert (keys / "certs.sector").read_bytes() == before


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("/dev/zero", "not a regular file"),  # read without end before
        ("exec:cat /dev/zero", "answered more than 1024 bytes"),  # its output too
    ],
)
def test_a_key_that_never_ends_is_refused(spec: str, needle: str) -> None:
    assert needle in run("keys", "show", spec, code=1)


def test_a_key_name_that_reads_as_a_signer_spec_is_refused(tmp_path: Path) -> None:
    out = run("keys", "new", "exec:touch pwned", "--dir", str(tmp_path), code=1)
    assert "no ':'" in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("url", ["garbage", "", "ftp://127.0.0.1:8200/", "http://h:99999/api/v3"])
def test_an_api_url_that_is_no_http_url_is_named(url: str) -> None:
    out = run("release", "list", "--repo", REPO, "--api-url", url, code=1)
    assert f"--api-url {url!r} is not an http:// or https:// URL" in out


@pytest.mark.parametrize("interval", ["inf", "nan", "0"])
def test_a_mirror_interval_that_cannot_work_is_refused(tmp_path: Path, keys, interval) -> None:
    out = run(
        "host", "--data", str(tmp_path / "d"), "--mirror", f"{REPO}={keys / 'root.pub'}",
        "--mirror-interval", interval, code=1,
    )  # fmt: skip
    assert "--mirror-interval must be above 0 and at most 604800 seconds" in out


def test_a_broker_url_that_cannot_work_is_refused_before_anything_is_published(
    tmp_path: Path, keys: Path
) -> None:
    build(keys, "-o", str(keys / "certs.sector"))
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        app_dir = write_app(tmp_path / "app", {"main.py": b"x = 1\n"})
        out = run(
            "release", "publish", str(app_dir), "--repo", TEST_REPO, "--tag", "v1.0.0",
            "--key", str(keys / "release.pem"), "--certs", str(keys / "certs.sector"),
            "--mqtt", "garbage", code=1, env=env,
        )  # fmt: skip
        assert "the broker URL must be mqtt://HOST[:PORT]" in out
        assert list(github_client(host).get_repo(TEST_REPO).get_releases()) == []
        # A broker away once the release is live: said as such, the release stays.
        out = run(
            "release", "publish", str(app_dir), "--repo", TEST_REPO, "--tag", "v1.0.0",
            "--key", str(keys / "release.pem"), "--certs", str(keys / "certs.sector"),
            "--mqtt", "mqtt://127.0.0.1:1", "--json", code=1, env=env,
        )  # fmt: skip
        assert f"{TEST_REPO} v1.0.0 is published, but its push hint was not sent" in out
        assert f"lcm fleet hint --mqtt mqtt://127.0.0.1:1 --repo {TEST_REPO} v1.0.0" in out
        tags = [r.tag_name for r in github_client(host).get_repo(TEST_REPO).get_releases()]
        assert tags == ["v1.0.0"]


def test_a_demo_heap_that_cannot_work_is_refused_before_the_demo_runs() -> None:
    out = run("demo", "--heap", "abc", code=1)
    assert "--heap must look like 160k or 2m, at least 8k, got 'abc'" in out
    assert "publish" not in out  # nothing ran: the message is the whole output


@pytest.mark.parametrize("reason", ["x" * 5000, "broken\nerror: forged line"])
def test_a_yank_reason_that_would_garble_listings_is_refused(tmp_path: Path, reason: str) -> None:
    with running_host(tmp_path) as host:
        env = {"GITHUB_TOKEN": TEST_TOKEN, "LCM_GITHUB_API": host.api_url}
        out = run("release", "yank", "v1.0.0", "--repo", TEST_REPO, "--reason", reason,
                  code=1, env=env)  # fmt: skip
    assert "--reason must be one line of at most 100 printable characters" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["127.0.0.1:0"], "the port is not a number from 1 to 65535"),
        (["127.0.0.1:99999"], "the port is not a number from 1 to 65535"),
        (["github.com", "--ca-file", "missing.pem"], "--ca-file missing.pem: not a PEM CA"),
    ],
)
def test_certs_cas_names_what_is_wrong(tmp_path: Path, args: list[str], needle: str) -> None:
    out = run("certs", "cas", *args, "-o", str(tmp_path / "cas.pem"), code=1)
    assert needle in out
    assert not (tmp_path / "cas.pem").exists()


def test_small_slips_get_messages_that_name_them(tmp_path: Path, keys: Path) -> None:
    out = build(keys, "--expires", "2200-01-01", "-o", str(keys / "s"), code=1)
    assert "a sector expires by 2106-02-07 at the latest" in out
    assert "--dir /dev/null is not a folder" in run(
        "keys", "new", "k", "--dir", "/dev/null", code=1
    )


def test_a_min_manager_that_is_no_version_is_named(tmp_path: Path, keys: Path) -> None:
    build(keys, "-o", str(keys / "certs.sector"))
    app_dir = write_app(tmp_path / "app", {"main.py": b"x = 1\n"})
    out = run(
        "release", "publish", str(app_dir), "--repo", TEST_REPO, "--tag", "v1.0.0",
        "--key", str(keys / "release.pem"), "--certs", str(keys / "certs.sector"),
        "--min-manager", "abc", "--dry-run", code=1,
    )  # fmt: skip
    assert "--min-manager 'abc' is not a manager version" in out


def test_release_verify_names_a_threshold_above_its_roots_and_a_missing_ca_file(
    keys: Path,
) -> None:
    base = ["release", "verify", "--repo", REPO, "--root", str(keys / "root.pub")]
    web = ["--web-url", "http://127.0.0.1:1"]
    out = run(*base, "--threshold", "5", *web, code=1)
    assert "--threshold 5 is more than the 1 --root given" in out
    # Against an http host a missing CA file was ignored, so a typo went unseen.
    out = run(*base, *web, "--ca-file", str(keys / "missing.pem"), code=1)
    assert "--ca-file: " in out and "missing.pem: no such file" in out
