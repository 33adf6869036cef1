"""Factory images: stock MicroPython firmware + a LittleFS filesystem holding lcm.

`lcm device image` validates the firmware with esptool's own image parser,
builds the filesystem the board's MicroPython will mount at `/` (same block
size, block count and littlefs settings as the port), and merges both with
esptool's merge-bin into one file that is flashed at the firmware's offset.

Where the filesystem goes (see docs/hobbyist.md for the sources):

- ESP32: MicroPython's download is bootloader (0x1000) + partition table
  (0x8000) + app (0x10000). The filesystem is the partition table's `vfs`
  data partition; a table that ends after the app (`partitions-4MiBplus.csv`)
  leaves the rest of the flash to the filesystem.
- ESP8266: the firmware is flashed at 0x0 and the filesystem starts at
  0x100000 (`esp8266_2MiB.ld`), running to the flash end minus the 20 KiB of
  SDK parameters (`modules/flashbdev.py`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cert_sector.encoding import check_repo
from cert_sector.errors import FormatError
from publisher.errors import PublisherError
from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, build_mpy, source_files
from publisher.signing import load_public_key

KiB = 1024
MiB = 1024 * KiB
# A MicroPython firmware is 0.6-2 MiB; anything past this is not one.
MAX_FIRMWARE_SIZE = 8 * MiB
BLOCK_SIZE = 4096
# littlefs settings of MicroPython's VfsLfs2 defaults (extmod/vfs_lfsx.c):
# readsize=32, progsize=32, lookahead=32, cache = min(block, 4 * max(read, prog)).
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_CACHE_SIZE = 128
LFS_BLOCK_CYCLES = 100
# On-disk version 2.0: readable by every littlefs v2 MicroPython has shipped.
LFS_DISK_VERSION = 0x00020000

MAIN_SHIM = REPO_ROOT / "lcm_device" / "main.py"
MANAGER_SLOT = "/lcm/m0"
CONFIG_PATH = "/lcm/state/config.json"
DEFAULT_WEB_URL = "https://github.com"
CHANNELS = ("stable", "beta")
SETUP_SSID_PREFIX = "LCM-"
# No 0/O/1/l/I: the password is typed from a label or a terminal.
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GENERATED_PASSWORD_LENGTH = 16

# ESP-IDF partition table (components/partition_table/gen_esp32part.py).
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_SIZE = 0xC00
_PARTITION_ENTRY = struct.Struct("<2sBBII16sI")
_PARTITION_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb"
_TYPE_APP = 0x00
_TYPE_DATA = 0x01
_SUBTYPE_FACTORY = 0x00
_SUBTYPE_OTA_0 = 0x10

# ESP8266: filesystem from 0x100000 to the flash end minus the SDK's 20 KiB.
ESP8266_FS_START = 0x100000
ESP8266_SDK_RESERVED = 20 * KiB
# ESP-IDF images always carry this in the extended header's wp_pin byte.
_ESP32_WP_PIN_DISABLED = 0xEE
_IMAGE_MAGIC = 0xE9


class ImageError(PublisherError):
    """A firmware, option or content that cannot make a factory image."""


@dataclass(frozen=True)
class Board:
    name: str
    chip: str  # esptool's chip name
    firmware_offset: int  # where MicroPython's download is flashed
    flash_sizes: tuple[str, ...]


BOARDS = {
    "esp32": Board("esp32", "esp32", 0x1000, ("4MB", "8MB", "16MB")),
    "esp8266": Board("esp8266", "esp8266", 0x0, ("2MB", "4MB", "8MB", "16MB")),
}


@dataclass(frozen=True)
class Region:
    """A range of flash; `offset` is absolute (from flash address 0)."""

    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def block_count(self) -> int:
        return self.size // BLOCK_SIZE


@dataclass(frozen=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int


@dataclass(frozen=True)
class FirmwareInfo:
    board: Board
    flash_size: int
    size: int  # bytes of the firmware file
    app: Region  # where the application image sits
    filesystem: Region
    partitions: tuple[Partition, ...] = ()


@dataclass
class DeviceSettings:
    """Everything that goes into /lcm/state/config.json."""

    board: str
    repo: str | None  # None: set on the setup page (lcm device install without --repo)
    app_roots: list[bytes]
    app_threshold: int = 1
    manager_repo: str | None = None
    manager_roots: list[bytes] = field(default_factory=list)
    manager_threshold: int = 1
    channel: str = "stable"
    web_url: str = DEFAULT_WEB_URL
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    setup_password: str = ""


@dataclass(frozen=True)
class FactoryImage:
    data: bytes
    firmware: FirmwareInfo
    files: dict[str, bytes]
    settings: DeviceSettings

    @property
    def flash_offset(self) -> int:
        return self.firmware.board.firmware_offset


# ---------------------------------------------------------------- boards / sizes


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ImageError(
            f"unknown board {name!r}: choose one of {', '.join(sorted(BOARDS))}"
        ) from None


def parse_flash_size(board: Board, text: str) -> int:
    """'4MB' -> 4 MiB, for the sizes the board's MicroPython builds support."""
    norm = text.strip().upper().replace("MIB", "MB")
    if norm not in board.flash_sizes:
        raise ImageError(
            f"flash size {text!r} is not supported for {board.name}: "
            f"use one of {', '.join(board.flash_sizes)}"
        )
    return int(norm[:-2]) * MiB


# ---------------------------------------------------------------- firmware checks


def read_firmware(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FIRMWARE_SIZE:
            raise ImageError(
                f"{path} is {size} bytes, more than a MicroPython firmware "
                f"({MAX_FIRMWARE_SIZE} bytes at most)"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read firmware {path}: {exc.strerror}") from None


def _chip_name_for_id(chip_id: int) -> str:
    from esptool.targets import ROM_LIST

    for rom in ROM_LIST:
        if getattr(rom, "IMAGE_CHIP_ID", None) == chip_id and rom.CHIP_NAME != "ESP8266":
            return str(rom.CHIP_NAME)
    return f"unknown chip id {chip_id}"


def _load_image(chip: str, data: bytes, where: str) -> Any:
    """Parse one ESP image with esptool and check its checksum (and SHA-256 if appended)."""
    from esptool.bin_image import ESP8266ROMFirmwareImage, LoadFirmwareImage

    if not data or data[0] != _IMAGE_MAGIC:
        magic = f"{data[0]:#04x}" if data else "nothing"
        raise ImageError(
            f"{where} is not an ESP firmware image (magic byte {magic}, expected {_IMAGE_MAGIC:#x})"
        )
    try:
        image = LoadFirmwareImage(chip, data)
    except Exception as exc:  # esptool raises FatalError, RuntimeError, struct.error
        raise ImageError(f"{where} is not a valid {chip} image: {_esptool_message(exc)}") from None
    if chip == "esp8266" and not isinstance(image, ESP8266ROMFirmwareImage):
        raise ImageError(f"{where} is not a flash-at-0x0 ESP8266 image (v1 header)")
    if image.checksum != image.calculate_checksum():
        raise ImageError(f"{where} has a bad checksum: the file is corrupt or truncated")
    if chip != "esp8266" and image.append_digest and image.stored_digest != image.calc_digest:
        raise ImageError(f"{where} has a bad SHA-256 digest: the file is corrupt or truncated")
    return image


def _esptool_message(exc: Exception) -> str:
    # Some esptool errors carry printf-style (format, value) args.
    args = exc.args
    if len(args) > 1 and isinstance(args[0], str):
        try:
            return args[0] % args[1:]
        except TypeError:
            pass
    return str(exc)


def esp32_family_chip_id(data: bytes) -> int | None:
    """The chip id if `data` starts with an ESP32-family (extended header) image."""
    if len(data) < 24 or data[0] != _IMAGE_MAGIC:
        return None
    wp_pin, chip_id, append_digest = data[8], data[12] | (data[13] << 8), data[23]
    if wp_pin == _ESP32_WP_PIN_DISABLED and append_digest in (0, 1):
        return chip_id
    return None


def parse_partition_table(data: bytes) -> tuple[Partition, ...]:
    """The entries of an ESP-IDF binary partition table (MD5 checked when present)."""
    parts: list[Partition] = []
    for pos in range(0, min(len(data), PARTITION_TABLE_SIZE), _PARTITION_ENTRY.size):
        entry = data[pos : pos + _PARTITION_ENTRY.size]
        if len(entry) < _PARTITION_ENTRY.size or entry == b"\xff" * _PARTITION_ENTRY.size:
            break
        if entry[:2] == _MD5_MAGIC:
            if hashlib.md5(data[:pos]).digest() != entry[16:]:
                raise ImageError("the firmware's partition table fails its MD5 check")
            break
        magic, ptype, subtype, offset, size, label, _flags = _PARTITION_ENTRY.unpack(entry)
        if magic != _PARTITION_MAGIC:
            raise ImageError(f"the firmware's partition table has a bad entry at {pos:#x}")
        name = label.rstrip(b"\x00").decode("ascii", "replace")
        parts.append(Partition(name, ptype, subtype, offset, size))
    return tuple(parts)


def _check_esp32(board: Board, data: bytes, flash_size: int) -> FirmwareInfo:
    from esptool.targets import ESP32ROM

    if data[:1] == bytes([_IMAGE_MAGIC]) and esp32_family_chip_id(data) is None:
        raise ImageError(
            "the firmware has no ESP32 image header (ESP-IDF extended header): "
            "is it an esp8266 firmware?"
        )
    boot = _load_image(board.chip, data, "the firmware's bootloader (at 0x1000)")
    if boot.chip_id != ESP32ROM.IMAGE_CHIP_ID:
        raise ImageError(f"the firmware is for {_chip_name_for_id(boot.chip_id)}, not {board.name}")
    table_at = PARTITION_TABLE_OFFSET - board.firmware_offset
    if len(data) < table_at + _PARTITION_ENTRY.size:
        raise ImageError(
            "the firmware has no partition table at 0x8000: use the complete .bin from "
            "micropython.org/download (bootloader, partition table and app), "
            "not micropython.bin alone"
        )
    parts = parse_partition_table(data[table_at : table_at + PARTITION_TABLE_SIZE])
    if not parts:
        raise ImageError("the firmware's partition table at 0x8000 is empty")
    apps = [p for p in parts if p.type == _TYPE_APP and p.subtype == _SUBTYPE_FACTORY] or [
        p for p in parts if p.type == _TYPE_APP and p.subtype == _SUBTYPE_OTA_0
    ]
    if not apps:
        raise ImageError("the firmware's partition table has no factory or ota_0 app partition")
    app_part = apps[0]
    app_at = app_part.offset - board.firmware_offset
    if len(data) <= app_at:
        raise ImageError(
            f"the firmware ends before its app partition at {app_part.offset:#x}: truncated?"
        )
    app = _load_image(board.chip, data[app_at:], f"the firmware's app (at {app_part.offset:#x})")
    if app.chip_id != ESP32ROM.IMAGE_CHIP_ID:
        raise ImageError(f"the firmware's app is for {_chip_name_for_id(app.chip_id)}")
    end = board.firmware_offset + len(data)
    if end > app_part.offset + app_part.size:
        raise ImageError(
            f"the firmware ({len(data)} bytes) overruns its app partition "
            f"({app_part.offset:#x}+{app_part.size:#x})"
        )
    vfs = [p for p in parts if p.type == _TYPE_DATA and p.label == "vfs"]
    if vfs:
        fs = Region(vfs[0].offset, vfs[0].size)
    else:
        # A table that ends after the app leaves the rest of the flash to the filesystem.
        last = max(p.offset + p.size for p in parts)
        fs = Region(last, flash_size - last)
    if fs.offset < end:
        raise ImageError(
            f"the firmware (up to {end:#x}) overlaps its filesystem partition at {fs.offset:#x}"
        )
    if fs.size < 2 * BLOCK_SIZE or fs.end > flash_size:
        raise ImageError(
            f"the filesystem region {fs.offset:#x}+{fs.size:#x} does not fit a "
            f"{flash_size // MiB} MB flash: check --flash-size"
        )
    return FirmwareInfo(
        board, flash_size, len(data), Region(app_part.offset, app_part.size), fs, parts
    )


def _check_esp8266(board: Board, data: bytes, flash_size: int) -> FirmwareInfo:
    chip_id = esp32_family_chip_id(data)
    if chip_id is not None:
        raise ImageError(f"the firmware is for {_chip_name_for_id(chip_id)}, not {board.name}")
    _load_image(board.chip, data, "the firmware")
    if len(data) > ESP8266_FS_START:
        raise ImageError(
            f"the firmware ({len(data)} bytes) overruns the filesystem at {ESP8266_FS_START:#x}: "
            "use ESP8266_GENERIC for boards with 2 MB or more"
        )
    fs_end = (flash_size - ESP8266_SDK_RESERVED) // BLOCK_SIZE * BLOCK_SIZE
    return FirmwareInfo(
        board,
        flash_size,
        len(data),
        Region(0, ESP8266_FS_START),
        Region(ESP8266_FS_START, fs_end - ESP8266_FS_START),
    )


def check_firmware(board: Board, data: bytes, flash_size: int) -> FirmwareInfo:
    """Validate a MicroPython download for `board` and find its filesystem region."""
    if board.name == "esp32":
        return _check_esp32(board, data, flash_size)
    return _check_esp8266(board, data, flash_size)


# ---------------------------------------------------------------- settings


def check_setup_password(password: str, what: str) -> str:
    if not 8 <= len(password) <= 63 or not all(32 <= ord(c) < 127 for c in password):
        raise ImageError(f"{what} must be 8 to 63 printable ASCII characters (WPA2)")
    return password


def check_wifi(ssid: str | None, password: str | None) -> None:
    if ssid is None:
        if password:
            raise ImageError("a Wi-Fi password was given without --wifi-ssid")
        return
    raw = ssid.encode("utf-8")
    if not 1 <= len(raw) <= 32:
        raise ImageError(f"Wi-Fi SSID {ssid!r} must be 1 to 32 bytes, it is {len(raw)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in ssid):
        raise ImageError(f"Wi-Fi SSID {ssid!r} contains a control character")
    if password:
        is_psk = len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password)
        if not is_psk:
            check_setup_password(password, "the Wi-Fi password")


def check_web_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageError(f"--web-url {url!r} must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ImageError(f"--web-url {url!r} must not have a query or fragment")
    return url.rstrip("/")


def load_roots(paths: Sequence[Path], threshold: int, what: str) -> list[bytes]:
    if not paths:
        raise ImageError(f"at least one {what} root public key is needed")
    roots = [load_public_key(p) for p in paths]
    if len(set(roots)) != len(roots):
        raise ImageError(f"the same {what} root key was given twice")
    if not 1 <= threshold <= len(roots):
        raise ImageError(
            f"{what} threshold {threshold} needs between 1 and {len(roots)} (the roots given)"
        )
    return roots


def check_settings(s: DeviceSettings, require_repo: bool = True) -> None:
    """Refuse settings the device could not use; messages name the bad value."""
    if require_repo and s.repo is None:
        raise ImageError("--repo is needed: the app repo the device follows")
    for repo, what in ((s.repo, "--repo"), (s.manager_repo, "--manager-repo")):
        if repo is None:
            continue
        try:
            check_repo(repo)
        except FormatError as exc:
            raise ImageError(f"{what}: {exc}") from None
    if s.channel not in CHANNELS:
        raise ImageError(f"channel {s.channel!r} must be one of {', '.join(CHANNELS)}")
    if s.repo is not None and not s.app_roots:
        raise ImageError("at least one app root public key (--root) is needed")
    if s.repo is None and s.app_roots:
        raise ImageError("--root needs --repo: the keys are pinned for one repo")
    if bool(s.manager_repo) != bool(s.manager_roots):
        raise ImageError("--manager-repo and --manager-root go together")
    s.web_url = check_web_url(s.web_url)
    check_wifi(s.wifi_ssid, s.wifi_password)
    check_setup_password(s.setup_password, "the setup password")


def generate_setup_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))


def config_json(s: DeviceSettings) -> bytes:
    """The device's /lcm/state/config.json (keys as in docs/device.md)."""
    cfg: dict[str, Any] = {
        "board": s.board,
        "web_url": s.web_url,
        "channel": s.channel,
        "setup_password": s.setup_password,
    }
    if s.repo is not None:
        cfg["repo"] = s.repo
        cfg["app_roots"] = [k.hex() for k in s.app_roots]
        cfg["app_threshold"] = s.app_threshold
    if s.manager_repo:
        cfg["manager_repo"] = s.manager_repo
        cfg["manager_roots"] = [k.hex() for k in s.manager_roots]
        cfg["manager_threshold"] = s.manager_threshold
    if s.wifi_ssid is not None:
        cfg["wifi_ssid"] = s.wifi_ssid
        cfg["wifi_password"] = s.wifi_password or ""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- setup network


def setup_ssid(mac: bytes) -> str:
    """The setup access point's name: LCM- and the last 3 bytes of the MAC in hex."""
    return SETUP_SSID_PREFIX + mac[-3:].hex().upper()


def parse_mac(text: str) -> bytes:
    digits = re.sub(r"[:\-.]", "", text.strip())
    if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        raise ImageError(f"--mac {text!r} is not a MAC address like 24:0a:c4:12:34:56")
    return bytes.fromhex(digits)


def wifi_qr_payload(ssid: str, password: str) -> str:
    """The `WIFI:T:WPA;S:...;P:...;;` text phones read from a QR code."""
    import segno.helpers

    return str(segno.helpers.make_wifi_data(ssid=ssid, password=password, security="WPA"))


def wifi_qr_text(ssid: str, password: str) -> str:
    """A terminal rendering of the Wi-Fi QR code."""
    import segno

    buf = io.StringIO()
    segno.make(wifi_qr_payload(ssid, password), error="m").terminal(out=buf, compact=True)
    return buf.getvalue()


# ---------------------------------------------------------------- mip package


def mip_package(root: Path = REPO_ROOT, version: str = "0.1.0") -> dict[str, Any]:
    """The repo's package.json for mip: the lcm layout, installed with target="/".

    Sources are relative URLs (mip resolves them against package.json's own
    URL), so `mip.install("github:OWNER/lcm", target="/")` works for any fork.
    """
    urls: list[list[str]] = []
    if (root / "lcm_device" / "main.py").is_file():
        urls.append(["main.py", "lcm_device/main.py"])
    for rel in source_files(DEVICE_PACKAGES, root):
        urls.append([f"{MANAGER_SLOT.lstrip('/')}/{rel.as_posix()}", rel.as_posix()])
    return {"urls": urls, "deps": [], "version": version}


def mip_package_text(root: Path = REPO_ROOT) -> str:
    """package.json as committed: one file per line, so diffs show what moved."""
    pkg = mip_package(root)
    lines = ",\n".join("    " + json.dumps(u) for u in pkg["urls"])
    return (
        '{\n  "urls": [\n' + lines + '\n  ],\n  "deps": [],\n'
        f'  "version": {json.dumps(pkg["version"])}\n}}\n'
    )


# ---------------------------------------------------------------- filesystem


def device_files(settings: DeviceSettings, main_shim: Path | None = None) -> dict[str, bytes]:
    """Every file the device starts with: path on the device -> bytes."""
    main_shim = main_shim or MAIN_SHIM
    try:
        shim = main_shim.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read the boot shim {main_shim}: {exc.strerror}") from None
    files = {"/main.py": shim}
    with tempfile.TemporaryDirectory(prefix="lcm-mpy-") as tmp:
        build = build_mpy(Path(tmp), DEVICE_PACKAGES)
        for mpy in sorted(build.rglob("*.mpy")):
            files[f"{MANAGER_SLOT}/{mpy.relative_to(build).as_posix()}"] = mpy.read_bytes()
    files[CONFIG_PATH] = config_json(settings)
    return files


def new_littlefs(region: Region, buffer: bytearray | None = None) -> Any:
    """A littlefs-python filesystem with MicroPython's VfsLfs2 settings (not mounted)."""
    from littlefs import LittleFS, UserContext

    context = UserContext(buffer=buffer) if buffer is not None else None
    return LittleFS(
        context=context,
        mount=False,
        block_size=BLOCK_SIZE,
        block_count=region.block_count,
        read_size=LFS_READ_SIZE,
        prog_size=LFS_PROG_SIZE,
        lookahead_size=LFS_LOOKAHEAD,
        cache_size=LFS_CACHE_SIZE,
        block_cycles=LFS_BLOCK_CYCLES,
        disk_version=LFS_DISK_VERSION,
    )


def build_filesystem(files: dict[str, bytes], region: Region) -> bytes:
    """A LittleFS image of exactly `region.size` bytes holding `files`."""
    from littlefs import LittleFSError

    total = sum(len(d) for d in files.values())
    capacity = region.block_count * BLOCK_SIZE
    fs = new_littlefs(region)
    fs.format()
    fs.mount()
    try:
        for path, data in files.items():
            parent = path.rsplit("/", 1)[0]
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(data)
        fs.unmount()
    except LittleFSError as exc:
        raise ImageError(
            f"the files ({total} bytes in {len(files)} files) do not fit in the "
            f"{capacity // KiB} KiB filesystem at {region.offset:#x} ({exc})"
        ) from None
    image = bytes(fs.context.buffer)
    assert len(image) == region.size - region.size % BLOCK_SIZE
    return image


# ---------------------------------------------------------------- reading an image back

MAX_CONFIG_SIZE = 16 * KiB


def factory_filesystem(board: Board, data: bytes) -> Region:
    """Where a factory image (as written by `merge`) keeps its filesystem."""
    base = board.firmware_offset
    end = base + len(data)
    if board.name == "esp8266":
        return Region(ESP8266_FS_START, max(0, end - ESP8266_FS_START) // BLOCK_SIZE * BLOCK_SIZE)
    table_at = PARTITION_TABLE_OFFSET - base
    parts = parse_partition_table(data[table_at : table_at + PARTITION_TABLE_SIZE])
    vfs = [p for p in parts if p.type == _TYPE_DATA and p.label == "vfs"]
    if vfs:
        return Region(vfs[0].offset, vfs[0].size)
    last = max((p.offset + p.size for p in parts), default=end)
    return Region(last, max(0, end - last))


def factory_config(board: Board, data: bytes) -> dict[str, Any]:
    """The /lcm/state/config.json inside a factory image; ImageError if it has none."""
    from littlefs import LittleFSError

    region = factory_filesystem(board, data)
    start = region.offset - board.firmware_offset
    chunk = data[start : start + region.size]
    if region.block_count < 2 or len(chunk) < region.size:
        raise ImageError(
            f"the image has no lcm filesystem at {region.offset:#x}: build it with lcm device image"
        )
    fs = new_littlefs(region, bytearray(chunk))
    try:
        fs.mount()
        if fs.stat(CONFIG_PATH).size > MAX_CONFIG_SIZE:
            raise ImageError(f"{CONFIG_PATH} in the image is larger than {MAX_CONFIG_SIZE} bytes")
        with fs.open(CONFIG_PATH, "rb") as f:
            cfg = json.loads(f.read())
    except (LittleFSError, ValueError) as exc:
        raise ImageError(
            f"the image has no lcm filesystem at {region.offset:#x} ({exc}): "
            "build it with lcm device image"
        ) from None
    if not isinstance(cfg, dict) or cfg.get("board") != board.name:
        raise ImageError(f"the image's config is not for {board.name}")
    return cfg


# ---------------------------------------------------------------- merge


def merge(info: FirmwareInfo, firmware: bytes, filesystem: bytes) -> bytes:
    """esptool merge-bin: firmware at its offset, filesystem at its region, one file."""
    from esptool.cmds import merge_bin
    from esptool.logger import log

    base = info.board.firmware_offset
    log.set_verbosity("silent")  # esptool narrates; the command prints its own summary
    try:
        merged = merge_bin(
            [(base, firmware), (info.filesystem.offset, filesystem)],
            chip=info.board.chip,
            output=None,
            flash_size=f"{info.flash_size // MiB}MB",
            target_offset=base,
        )
    except Exception as exc:  # esptool's FatalError
        raise ImageError(f"esptool merge-bin failed: {exc}") from None
    finally:
        log.set_verbosity("auto")
    assert isinstance(merged, bytes)
    return merged


def build_factory_image(
    board_name: str,
    firmware: bytes,
    flash_size_text: str,
    settings: DeviceSettings,
    main_shim: Path | None = None,
) -> FactoryImage:
    """Validate everything, then build and merge. Nothing is written here."""
    board = get_board(board_name)
    flash_size = parse_flash_size(board, flash_size_text)
    settings.board = board.name
    check_settings(settings)
    info = check_firmware(board, firmware, flash_size)
    files = device_files(settings, main_shim)
    fs_image = build_filesystem(files, info.filesystem)
    return FactoryImage(merge(info, firmware, fs_image), info, files, settings)
