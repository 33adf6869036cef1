"""MicroPython firmware for ESP boards: validation with esptool, and where the filesystem goes.

Where the filesystem goes (see docs/hobbyist.md for the sources):

- ESP32: MicroPython's download is bootloader (0x1000) + partition table
  (0x8000) + app (0x10000). The filesystem is the partition table's `vfs`
  data partition; without one (`partitions-4MiBplus.csv`) the port puts it
  after the `factory` app, up to the end of the flash.
- ESP8266: the firmware is flashed at 0x0 and the filesystem starts at
  0x100000 (`esp8266_2MiB.ld`), running to the flash end minus the 20 KiB of
  SDK parameters (`modules/flashbdev.py`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from publisher.errors import PublisherError
from publisher.fsutil import read_at_most

KiB = 1024
MiB = 1024 * KiB
# A MicroPython firmware is 0.6-2 MiB; anything past this is not one.
MAX_FIRMWARE_SIZE = 8 * MiB
BLOCK_SIZE = 4096
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
    frozen_manager: bool = False  # the firmware has lcm_device frozen in (manifest.py)


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
        data = read_at_most(path, MAX_FIRMWARE_SIZE)
    except OSError as exc:
        raise ImageError(f"cannot read firmware {path}: {exc.strerror}") from None
    if len(data) > MAX_FIRMWARE_SIZE:
        raise ImageError(
            f"{path} is more than a MicroPython firmware ({MAX_FIRMWARE_SIZE} bytes at most)"
        )
    return data


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


def esp32_filesystem(parts: Sequence[Partition], flash_size: int) -> Region:
    """The region MicroPython's ESP32 port mounts at `/`, as its main.c and flashbdev.py find it.

    A `vfs` data partition if the table has one. Otherwise (tables such as
    partitions-4MiBplus.csv) the port creates one at boot, from the end of
    the `factory` app partition (or of `ota_1` in a table without `factory`)
    to the end of the flash (micropython/micropython#17337).
    """
    by_label = {p.label: p for p in parts}
    vfs = by_label.get("vfs")
    if vfs is not None and vfs.type == _TYPE_DATA:
        return Region(vfs.offset, vfs.size)
    if "ffat" in by_label:
        raise ImageError(
            "the firmware's partition table has an 'ffat' partition (TinyUF2 layout, "
            "512-byte FAT blocks): not supported, use the stock MicroPython download"
        )
    factory, ota_1 = by_label.get("factory"), by_label.get("ota_1")
    app = factory if ota_1 is None else ota_1 if factory is None else None
    if app is None or app.type != _TYPE_APP:
        raise ImageError(
            "the firmware's partition table has no 'vfs' partition and no single "
            "'factory' or 'ota_1' app to put the filesystem after"
        )
    start = app.offset + app.size
    return Region(start, max(0, flash_size - start))


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
    fs = esp32_filesystem(parts, flash_size)
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


# mpy-tool lists a firmware's frozen modules by source path, each NUL-terminated,
# in plain bytes of the image (neither ESP port compresses its application).
FROZEN_MANAGER_NAME = b"lcm_device/boot.py\x00"


def check_firmware(board: Board, data: bytes, flash_size: int) -> FirmwareInfo:
    """Validate a MicroPython download for `board` and find its filesystem region."""
    if board.name == "esp32":
        info = _check_esp32(board, data, flash_size)
    else:
        info = _check_esp8266(board, data, flash_size)
    return replace(info, frozen_manager=FROZEN_MANAGER_NAME in data)


def factory_filesystem(board: Board, data: bytes) -> Region:
    """Where a factory image (as written by `merge`) keeps its filesystem."""
    base = board.firmware_offset
    end = base + len(data)
    if board.name == "esp8266":
        return Region(ESP8266_FS_START, max(0, end - ESP8266_FS_START) // BLOCK_SIZE * BLOCK_SIZE)
    table_at = PARTITION_TABLE_OFFSET - base
    parts = parse_partition_table(data[table_at : table_at + PARTITION_TABLE_SIZE])
    return esp32_filesystem(parts, end)
