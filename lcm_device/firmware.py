"""Firmware updates on ESP32: a whole MicroPython image into the next OTA partition.

Rules (each check below names the rule it enforces):

  F1  The image is an ESP app image for this chip (cert_sector/fwimage.py,
      shared with `lcm release verify`).
  F2  It fits the partition, and it is exactly the size the signed manifest
      declares (no endless data).
  F3  The SHA-256 of the bytes written equals the manifest's; then the whole
      partition range is read back and hashed again before anything changes
      what boots (a flash write that did not stick is caught here).
  F4  Only then `set_boot()`; the new firmware boots in ESP-IDF's
      PENDING_VERIFY state, and the manager marks it valid
      (`mark_app_valid_cancel_rollback`) once it has booted healthy, so a
      firmware that cannot boot is rolled back by the bootloader.

The writer streams: the update engine feeds it the pack's bytes as they
arrive (`write`), and it collects them into one 4 KB flash block at a time,
the only buffer it holds.
"""

import hashlib

from cert_sector.fwimage import FirmwareError, check_header

BLOCK = 4096


class FirmwareWriter:
    """Streams one image of `size` bytes with `sha256` into `partition` (esp32.Partition-like)."""

    def __init__(self, partition, size, sha256, chip):
        blocks = partition.ioctl(4, 0)
        if size > blocks * BLOCK:  # Rule F2
            raise FirmwareError(
                "firmware of "
                + str(size)
                + " bytes does not fit a partition of "
                + str(blocks * BLOCK)
            )
        self.partition = partition
        self.size = size
        self.sha256 = sha256
        self.chip = chip
        self.written = 0
        self._block = bytearray(BLOCK)
        self._fill = 0
        self._hash = hashlib.sha256()

    def write(self, data):
        """Feed the next bytes of the image (a memoryview or bytes)."""
        if self.written + self._fill + len(data) > self.size:  # Rule F2
            raise FirmwareError("more firmware bytes than the manifest declares")
        mv = memoryview(data)
        while len(mv):
            n = min(BLOCK - self._fill, len(mv))
            self._block[self._fill : self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]
            if self._fill == BLOCK:
                self._flush()

    def _flush(self):
        if self.written == 0:
            check_header(self._block, self.chip)  # Rule F1, before the first write
        block = self._block
        if self._fill < BLOCK:
            for i in range(self._fill, BLOCK):
                block[i] = 0xFF  # erased flash after the image's end
        self._hash.update(memoryview(block)[: self._fill])
        self.partition.writeblocks(self.written // BLOCK, block)
        self.written += self._fill
        self._fill = 0

    def finish(self):
        """Rules F2 and F3: everything written, hashes match, read-back matches."""
        if self._fill:
            self._flush()
        if self.written != self.size:
            raise FirmwareError(
                "firmware ended after " + str(self.written) + " of " + str(self.size) + " bytes"
            )
        if self._hash.digest() != self.sha256:
            raise FirmwareError("firmware bytes differ from the signed manifest (sha256)")
        readback = hashlib.sha256()
        block = self._block
        pos = 0
        while pos < self.size:
            self.partition.readblocks(pos // BLOCK, block)
            n = min(BLOCK, self.size - pos)
            readback.update(memoryview(block)[:n])
            pos += n
        if readback.digest() != self.sha256:
            raise FirmwareError("firmware read back from flash differs from what was written")

    def activate(self):
        """Rule F4: boot the new image next (after `finish`)."""
        self.partition.set_boot()
