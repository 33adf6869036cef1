"""`lcm release publish` refuses what every device would refuse, and never strands a fleet.

Each mistake of issue 12 is made here as a maintainer would make it, against
a real `lcm host` through PyGithub; the deletion test runs a real simulated
device (the manager's code in the MicroPython unix port).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from publisher import sector_format as sf
from publisher.device.simulate import provision, simulate
from publisher.release.errors import ReleaseConflictError
from publisher.release.preflight import check_version_order
from publisher.release.sequence import HostClock, Ticker, next_sequence, parse_http_date
from tests.device.enginekit import ENGINE_HEAP_KB, app_files
from tests.keyfactory import make_manifest, make_sector, new_signer
from tests.test_release_build import esp32_image
from tests.test_release_publish import (
    REPO,
    FastTicker,
    World,
    lcm,
    publish_cli,
    verify_cli,
    world,
    write_app,
)

__all__ = ["world"]  # the fixture, shared with test_release_publish.py
DAY = 86400


@pytest.fixture
def fast_clock(monkeypatch):
    """Skip rule Q2's wait (as test_release_publish.py does); not for the deletion test,
    which shows on the real clock what the wait guarantees."""
    monkeypatch.setattr("publisher.release.publish.Ticker", FastTicker)


def publish_certs(world: World, tag: str, certs: Path | None, *extra: str, code: int = 0):
    """`lcm release publish` of the world's app with another sector (None: no --certs)."""
    args = ["release", "publish", str(world.app), "--repo", REPO, "--tag", tag]
    args += ["--key", str(world.key), "--retry-delay", "0", *extra]
    if certs is not None:
        args += ["--certs", str(certs)]
    return lcm(world, *args, code=code)


def test_a_deleted_installed_release_never_blocks_the_next(world: World, tmp_path) -> None:
    """Issue 12.1: v4.0.0 installed by a device, then deleted on the host's web side;
    v4.0.1 gets a higher sequence and the device installs it."""
    v4 = write_app(tmp_path / "v4", app_files("4.0.0", n=3))
    first = publish_cli(world, "v4.0.0", "--board", "esp32", "--json", source=v4)
    state = tmp_path / "device"
    provision(
        state,
        web_url=world.host.url,
        repo=REPO,
        roots=[world.root.public_key],
        build=tmp_path / "mpy",
        settings={"log_host": "127.0.0.1"},
    )
    heap = f"{ENGINE_HEAP_KB}k"
    assert simulate(state, heap=heap).state.get("app_tag") == "v4.0.0"

    # Pulled as on GitHub's web page: the release and its manifest are gone.
    world.github().get_repo(REPO).get_release("v4.0.0").delete_release()
    fix = write_app(tmp_path / "v401", app_files("4.0.1", n=3))
    second = publish_cli(world, "v4.0.1", "--board", "esp32", "--json", source=fix)
    assert second["sequence"] > first["sequence"]
    status = simulate(state, heap=heap)
    assert status.state.get("app_tag") == "v4.0.1", status.state


def test_sequence_rules_q1_q2() -> None:
    slept: list[float] = []
    now = [100.0]
    ticker = Ticker(lambda: now[0], lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    clock = HostClock(1_800_000_000, ticker)
    # Q1: the clock, or one above the highest the repo shows.
    assert next_sequence(5, clock, None, "v1") == 1_800_000_000
    assert next_sequence(1_800_000_000, clock, None, "v1") == 1_800_000_001
    # Q2: publishing waits for the clock to pass the sequence (not when already past).
    assert clock.wait_past(1_799_999_999) and slept == []
    assert clock.wait_past(1_800_000_001) and sum(slept) == 2
    assert next_sequence(1_800_000_001, clock, None, "v1") == 1_800_000_002
    assert not clock.wait_past(1_900_000_000)  # years ahead: no use waiting, caller warns
    with pytest.raises(ReleaseConflictError, match="overflow 32 bits: release v9 has 4294967295"):
        next_sequence(0xFFFFFFFF, clock, None, "v9")  # named, to be checked
    assert parse_http_date("Fri, 04 Dec 2026 15:48:25 GMT") == 1_796_399_305
    assert parse_http_date("yesterday") is None and parse_http_date(None) is None


@pytest.mark.usefixtures("fast_clock")
def test_unknown_board_needs_new_board(world: World) -> None:
    result = publish_cli(world, "v1.0.0", "--board", "esp33", code=1)
    assert "--board 'esp33' is not a board lcm devices report (esp32, esp8266)" in result.output
    assert "--new-board" in result.output
    # Refused before any upload: no progress display was started (it left an empty line).
    assert result.output.startswith("error: --board"), result.output
    assert world.releases() == []
    out = publish_cli(world, "v1.0.0", "--board", "esp33", "--new-board", "--json")
    assert out["state"] == "published"
    # verify still says so, and with --board what such a device would say.
    result = verify_cli(world)
    assert "warning: the release is for board 'esp33', which no lcm device reports" in result.output
    assert "release is for esp33, not esp32" in verify_cli(world, "--board", "esp32", code=1).output


@pytest.mark.usefixtures("fast_clock")
def test_firmware_for_a_board_that_cannot_install_it(world: World, tmp_path) -> None:
    image = tmp_path / "esp8266.bin"
    image.write_bytes(esp32_image())
    result = publish_cli(
        world, "v1.0.0", "--kind", "firmware", "--board", "esp8266", source=image, code=1
    )
    assert "a firmware release cannot be installed on esp8266 (no OTA partitions" in result.output
    assert world.releases() == []


def _full_download_image() -> bytes:
    """micropython.org's ESP32 .bin: bootloader at 0 (flash 0x1000), partition table at
    0x7000 (flash 0x8000), the app at 0xF000 (flash 0x10000, the factory partition)."""
    bootloader = esp32_image(app=False)
    table = struct.pack("<2sBBII16sI", b"\xaa\x50", 0, 0, 0x10000, 0x1F0000, b"factory", 0)
    data = bytearray(b"\xff" * 0xF000)
    data[: len(bootloader)] = bootloader
    data[0x7000 : 0x7000 + len(table)] = table
    return bytes(data) + esp32_image()


@pytest.mark.usefixtures("fast_clock")
def test_firmware_must_be_an_app_image(world: World, tmp_path) -> None:
    full = tmp_path / "ESP32_GENERIC.bin"
    full.write_bytes(_full_download_image())
    args = ("--kind", "firmware", "--board", "esp32")
    result = publish_cli(world, "v1.0.0", *args, source=full, code=1)
    assert "is a full download image (bootloader and partition table first" in result.output
    assert "its app image starts at byte 0xf000 of the file" in result.output
    bootloader = tmp_path / "bootloader.bin"
    bootloader.write_bytes(esp32_image(app=False))
    result = publish_cli(world, "v1.0.0", *args, source=bootloader, code=1)
    assert "has no ESP-IDF app descriptor (a bootloader image?)" in result.output
    assert world.releases() == []


@pytest.mark.usefixtures("fast_clock")
def test_an_older_sector_than_the_published_one_is_refused(world: World) -> None:
    """Issue 12.3: with sector 2 live, publishing with sector 1 is refused."""
    publish_cli(world, "v1.0.0")
    newer = world.tmp / "certs2.sector"
    newer.write_bytes(make_sector(REPO, [world.root], [world.signer], seq=2))
    publish_certs(world, "v1.1.0", newer)
    result = publish_cli(world, "v1.2.0", code=1)  # --certs is still sector 1
    assert "is older: sequence 1, but v1.1.0 already published sector 2" in result.output
    # Same sequence, different bytes: devices holding the published one refuse it too.
    twin = world.tmp / "twin.sector"
    twin.write_bytes(make_sector(REPO, [world.root], [world.signer], seq=2))
    result = publish_certs(world, "v1.2.0", twin, code=1)
    assert "is a different sector with the same sequence 2" in result.output
    # A newer sector that the published one's roots did not sign is not a rotation.
    stranger = new_signer()
    rogue = world.tmp / "rogue.sector"
    rogue.write_bytes(make_sector(REPO, [stranger], [world.signer], seq=3))
    result = publish_certs(world, "v1.2.0", rogue, code=1)
    assert "is not a valid rotation of sector 2 published in v1.1.0" in result.output
    # Without --certs the newest published sector (2) is used, and all is well.
    publish_certs(world, "v1.2.0", None)
    rows = json.loads(lcm(world, "release", "list", "--repo", REPO, "--json").stdout)
    assert [r["tag"] for r in rows] == ["v1.2.0", "v1.1.0", "v1.0.0"]


@pytest.mark.usefixtures("fast_clock")
def test_expired_and_expiring_sectors(world: World) -> None:
    """Issue 12.4: an expired sector is refused with its date; one expiring soon warns."""
    expired = world.tmp / "expired.sector"
    expired.write_bytes(make_sector(REPO, [world.root], [world.signer], expires=1577836800))
    result = publish_certs(world, "v1.0.0", expired, code=1)
    assert "expired on 2020-01-01 00:00 UTC" in result.output
    assert "1577836800" not in result.output
    soon = world.tmp / "soon.sector"
    expires = int(time.time()) + 10 * DAY
    soon.write_bytes(make_sector(REPO, [world.root], [world.signer], expires=expires))
    result = publish_certs(world, "v1.0.0", soon, "--json")
    (warning,) = [w for w in json.loads(result.stdout)["warnings"] if "expires" in w]
    assert "in 10 day(s)" in warning and time.strftime("%Y-%m-%d", time.gmtime(expires)) in warning


def test_certs_build_refuses_a_past_expiry_and_warns_near_it(world: World) -> None:
    base = ["certs", "build", "--repo", REPO, "--root-key", str(world.tmp / "keys" / "root.pem")]
    base += ["--release-key", str(world.key), "-o", str(world.tmp / "new.sector")]
    result = lcm(world, *base, "--expires", "2020-01-01", code=1)
    assert "--expires 2020-01-01 00:00 UTC is in the past" in result.output
    soon = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 5 * DAY))
    result = lcm(world, *base, "--expires", soon)
    assert "expires on" in result.output and "day(s)" in result.output
    assert sf.parse_sector((world.tmp / "new.sector").read_bytes()).expires


@pytest.mark.usefixtures("fast_clock")
def test_a_version_below_the_newest_needs_downgrade(world: World, tmp_path) -> None:
    """Issue 12.5: forcing (or publishing) an older tag would move every device back."""
    publish_cli(world, "v2.0.0")
    publish_cli(world, "v5.0.0", source=write_app(tmp_path / "v5", {"main.py": b"v5"}))
    result = publish_cli(world, "v2.0.0", "--force", source=tmp_path / "v5", code=1)
    assert "v2.0.0 is older than v5.0.0, already published on the stable channel" in result.output
    assert "--downgrade" in result.output
    assert "is older than v5.0.0" in publish_cli(world, "v4.9.9", code=1).output
    out = publish_cli(world, "v4.9.9", "--downgrade", "--json")
    assert out["state"] == "published"
    # Another channel has its own order: a beta below the stable release is fine.
    publish_cli(world, "v1.0.0-beta.1", "--prerelease")
    check_version_order("5.0.1", "stable", ("5.0.0", "v5.0.0"), False)


@pytest.mark.usefixtures("fast_clock")
def test_dry_run_checks_everything_and_uploads_nothing(world: World) -> None:
    publish_cli(world, "v1.0.0")
    world.host.clear_requests()
    out = publish_cli(world, "v1.1.0", "--dry-run", "--json")
    assert out["state"] == "dry run"
    assert all(v.startswith("would upload") for v in out["assets"].values())
    assert [r.method for r in world.host.requests if r.method != "GET"] == []
    assert [r.tag_name for r in world.releases()] == ["v1.0.0"]
    # A dry run refuses what a real run refuses.
    result = publish_cli(world, "v1.1.0", "--board", "esp33", "--dry-run", code=1)
    assert "--board 'esp33'" in result.output
    text = publish_cli(world, "v1.1.0", "--dry-run").stdout
    assert "dry run: acme/widget v1.1.0" in text and "would upload" in text
    verify_cli(world, "--tag", "v1.0.0")
    # Already published: said so, and nothing is written (not even a missing beta pointer).
    release = world.github().get_repo(REPO).get_release("v1.0.0")
    next(a for a in release.get_assets() if a.name == "beta.tag").delete_asset()
    world.host.clear_requests()
    assert publish_cli(world, "v1.0.0", "--dry-run", "--json")["state"] == "already published"
    assert [r.method for r in world.host.requests if r.method != "GET"] == []


@pytest.mark.usefixtures("fast_clock")
def test_verify_board_checks_what_that_board_checks(world: World, tmp_path) -> None:
    publish_cli(world, "v1.0.0", "--board", "esp32")
    verify_cli(world, "--board", "esp32")
    result = verify_cli(world, "--board", "esp8266", code=1)
    assert "error: manifest.lcm: release is for esp32, not esp8266" in result.output
    image = tmp_path / "micropython.bin"
    image.write_bytes(esp32_image())
    publish_cli(world, "v2.0.0", "--kind", "firmware", "--board", "esp32", source=image)
    verify_cli(world, "--board", "esp32")
    result = verify_cli(world, "--board", "esp32s3", code=1)
    assert "release is for esp32, not esp32s3" in result.output
    # A firmware release for any board (uploaded around the publisher, which needs --board):
    # an ESP8266 cannot install it, and verify --board esp8266 says so.
    manifest, _ = make_manifest(REPO, world.signer, {"firmware.bin": esp32_image()},
                                   seq=int(time.time()), version="3.0.0", boards=(),
                                   kind="firmware")  # fmt: skip
    draft = world.github().get_repo(REPO).create_git_release("v3.0.0", "v3.0.0", "", draft=True)
    for name, data in (("certs.sector", world.sector.read_bytes()), ("manifest.lcm", manifest)):
        draft.upload_asset_from_memory(data, len(data), name)
    draft.update_release("v3.0.0", "", draft=False, make_latest="false")
    result = verify_cli(world, "--tag", "v3.0.0", "--board", "esp8266", code=1)
    assert (
        "manifest.lcm: is a firmware release, which esp8266 boards cannot install" in result.output
    )
