"""`--kind firmware`: a MicroPython firmware `.bin`, checked with esptool's image parser.

What is checked before anything is signed (a wrong file must never reach a
board's OTA partition):
  - the image magic (0xE9, or 0xEA for an ESP8266 "v2" image),
  - for every `--board`, that esptool parses it as that chip's image and, for
    ESP32-family chips, that the header's chip id is that chip's,
  - the header checksum over the segments and, when the image carries one,
    the appended SHA-256.
The release then holds one file, FIRMWARE_PATH, and the boards given.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from esptool.bin_image import LoadFirmwareImage

from cert_sector.manifest import MAX_FILE_SIZE
from publisher.release.errors import SourceError
from publisher.release.source import SourceFile, read_bounded

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


def load_firmware(path: Path, boards: list[str]) -> list[SourceFile]:
    """The single file of a firmware release, after checking it for every board."""
    if not path.exists():
        raise SourceError(f"SOURCE {path} does not exist")
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
