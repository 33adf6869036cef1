"""`lcm device image`: factory images from synthetic firmware, read back with esptool and littlefs.

The firmware is made with esptool's own image classes, laid out like
MicroPython's downloads (ESP32: bootloader at 0x1000, partition table at
0x8000, app at 0x10000; ESP8266: one image flashed at 0x0). Each image is
then read back three ways: `esptool image-info`, littlefs-python, and the
real MicroPython unix port mounting the region with `vfs.VfsLfs2`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from esptool.bin_image import (
    ELFSection,
    ESP32FirmwareImage,
    ESP32S3FirmwareImage,
    ESP8266ROMFirmwareImage,
)

from publisher.device import firmware
from publisher.device import image as img
from publisher.device import settings as device_settings
from publisher.device.simulate import board_code
from publisher.micropython import REPO_ROOT, run_micropython, source_files
from publisher.signing import generate, load_public_key

MiB = 1024 * 1024

# ---------------------------------------------------------------- synthetic firmware


def esp_image(cls: type = ESP32FirmwareImage, payload: bytes = b"lcm-test" * 32) -> bytes:
    """One-segment image saved by esptool (checksum and SHA-256 appended)."""
    image = cls()
    image.entrypoint = 0x40080000
    image.segments = [ELFSection(b".dram0.data", 0x3FFB0000, payload, 0)]
    data = image.save(None)
    assert isinstance(data, bytes)
    return data


def partition_table(rows: list[tuple[str, int, int, int, int]]) -> bytes:
    """ESP-IDF binary partition table: 32-byte entries, then the MD5 entry."""
    body = b"".join(
        struct.pack("<2sBBII16sI", b"\xaa\x50", t, st, off, size, label.encode(), 0)
        for label, t, st, off, size in rows
    )
    return body + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(body).digest()


STOCK_4MIB = [  # ports/esp32/partitions-4MiB.csv
    ("nvs", 1, 0x02, 0x9000, 0x6000),
    ("phy_init", 1, 0x01, 0xF000, 0x1000),
    ("factory", 0, 0x00, 0x10000, 0x1F0000),
    ("vfs", 1, 0x81, 0x200000, 0x200000),
]
STOCK_4MIB_PLUS = STOCK_4MIB[:3]  # partitions-4MiBplus.csv: the rest of the flash is the fs


def esp32_firmware(
    rows: list[tuple[str, int, int, int, int]] = STOCK_4MIB,
    app_cls: type = ESP32FirmwareImage,
    boot_cls: type = ESP32FirmwareImage,
) -> bytes:
    """bootloader | partition table at 0x8000 | app at 0x10000, as flashed at 0x1000."""
    out = bytearray(esp_image(boot_cls, b"bootloader" * 20))
    out += b"\xff" * (0x7000 - len(out))
    out += partition_table(rows)
    out += b"\xff" * (0xF000 - len(out))
    out += esp_image(app_cls, b"micropython-app" * 400)
    return bytes(out)


def esp8266_firmware(frozen_manager: bool = True) -> bytes:
    """An ESP8266 MicroPython download; with `frozen_manager`, built with lcm frozen in
    (mpy-tool's list of frozen module names in the irom0 part)."""
    image = ESP8266ROMFirmwareImage()
    image.entrypoint = 0x40100000
    image.segments = [ELFSection(b".text", 0x40100000, b"esp8266-iram" * 64, 0)]
    _irom, other = image.save(None)
    assert other is not None
    data = bytearray(other)
    data += b"\xff" * (0x9000 - len(data))
    data += b"irom0-text" * 1000  # the irom0 part MicroPython places at 0x9000
    if frozen_manager:
        data += b"lcm_device/__init__.py\x00lcm_device/app.py\x00lcm_device/boot.py\x00"
    return bytes(data)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("app-root-1", "app-root-2", "mgr-root"):
        _pem, pub, _signer = generate(d, name, None)
        out[name] = pub
    return out


@pytest.fixture(scope="module")
def main_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The shim is the ENGINE's lcm_device/main.py; until it lands, a test-only
    # stand-in keeps the check of "/main.py holds the shim's bytes" meaningful.
    if img.MAIN_SHIM.is_file():
        return img.MAIN_SHIM
    path = tmp_path_factory.mktemp("shim") / "main.py"
    path.write_text("# test stand-in for lcm_device/main.py\nimport lcm_device.boot\n")
    return path


def expected_paths() -> set[str]:
    mpys = {
        f"/lcm/m0/{p.with_suffix('.mpy').as_posix()}"
        for p in source_files(("cert_sector", "lcm_device"), REPO_ROOT)
    }
    # /main.py's and /lcm/pick.py's sources are not modules of the slot; lcm.py is what apps
    # `import lcm` from.
    mpys -= {
        "/lcm/m0/lcm_device/main.mpy",
        "/lcm/m0/lcm_device/pick.mpy",
        "/lcm/m0/lcm_device/lcm.mpy",
    }
    # The catalog of the messages the .mpy files name by number (publisher/mpytext.py).
    slot = {"/lcm/m0/lcm.py", "/lcm/m0/lcm_device/catalog.txt"}
    return {"/main.py", "/lcm/pick.py", "/lcm/state/config.json", *slot, *mpys}


def settings(keys: dict[str, Path], **overrides: object) -> device_settings.DeviceSettings:
    base: dict[str, object] = {
        "board": "",
        "repo": "alice/thermo",
        "app_roots": [load_public_key(keys["app-root-1"])],
        "setup_password": "setup-pass-123",
    }
    base.update(overrides)
    return device_settings.DeviceSettings(**base)  # type: ignore[arg-type]


def littlefs_files(region_bytes: bytes, region: firmware.Region) -> dict[str, bytes]:
    fs = img.new_littlefs(region, bytearray(region_bytes))
    fs.mount()
    found = {}
    for top, _dirs, names in fs.walk("/"):
        for name in names:
            path = (top.rstrip("/") + "/" + name) if top != "/" else "/" + name
            with fs.open(path, "rb") as f:
                found[path] = f.read()
    return found


def image_info(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "esptool", "image-info", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


MPY_LIST_FS = """
import vfs, os, hashlib, binascii, sys
class FileBdev:
    # Reads one region of the factory image file, as the board's flash driver would.
    def __init__(self, path, offset, blocks):
        self.f = open(path, "rb")
        self.offset = offset
        self.blocks = blocks
    def readblocks(self, n, buf, off=0):
        self.f.seek(self.offset + n * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=0):
        raise OSError(30)
    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        return 0
path, offset, blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
vfs.mount(vfs.VfsLfs2(FileBdev(path, offset, blocks)), "/fw", readonly=True)
buf = bytearray(512)
def walk(d):
    for name, kind, *_ in os.ilistdir(d):
        p = d + "/" + name
        if kind == 0x4000:
            walk(p)
        else:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(memoryview(buf)[:n])
            print(p[3:], binascii.hexlify(h.digest()).decode())
walk("/fw")
"""


def micropython_listing(image_path: Path, offset: int, blocks: int, tmp: Path) -> dict[str, str]:
    script = tmp / "list_fs.py"
    script.write_text(MPY_LIST_FS)
    proc = run_micropython([str(script), str(image_path), str(offset), str(blocks)], path=[])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(line.split() for line in proc.stdout.splitlines())


# ---------------------------------------------------------------- the layouts


def test_esp32_image_reads_back_everywhere(
    tmp_path: Path, keys: dict[str, Path], main_shim: Path
) -> None:
    fw = esp32_firmware()
    roots = [load_public_key(keys["app-root-1"]), load_public_key(keys["app-root-2"])]
    mgr = load_public_key(keys["mgr-root"])
    s = settings(
        keys,
        app_roots=roots,
        app_threshold=2,
        manager_repo="lcm-org/lcm",
        manager_roots=[mgr],
        channel="beta",
        web_url="http://127.0.0.1:8080/",
        wifi_ssid="Home \u2615 net",
        wifi_password="hunter2hunter2",
    )
    expected = expected_paths()
    factory = img.build_factory_image("esp32", fw, "4MB", s, main_shim)

    # Placement: MicroPython's ESP32 layout, flashed at 0x1000.
    assert factory.flash_offset == 0x1000
    assert factory.firmware.filesystem == firmware.Region(0x200000, 0x200000)
    assert len(factory.data) == 0x400000 - 0x1000
    # merge-bin writes the flash size into the bootloader header (0x20 = 4 MB).
    assert factory.data[:3] == fw[:3] and factory.data[3] >> 4 == 0x2
    assert factory.data[0x7000 : 0x7000 + 0xC0] == fw[0x7000 : 0x7000 + 0xC0]
    assert factory.data[0xF000 : len(fw)] == fw[0xF000:]

    # esptool reads the merged file (bootloader first) and the app at its offset.
    merged = tmp_path / "factory.bin"
    merged.write_bytes(factory.data)
    info = image_info(merged)
    assert "ESP32 Image Header" in info
    assert "(valid)" in info and "invalid" not in info
    app_bin = tmp_path / "app.bin"
    app_bin.write_bytes(factory.data[0xF000 : len(fw)])
    assert "invalid" not in image_info(app_bin)

    # littlefs-python mounts the region: exactly the expected files, byte for byte.
    fs_at = 0x200000 - 0x1000
    files = littlefs_files(factory.data[fs_at : fs_at + 0x200000], factory.firmware.filesystem)
    assert set(files) == expected
    assert files == factory.files
    assert files["/main.py"] == main_shim.read_bytes()
    cfg = json.loads(files["/lcm/state/config.json"])
    assert cfg == {
        "board": "esp32",
        "web_url": "http://127.0.0.1:8080",
        "repo": "alice/thermo",
        "app_roots": [r.hex() for r in roots],
        "app_threshold": 2,
        "manager_repo": "lcm-org/lcm",
        "manager_roots": [mgr.hex()],
        "manager_threshold": 1,
        "channel": "beta",
        "wifi_ssid": "Home \u2615 net",
        "wifi_password": "hunter2hunter2",
        "setup_password": "setup-pass-123",
        # A factory reset keeps these (and the manager's keys), not the owner's Wi-Fi.
        "factory_keys": ["setup_password", "channel", "repo", "app_roots", "app_threshold"],
    }
    assert all(len(k) == 130 and k.startswith("04") for k in cfg["app_roots"])
    mpy = files["/lcm/m0/cert_sector/p256.mpy"]
    assert mpy[:1] == b"M"  # a compiled .mpy, not source

    # The real MicroPython mounts it with VfsLfs2 and reads the same bytes.
    listing = micropython_listing(merged, fs_at, 0x200, tmp_path)
    assert listing == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


def test_esp32_filesystem_placement_rules() -> None:
    part = firmware.Partition
    ota = [
        part("nvs", 1, 2, 0x9000, 0x4000),
        part("otadata", 1, 0, 0xD000, 0x2000),
        part("ota_0", 0, 0x10, 0x10000, 0x180000),
        part("ota_1", 0, 0x11, 0x190000, 0x180000),
    ]
    assert firmware.esp32_filesystem(ota, 4 * MiB) == img.Region(0x310000, 0xF0000)
    both = [*ota, part("factory", 0, 0, 0x310000, 0x10000)]
    with pytest.raises(img.ImageError, match="no 'vfs' partition"):
        firmware.esp32_filesystem(both, 4 * MiB)
    with pytest.raises(img.ImageError, match="ffat"):
        firmware.esp32_filesystem([*ota, part("ffat", 1, 0x81, 0x310000, 0xF0000)], 4 * MiB)


def test_esp32_table_without_vfs_gives_the_rest_of_the_flash(
    keys: dict[str, Path], main_shim: Path
) -> None:
    fw = esp32_firmware(STOCK_4MIB_PLUS)
    factory = img.build_factory_image("esp32", fw, "8MB", settings(keys), main_shim)
    assert factory.firmware.filesystem == firmware.Region(0x200000, 0x600000)
    assert len(factory.data) == 0x800000 - 0x1000


@pytest.mark.parametrize(("flash", "blocks"), [("2MB", 251), ("4MB", 763)])
def test_esp8266_image_reads_back(
    tmp_path: Path, keys: dict[str, Path], main_shim: Path, flash: str, blocks: int
) -> None:
    fw = esp8266_firmware()
    # The manager is frozen into the firmware: the slot holds only the app's `lcm` shim.
    expected = {"/main.py", "/lcm/pick.py", "/lcm/state/config.json", "/lcm/m0/lcm.py"}
    factory = img.build_factory_image("esp8266", fw, flash, settings(keys), main_shim)
    assert factory.firmware.frozen_manager
    region = factory.firmware.filesystem
    # flashbdev.py: (flash_size - 20480) // 4096 - 0x100000 // 4096 blocks from 0x100000.
    assert region.offset == 0x100000 and region.block_count == blocks
    assert factory.flash_offset == 0
    assert factory.data[: len(fw)][8:] == fw[8:]  # merge-bin only rewrites the flash params
    merged = tmp_path / "factory.bin"
    merged.write_bytes(factory.data)
    assert "ESP8266 Image Header" in image_info(merged)
    files = littlefs_files(factory.data[region.offset : region.end], region)
    assert set(files) == expected
    assert json.loads(files["/lcm/state/config.json"])["board"] == "esp8266"
    listing = micropython_listing(merged, region.offset, blocks, tmp_path)
    assert set(listing) == expected


# ---------------------------------------------------------------- refusals


def refusal(keys: dict[str, Path], main_shim: Path, board: str, fw: bytes, **kw: object) -> str:
    flash = str(kw.pop("flash", "4MB"))
    with pytest.raises(firmware.ImageError) as exc:
        img.build_factory_image(board, fw, flash, settings(keys, **kw), main_shim)
    return str(exc.value)


def test_refuses_non_esp_firmware(keys: dict[str, Path], main_shim: Path) -> None:
    msg = refusal(keys, main_shim, "esp32", b"\x7fELF" + b"\0" * 5000)
    assert "not an ESP firmware image" in msg and "0x7f" in msg
    assert "not an ESP firmware image" in refusal(keys, main_shim, "esp8266", b"")


def test_refuses_firmware_for_another_chip(keys: dict[str, Path], main_shim: Path) -> None:
    msg = refusal(keys, main_shim, "esp8266", esp32_firmware())
    assert "for ESP32, not esp8266" in msg
    msg = refusal(keys, main_shim, "esp32", esp8266_firmware())
    assert "no ESP32 image header" in msg and "esp8266" in msg
    msg = refusal(keys, main_shim, "esp32", esp32_firmware(boot_cls=ESP32S3FirmwareImage))
    assert "ESP32-S3, not esp32" in msg


def test_refuses_an_esp8266_firmware_without_the_manager_frozen_in(
    keys: dict[str, Path], main_shim: Path
) -> None:
    # Loaded from .mpy files the manager would need about twice an ESP8266's free heap.
    msg = refusal(keys, main_shim, "esp8266", esp8266_firmware(frozen_manager=False))
    assert "does not have the lcm manager frozen in" in msg and "manifest.py" in msg
    # An ESP32 has the heap for it: its image carries the manager as .mpy files.
    factory = img.build_factory_image("esp32", esp32_firmware(), "4MB", settings(keys), main_shim)
    assert not factory.firmware.frozen_manager
    assert "/lcm/m0/lcm_device/boot.mpy" in factory.files


def test_refuses_corrupt_or_incomplete_firmware(keys: dict[str, Path], main_shim: Path) -> None:
    fw = bytearray(esp32_firmware())
    fw[0x40] ^= 0xFF  # inside the bootloader's segment
    assert "bad" in refusal(keys, main_shim, "esp32", bytes(fw))
    app_only = esp_image(ESP32FirmwareImage)
    assert "no partition table at 0x8000" in refusal(keys, main_shim, "esp32", app_only)
    truncated = esp32_firmware()[:0xF000]
    assert "truncated" in refusal(keys, main_shim, "esp32", truncated)
    table = bytearray(esp32_firmware())
    table[0x7000 + 40] ^= 1  # a partition offset; the MD5 entry no longer matches
    assert "MD5" in refusal(keys, main_shim, "esp32", bytes(table))
    fw8266 = bytearray(esp8266_firmware())
    fw8266[20] ^= 0x55
    assert "bad checksum" in refusal(keys, main_shim, "esp8266", bytes(fw8266))


def test_refuses_bad_settings(keys: dict[str, Path], main_shim: Path) -> None:
    fw = esp32_firmware()
    assert "--repo" in refusal(keys, main_shim, "esp32", fw, repo="no-slash")
    assert "--repo" in refusal(keys, main_shim, "esp32", fw, repo="a/b/c")
    assert "invalid character" in refusal(keys, main_shim, "esp32", fw, repo="a/b c")
    assert "root public key" in refusal(keys, main_shim, "esp32", fw, app_roots=[])
    assert "channel" in refusal(keys, main_shim, "esp32", fw, channel="nightly")
    assert "--web-url" in refusal(keys, main_shim, "esp32", fw, web_url="ftp://x")
    assert "go together" in refusal(keys, main_shim, "esp32", fw, manager_repo="o/lcm")
    long_ssid = "x" * 33
    assert "1 to 32 bytes" in refusal(keys, main_shim, "esp32", fw, wifi_ssid=long_ssid)
    assert "control character" in refusal(keys, main_shim, "esp32", fw, wifi_ssid="a\nb")
    assert "Wi-Fi password" in refusal(
        keys, main_shim, "esp32", fw, wifi_ssid="home", wifi_password="short"
    )
    assert "setup password" in refusal(keys, main_shim, "esp32", fw, setup_password="1234")
    assert "flash size" in refusal(keys, main_shim, "esp32", fw, flash="2MB")
    assert "unknown board" in refusal(keys, main_shim, "esp31", fw)


def test_refuses_oversize_content(keys: dict[str, Path], main_shim: Path) -> None:
    tiny_vfs = [*STOCK_4MIB[:3], ("vfs", 1, 0x81, 0x200000, 0x10000)]
    msg = refusal(keys, main_shim, "esp32", esp32_firmware(tiny_vfs))
    assert "do not fit in the 64 KiB filesystem at 0x200000" in msg
    small_app = [*STOCK_4MIB[:2], ("factory", 0, 0, 0x10000, 0x1000), STOCK_4MIB[3]]
    assert "overruns its app partition" in refusal(
        keys, main_shim, "esp32", esp32_firmware(small_app)
    )
    overlapping = [*STOCK_4MIB[:3], ("vfs", 1, 0x81, 0x10000, 0x200000)]
    assert "overlaps its filesystem partition at 0x10000" in refusal(
        keys, main_shim, "esp32", esp32_firmware(overlapping)
    )
    too_big = [*STOCK_4MIB[:3], ("vfs", 1, 0x81, 0x200000, 0x400000)]
    assert "does not fit a 4 MB flash" in refusal(keys, main_shim, "esp32", esp32_firmware(too_big))
    big = esp8266_firmware() + b"\xff" * 0x100000
    assert "overruns the filesystem at 0x100000" in refusal(keys, main_shim, "esp8266", big)


def test_threshold_and_duplicate_roots(keys: dict[str, Path]) -> None:
    with pytest.raises(firmware.ImageError, match="threshold 3"):
        device_settings.load_roots([keys["app-root-1"], keys["app-root-2"]], 3, "app")
    with pytest.raises(firmware.ImageError, match="twice"):
        device_settings.load_roots([keys["app-root-1"], keys["app-root-1"]], 1, "app")


# ---------------------------------------------------------------- setup network


def test_setup_network_name_and_qr() -> None:
    mac = device_settings.parse_mac("24:0a:c4:12:ab:cd")
    assert device_settings.setup_ssid(mac) == "LCM-12ABCD"
    assert (
        device_settings.wifi_qr_payload("LCM-12ABCD", "p;ss:word")
        == "WIFI:T:WPA;S:LCM-12ABCD;P:p\\;ss\\:word;;"
    )
    qr = device_settings.wifi_qr_text("LCM-12ABCD", "password1")
    assert len(qr.splitlines()) > 10
    with pytest.raises(firmware.ImageError, match="not a MAC"):
        device_settings.parse_mac("24:0a:c4")
    pw = device_settings.generate_setup_password()
    assert (
        device_settings.check_setup_password(pw, "x") == pw
        and pw != device_settings.generate_setup_password()
    )


def test_setup_network_name_matches_the_device() -> None:
    from lcm_device import wifi

    mac = device_settings.parse_mac("24-0A-C4-FE-01-9B")

    class Hal:
        def unique_id(self) -> bytes:
            return mac

    assert device_settings.setup_ssid(mac) == wifi.ap_name(Hal()) == "LCM-FE019B"
    # The password the image stores is one the device accepts as is (not the derived one).
    stored = device_settings.generate_setup_password()
    assert wifi.ap_password(Hal(), {"setup_password": stored}) == stored


DEVICE_READS_CONFIG = """
import json, binascii
from lcm_device import config
from lcm_sim.unix import UnixHal
from cert_sector.keys import check_public_key, key_id_hex
cfg = config.load(UnixHal())
ids = [key_id_hex(check_public_key(binascii.unhexlify(k), "root")) for k in cfg["app_roots"]]
print(json.dumps({"repo": cfg["repo"], "board": cfg["board"], "channel": cfg["channel"],
                  "web_url": cfg["web_url"], "ids": ids, "wifi": cfg["wifi_ssid"]}))
"""


def test_the_device_code_in_the_image_reads_its_config(
    tmp_path: Path, keys: dict[str, Path], main_shim: Path
) -> None:
    """The image's own .mpy files, run by MicroPython, load its config and pinned keys."""
    from cert_sector.keys import key_id_hex

    root = load_public_key(keys["app-root-2"])
    s = settings(keys, app_roots=[root], web_url="http://10.0.0.2:8080", wifi_ssid="Home")
    factory = img.build_factory_image("esp32", esp32_firmware(), "4MB", s, main_shim)
    region = factory.firmware.filesystem
    start = region.offset - factory.flash_offset  # the ESP32's image starts at 0x1000
    board = tmp_path / "board"
    for path, data in littlefs_files(factory.data[start : start + region.size], region).items():
        (board / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (board / path.lstrip("/")).write_bytes(data)
    script = tmp_path / "read_config.py"
    script.write_text(DEVICE_READS_CONFIG)
    # The image's manager slot, and the simulated board it runs on here.
    path = [board / "lcm" / "m0", board_code()]
    proc = run_micropython([str(script)], path=path, extra_env={"LCM_ROOT": str(board)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {
        "repo": "alice/thermo",
        "board": "esp32",
        "channel": "stable",
        "web_url": "http://10.0.0.2:8080",
        "ids": [key_id_hex(root)],
        "wifi": "Home",
    }


def test_config_without_a_repo_leaves_it_to_the_setup_page(keys: dict[str, Path]) -> None:
    s = settings(keys, repo=None, app_roots=[])
    with pytest.raises(firmware.ImageError, match="--repo is needed"):
        device_settings.check_settings(s)
    device_settings.check_settings(s, require_repo=False)
    cfg = json.loads(device_settings.config_json(s))
    assert "repo" not in cfg and "app_roots" not in cfg and cfg["setup_password"]
