"""ESP firmware image headers, shared by the device (lcm_device.firmware) and the publisher.

Rule F1: the image is an ESP app image (magic 0xE9) for this chip: the chip
id in its extended header equals the board's (an ESP32-S3 image is refused on
an ESP32, and so on). `CHIP_IDS` also names the boards firmware releases are
for (`lcm release publish` preflight).
"""

from cert_sector.errors import FormatError, MismatchError

IMAGE_MAGIC = 0xE9
# ESP-IDF's esp_chip_id_t, at offset 12 of the image header (little-endian u16).
CHIP_IDS = {
    "esp32": 0x0000,
    "esp32s2": 0x0002,
    "esp32c3": 0x0005,
    "esp32s3": 0x0009,
    "esp32c2": 0x000C,
    "esp32c6": 0x000D,
    "esp32h2": 0x0010,
    "esp32p4": 0x0012,
}


class FirmwareError(FormatError):
    """A firmware image that must not be booted; the message says why."""


def check_header(head, chip):
    """Rule F1 on the first bytes of an image (at least 16)."""
    if len(head) < 16 or head[0] != IMAGE_MAGIC:
        raise FirmwareError("not an ESP firmware image (bad magic)")
    image_chip = head[12] | (head[13] << 8)
    want = CHIP_IDS.get(chip)
    if want is None:
        raise MismatchError("firmware updates are not supported on " + chip)
    if image_chip != want:
        name = "chip id " + str(image_chip)
        for key in CHIP_IDS:
            if CHIP_IDS[key] == image_chip:
                name = key
        raise MismatchError("firmware is for " + name + ", this board is " + chip)
