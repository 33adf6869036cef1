"""`--kind firmware`: a MicroPython firmware `.bin`, checked with esptool's image parser.

What is checked before anything is signed (a wrong file must never reach a
board's OTA partition):
  - the image magic (0xE9, or 0xEA for an ESP8266 "v2" image),
  - for every `--board`, that esptool parses it as that chip's image and, for
    ESP32-family chips, that the header's chip id is that chip's,
  - the header checksum over the segments and, when the image carries one,
    the appended SHA-256,
  - for ESP32-family chips, that it is an *app* image, the kind an OTA
    partition holds: not the full download image from micropython.org (its
    first bytes are the bootloader, followed by the partition table; it is
    meant for `lcm device image`), and not a bootloader alone. An ESP-IDF app
    image starts its first segment with the app descriptor (magic 0xABCD5432).
The release then holds one file, FIRMWARE_PATH, and the boards given.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from esptool.bin_image import LoadFirmwareImage

from cert_sector.manifest import MAX_FILE_SIZE
from publisher.device.firmware import PARTITION_TABLE_SIZE, ImageError, parse_partition_table
from publisher.release.errors import SourceError
from publisher.release.source import SourceFile, check_exists, read_bounded

FIRMWARE_PATH = "firmware.bin"
ESP_IMAGE_MAGICS = (0xE9, 0xEA)
# Boards a firmware release can target: esptool's chip names without dashes.
KNOWN_CHIPS = (
    "esp8266",
    "esp32",
    "esp32s2",
    "esp32s3",
    "esp32c2",
    "esp32c3",
    "esp32c5",
    "esp32c6",
    "esp32c61",
    "esp32h2",
    "esp32p4",
)


# esp_app_desc_t.magic_word, the first word of an ESP-IDF app image's first segment
# (after the 24-byte image header and the 8-byte segment header).
APP_DESC_MAGIC = (0xABCD5432).to_bytes(4, "little")
APP_DESC_OFFSET = 32
# Where a full download image carries its partition table: 0x8000 in flash, and the
# image is flashed at 0x1000 (ESP32, ESP32-S2) or at 0x0 (later chips).
PARTITION_TABLE_AT = (0x7000, 0x8000)
PARTITION_MAGIC = b"\xaa\x50"
APP_TYPE, FACTORY, OTA_0 = 0x00, 0x00, 0x10


def _app_inside(data: bytes) -> str:
    """Where the app image sits in a full download image, as advice for the error."""
    for table_at in PARTITION_TABLE_AT:
        if data[table_at : table_at + 2] != PARTITION_MAGIC:
            continue
        try:
            parts = parse_partition_table(data[table_at : table_at + PARTITION_TABLE_SIZE])
        except ImageError:
            continue
        apps = [p for p in parts if p.type == APP_TYPE and p.subtype in (FACTORY, OTA_0)]
        if apps:
            at = apps[0].offset - (0x8000 - table_at)
            return (
                f"; its app image starts at byte {at:#x} of the file "
                f"(dd if=FILE of=app.bin bs=4096 skip={at // 4096}), or use the "
                "micropython.bin of the firmware build"
            )
    return "; use the app image (micropython.bin of the firmware build)"


def check_app_image(data: bytes, name: str) -> None:
    """Refuse an ESP32-family image that is not an app for an OTA partition."""
    if any(data[t : t + 2] == PARTITION_MAGIC for t in PARTITION_TABLE_AT):
        raise SourceError(
            f"{name} is a full download image (bootloader and partition table first, for "
            "`lcm device image` / esptool at 0x1000), not an app image for an OTA partition"
            + _app_inside(data)
        )
    if data[APP_DESC_OFFSET : APP_DESC_OFFSET + 4] != APP_DESC_MAGIC:
        raise SourceError(
            f"{name} is not an app image for an OTA partition: it has no ESP-IDF app "
            "descriptor (a bootloader image?); use micropython.bin of the firmware build"
        )


def _parse(chip: str, data: bytes) -> Any:
    # esptool logs warnings on stdout; keep them out of --json output.
    with contextlib.redirect_stdout(io.StringIO()):
        return LoadFirmwareImage(chip, data)


def check_image(data: bytes, chip: str, name: str) -> None:
    """Refuse `data` unless it is a valid firmware image for `chip`."""
    if chip not in KNOWN_CHIPS:
        raise SourceError(
            f"--board {chip!r} is not a chip esptool knows ({', '.join(KNOWN_CHIPS)})"
        )
    if not data or data[0] not in ESP_IMAGE_MAGICS:
        first = f"{data[0]:#04x}" if data else "nothing"
        raise SourceError(
            f"{name} is not an ESP firmware image: it starts with {first}, not the image magic 0xe9"
        )
    try:
        image = _parse(chip, data)
    except Exception as exc:  # esptool raises FatalError, struct.error, KeyError...
        raise SourceError(f"{name} is not a valid {chip} firmware image: {exc}") from None
    expected_id = getattr(image.ROM_LOADER, "IMAGE_CHIP_ID", None)
    chip_id = getattr(image, "chip_id", None)
    if expected_id is not None and chip_id is not None and chip_id != expected_id:
        raise SourceError(
            f"{name} is an image for chip id {chip_id}, not {chip} (chip id {expected_id})"
        )
    if hasattr(image, "checksum"):
        calculated = image.calculate_checksum()
        if image.checksum != calculated:
            raise SourceError(
                f"{name}: image checksum {image.checksum:#04x} does not match the "
                f"segments ({calculated:#04x}); the file is corrupt"
            )
    if getattr(image, "append_digest", False) and image.stored_digest != image.calc_digest:
        raise SourceError(f"{name}: the appended SHA-256 does not match the image; corrupt file")
    if chip != "esp8266":
        check_app_image(data, name)


def load_firmware(path: Path, boards: list[str]) -> list[SourceFile]:
    """The single file of a firmware release, after checking it for every board."""
    check_exists(path)
    if not path.is_file():
        raise SourceError(f"SOURCE {path} is not a file (a firmware release is one .bin)")
    if not boards:
        raise SourceError("a firmware release needs --board (the chip the image is built for)")
    size = path.stat().st_size
    if size == 0:
        raise SourceError(f"SOURCE {path} is empty")
    if size > MAX_FILE_SIZE:
        raise SourceError(f"SOURCE {path} is {size} bytes, more than {MAX_FILE_SIZE}")
    data = read_bounded(path, size, str(path))
    for board in boards:
        check_image(data, board, path.name)
    return [SourceFile(FIRMWARE_PATH, data)]
