"""Building a release: reading SOURCE, --compile-mpy, firmware checks, manifest, sums."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP8266ROMFirmwareImage

from cert_sector.assets import BETA_POINTER_ASSET, MANIFEST_ASSET, PACK_ASSET, SUMS_ASSET
from publisher import manifest_format as mf
from publisher import sector_format as sf
from publisher.release import build, firmware, mpy, source
from publisher.release.errors import SourceError
from tests.keyfactory import make_sector, new_signer

REPO = "acme/widget"


def esp32_image(payload: bytes = b"\x22" * 64, app: bool = True) -> bytes:
    """A small but genuine ESP32 app image (header, app descriptor, segments, checksum,
    SHA-256); without `app`, no app descriptor, as a bootloader image."""
    image = ESP32FirmwareImage()
    # ESP-IDF links esp_app_desc_t (magic 0xABCD5432 first) at the start of flash data.
    app_desc = (0xABCD5432).to_bytes(4, "little") + b"\0" * 252
    image.segments = [ELFSection(b".flash.appdesc", 0x3F400020, app_desc, 0)] if app else []
    image.segments += [
        ELFSection(b".dram0.data", 0x3FFB0000, b"\x11" * 100, 0),
        ELFSection(b".iram0.text", 0x40080000, payload, 0),
    ]
    image.entrypoint = 0x40080000
    data = image.save(None)
    assert data is not None
    return data


def write_app(root, files):
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def test_collect_walks_sorted_and_skips_droppings(tmp_path):
    app = write_app(
        tmp_path / "app",
        {
            "main.py": b"import app\n",
            "lib/led.py": b"LED = 2\n",
            "lib/Z.py": b"z\n",
            ".git/config": b"secret",
            "lib/__pycache__/led.cpython-311.pyc": b"\0",
            ".DS_Store": b"x",
            "empty.txt": b"",
        },
    )
    files = source.collect(app)
    assert [f.path for f in files] == ["empty.txt", "lib/Z.py", "lib/led.py", "main.py"]
    assert files[2].data == b"LED = 2\n"


def test_symlink_inside_source_is_followed(tmp_path):
    app = write_app(tmp_path / "app", {"main.py": b"m", "data/real.bin": b"123"})
    (app / "alias.bin").symlink_to(app / "data/real.bin")
    (app / "more").symlink_to(app / "data", target_is_directory=True)
    paths = {f.path: f.data for f in source.collect(app)}
    assert paths["alias.bin"] == b"123"
    assert paths["more/real.bin"] == b"123"


def test_symlink_escaping_source_is_refused(tmp_path):
    (tmp_path / "secret.pem").write_bytes(b"PRIVATE")
    app = write_app(tmp_path / "app", {"main.py": b"m"})
    (app / "key.pem").symlink_to(tmp_path / "secret.pem")
    with pytest.raises(SourceError, match=r"'key.pem' is a symlink to .*outside SOURCE"):
        source.collect(app)
    (app / "key.pem").unlink()
    (app / "up").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(SourceError, match="'up' is a symlink"):
        source.collect(app)


def test_directory_link_loop_is_refused(tmp_path):
    app = write_app(tmp_path / "app", {"main.py": b"m", "sub/a.py": b"a"})
    (app / "sub" / "back").symlink_to(app, target_is_directory=True)
    with pytest.raises(SourceError, match="loop"):
        source.collect(app)


def test_missing_empty_and_not_a_folder(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        source.collect(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_bytes(b"x")
    with pytest.raises(SourceError, match="holds no files"):
        source.collect(tmp_path / "empty")
    (tmp_path / "file.py").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a folder"):
        source.collect(tmp_path / "file.py")


def test_too_large_and_too_many(tmp_path):
    app = write_app(tmp_path / "app", {"a.bin": b"x" * 600, "b.bin": b"y" * 600})
    assert len(source.collect(app, max_total=1200)) == 2
    with pytest.raises(SourceError, match=r"too large: more than 1000 bytes in all \(at 'b.bin'\)"):
        source.collect(app, max_total=1000)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(mf.MAX_FILES + 1):
        (many / f"f{i:03}.txt").write_bytes(b"")
    with pytest.raises(SourceError, match="more than 512 files"):
        source.collect(many)


def test_special_files_and_bad_names_are_refused(tmp_path):
    app = write_app(tmp_path / "app", {"main.py": b"m"})
    os.mkfifo(app / "pipe")
    with pytest.raises(SourceError, match="'pipe' is not a regular file"):
        source.collect(app)
    (app / "pipe").unlink()
    (app / "bad\x01name.py").write_bytes(b"x")
    with pytest.raises(SourceError, match="cannot be a release path"):
        source.collect(app)


def test_compile_mpy_keeps_main_and_compiles_modules(tmp_path):
    files = [
        source.SourceFile("main.py", b"import lib.led\n"),
        source.SourceFile("lib/led.py", b"def on():\n    return 'on'\n"),
        source.SourceFile("data.json", b"{}"),
    ]
    out = {f.path: f.data for f in mpy.compile_files(files)}
    assert sorted(out) == ["data.json", "lib/led.mpy", "main.py"]
    assert out["main.py"] == b"import lib.led\n"
    assert out["lib/led.mpy"][:1] == b"M"  # the .mpy header magic
    # The compiled module really runs in the MicroPython unix port.
    app = write_app(tmp_path / "slot", out)
    proc = subprocess.run(
        ["micropython", "-c", "import lib.led; print(lib.led.on())"],
        cwd=app,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MICROPYPATH": str(app)},
    )
    assert proc.stdout.strip() == "on", proc.stderr


def test_compile_mpy_reports_syntax_errors_and_clashes():
    with pytest.raises(SourceError, match=r"mpy-cross failed on 'bad\.py'"):
        mpy.compile_files([source.SourceFile("bad.py", b"def (:\n")])
    with pytest.raises(SourceError, match="both exist"):
        mpy.compile_files([source.SourceFile("a.py", b"x=1"), source.SourceFile("a.mpy", b"M")])


def test_firmware_image_is_checked_with_esptool(tmp_path):
    good = tmp_path / "fw.bin"
    good.write_bytes(esp32_image())
    files = firmware.load_firmware(good, ["esp32"])
    assert [(f.path, f.data) for f in files] == [("firmware.bin", good.read_bytes())]

    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF" + b"\0" * 100)
    with pytest.raises(SourceError, match="not an ESP firmware image: it starts with 0x7f"):
        firmware.load_firmware(elf, ["esp32"])
    with pytest.raises(SourceError, match="chip id 0, not esp32s3"):
        firmware.load_firmware(good, ["esp32s3"])
    with pytest.raises(SourceError, match="needs --board"):
        firmware.load_firmware(good, [])
    with pytest.raises(SourceError, match="not a chip esptool knows"):
        firmware.load_firmware(good, ["atmega"])

    data = bytearray(good.read_bytes())
    data[40] ^= 0xFF  # a byte inside the first segment
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"checksum .* does not match"):
        firmware.load_firmware(corrupt, ["esp32"])
    truncated = tmp_path / "short.bin"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(SourceError, match="not a valid esp32 firmware image"):
        firmware.load_firmware(truncated, ["esp32"])
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        firmware.load_firmware(empty, ["esp32"])
    with pytest.raises(SourceError, match="does not exist"):
        firmware.load_firmware(tmp_path / "none.bin", ["esp32"])


def test_firmware_appended_digest_is_checked(tmp_path):
    data = bytearray(esp32_image())
    data[-1] ^= 0x01  # last byte of the appended SHA-256
    path = tmp_path / "fw.bin"
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="appended SHA-256 does not match"):
        firmware.load_firmware(path, ["esp32"])


def test_version_from_tag():
    assert build.version_from_tag("v1.2.3") == "1.2.3"
    assert build.version_from_tag("v2.0.0-beta.1") == "2.0.0-beta.1"
    for bad in ("1.2.3", "v1.2", "vx", "v1.2.3/../x", ""):
        with pytest.raises(SourceError, match="--tag"):
            build.version_from_tag(bad)


def test_spec_signs_a_manifest_that_verifies_and_compares_content():
    root, key = new_signer(), new_signer()
    sector = sf.verify_sector(
        make_sector(REPO, [root], [key]), sf.PinnedRoots(REPO, [root.public_key])
    )
    files = [source.SourceFile("main.py", b"print(1)\n"), source.SourceFile("a/b.py", b"x = 2\n")]
    spec = build.ReleaseSpec(REPO, "1.0.0", "files", "stable", ["esp32"], "", files)
    assert spec.pack == b"x = 2\nprint(1)\n"
    data = spec.sign(7, 1_700_000_000, key)
    m = mf.verify_manifest(data, sector, REPO)
    assert (m.seq, m.version, m.pack_name, m.pack_size) == (7, "1.0.0", PACK_ASSET, len(spec.pack))
    assert [(f.path, f.offset) for f in m.files] == [("a/b.py", 0), ("main.py", 6)]
    assert spec.same_content(m)
    changed = build.ReleaseSpec(
        REPO,
        "1.0.0",
        "files",
        "stable",
        ["esp32"],
        "",
        [*files[:1], source.SourceFile("a/b.py", b"x = 3\n")],
    )
    assert not changed.same_content(m)
    beta = build.ReleaseSpec(REPO, "1.0.0", "files", "beta", ["esp32"], "", files)
    assert not beta.same_content(m)


def test_release_assets_and_sums_check_with_sha256sum(tmp_path):
    assets = build.release_assets(b"MANIFEST", b"PACK", b"SECTOR", "v1.0.0")
    assert list(assets) == ["pack.lcm", "certs.sector", "SHA256SUMS", "beta.tag", "manifest.lcm"]
    assert assets[BETA_POINTER_ASSET] == b"v1.0.0\n"
    for name, data in assets.items():
        (tmp_path / name).write_bytes(data)
    sums = assets[SUMS_ASSET].decode()
    assert f"{hashlib.sha256(b'MANIFEST').hexdigest()}  {MANIFEST_ASSET}\n" in sums
    assert shutil.which("sha256sum")
    proc = subprocess.run(
        ["sha256sum", "-c", SUMS_ASSET], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "beta.tag" not in build.release_assets(b"M", b"P", b"S", None)


def test_esp8266_firmware_image(tmp_path):
    image = ESP8266ROMFirmwareImage()
    image.segments = [ELFSection(b".data", 0x3FFE8000, b"\x11" * 100, 0)]
    image.entrypoint = 0x40100000
    _, data = image.save(None)
    path = tmp_path / "esp8266.bin"
    path.write_bytes(data)
    assert firmware.load_firmware(path, ["esp8266"])[0].data == data
    with pytest.raises(SourceError, match="not a valid esp32 firmware image"):
        firmware.load_firmware(path, ["esp32"])
    corrupt = bytearray(data)
    corrupt[20] ^= 0x40
    path.write_bytes(bytes(corrupt))
    with pytest.raises(SourceError, match="checksum"):
        firmware.load_firmware(path, ["esp8266"])
