"""ESP32 firmware updates in the MicroPython unix port, on simulated OTA partitions.

The images are real: made by esptool's own image classes (header, segments,
checksum, SHA-256), one for the ESP32 and one for the ESP32-S3, padded with a
real-looking body so the write spans several flash blocks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

SCRIPT = """
import binascii, sys
from lcm_device.hal.fs import Fs
from lcm_sim.simpartition import SimPartitions
from lcm_device.firmware import FirmwareWriter, FirmwareError
from cert_sector.errors import MismatchError

root = "{root}"
parts = SimPartitions(root, Fs(), size={size})
print("boots", parts.bootloader())
image = open("{image}", "rb")
target = parts.get_next_update()
{wrap}
buf = bytearray(1000)  # odd-sized network reads, as the engine would feed them
try:
    writer = FirmwareWriter(target, {length}, binascii.unhexlify("{sha}"), "{chip}")
    while True:
        n = image.readinto(buf)
        if not n:
            break
        writer.write(memoryview(buf)[:n])
    writer.finish()
except (FirmwareError, MismatchError) as e:
    print("REFUSED", type(e).__name__, e)
    print("boots", parts.bootloader())
    sys.exit(0)
writer.activate()
print("WROTE", target.label)
print("boots", parts.bootloader())
{after}
"""


def esp_image(cls: type, body: int = 20000) -> bytes:
    image = cls()
    image.entrypoint = 0x40080000
    payload = bytes(i * 7 % 251 for i in range(body))
    image.segments = [ELFSection(b".flash.text", 0x400D0020, payload, 0)]
    data = image.save(None)
    assert isinstance(data, bytes)
    return data


def run(
    mpy,
    tmp_path: Path,
    image: bytes,
    *,
    chip="esp32",
    sha=None,
    length=None,
    size=0x10000,
    after="",
    wrap="",
) -> str:
    root = tmp_path / "dev"
    (root / "lcm" / "state").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "fw.bin"
    path.write_bytes(image)
    code = SCRIPT.format(
        root=root,
        size=size,
        image=path,
        length=len(image) if length is None else length,
        sha=(sha or hashlib.sha256(image).hexdigest()),
        chip=chip,
        after=after,
        wrap=wrap,
    )
    return mpy.run(code, heap=mpy.heap_at_least(ESP32_MIN_HEAP_KB)).stdout


# Firmware updates exist only on the ESP32 (about 100 KB of free heap or more);
# the ESP8266-sized 24 KB pass of the device suite is raised to this.
ESP32_MIN_HEAP_KB = 48


def test_image_written_verified_and_booted_once_pending(mpy, tmp_path: Path) -> None:
    image = esp_image(ESP32FirmwareImage)
    out = run(mpy, tmp_path, image, after="print('boots', parts.bootloader())")
    lines = out.splitlines()
    assert lines[0] == "boots ota_0"
    assert "WROTE ota_1" in lines
    # First boot of the new image: pending verification; not confirmed, so the
    # next boot returns to the old one, as ESP-IDF's bootloader does.
    assert lines[-2:] == ["boots ota_1", "boots ota_0"]
    blocks = sorted((tmp_path / "dev/lcm/state/ota_1").iterdir(), key=lambda p: int(p.stem))
    written = b"".join(p.read_bytes() for p in blocks)
    assert written[: len(image)] == image
    assert set(written[len(image) :]) <= {0xFF}


def test_confirmed_image_stays(mpy, tmp_path: Path) -> None:
    image = esp_image(ESP32FirmwareImage)
    out = run(
        mpy,
        tmp_path,
        image,
        after="parts.mark_app_valid_cancel_rollback()\nprint('boots', parts.bootloader())",
    )
    assert out.splitlines()[-2:] == ["boots ota_1", "boots ota_1"]


def test_image_for_another_chip_refused(mpy, tmp_path: Path) -> None:
    out = run(mpy, tmp_path, esp_image(ESP32S3FirmwareImage))
    assert "REFUSED MismatchError firmware is for esp32s3, this board is esp32" in out
    assert out.splitlines()[-1] == "boots ota_0"
    assert not (tmp_path / "dev/lcm/state/ota_1").exists()  # refused before the first write


def test_bytes_differing_from_manifest_refused(mpy, tmp_path: Path) -> None:
    image = esp_image(ESP32FirmwareImage)
    out = run(mpy, tmp_path, image, sha="00" * 32)
    assert "REFUSED FirmwareError firmware bytes differ from the signed manifest" in out
    assert out.splitlines()[-1] == "boots ota_0"


def test_more_bytes_than_declared_refused(mpy, tmp_path: Path) -> None:
    image = esp_image(ESP32FirmwareImage)
    out = run(mpy, tmp_path, image, length=len(image) - 100)
    assert "REFUSED FirmwareError more firmware bytes than the manifest declares" in out


def test_image_larger_than_partition_refused(mpy, tmp_path: Path) -> None:
    image = esp_image(ESP32FirmwareImage)
    out = run(mpy, tmp_path, image, size=0x2000)
    assert "does not fit a partition of 8192" in out


def test_not_an_image_refused(mpy, tmp_path: Path) -> None:
    out = run(mpy, tmp_path, b"PK\x03\x04" + bytes(9000))
    assert "REFUSED FirmwareError not an ESP firmware image (bad magic)" in out


FLAKY_FLASH = """
class FlakyFlash:
    # A flash chip whose second block does not keep one bit.
    def __init__(self, part):
        self.part = part
        self.label = part.label
    def ioctl(self, op, arg):
        return self.part.ioctl(op, arg)
    def writeblocks(self, block, buf):
        self.part.writeblocks(block, buf)
        if block == 1:
            bad = bytearray(buf)
            bad[100] ^= 1
            self.part.writeblocks(block, bad)
    def readblocks(self, block, buf):
        self.part.readblocks(block, buf)
    def set_boot(self):
        self.part.set_boot()
target = FlakyFlash(target)
"""


def test_write_that_did_not_stick_caught_by_read_back(mpy, tmp_path: Path) -> None:
    out = run(mpy, tmp_path, esp_image(ESP32FirmwareImage), wrap=FLAKY_FLASH)
    assert "REFUSED FirmwareError firmware read back from flash differs" in out
    assert out.splitlines()[-1] == "boots ota_0"
