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
the only buffer it holds. `install_firmware` is the engine's firmware path
(lcm_device/install.py hands a verified firmware release to it).
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


def install_firmware(u, st, tag, order, spent, manifest):
    """Step 5-7 of lcm_device.install for a firmware release (its manifest verified, at
    `manifest`; `order` and `spent` as lcm_device.metadata.verified returns them):
    stream firmware.bin into the next OTA partition, then boot it. Here,
    not in slotfill.py: a files release, the common case, does not load it.

    boot.json records `fw_next` (tag, sequence, partition) before set_boot:
    the next boot sees which partition the bootloader chose and either
    adopts the tag (`fw_tag`, marked valid after its first check) or, when
    the bootloader went back after set_boot (`fw_next`'s 4th element), records
    it as `fw_bad` (lcm_device.startup._firmware_booted).
    """
    from cert_sector.manifest import SIGNATURE_BLOCK, ManifestReader
    from lcm_device import slots
    from lcm_device.compat import collect, file_size
    from lcm_device.hal.fs import pump
    from lcm_device.install import partition_label
    from lcm_device.slotfill import pack_stream
    from lcm_device.update import Refused

    hal = u.hal
    parts = hal.partitions()
    if parts is None:
        raise Refused("this board has no OTA partitions for a firmware release")
    with open(manifest, "rb") as f:
        reader = ManifestReader(stream=f, body_size=file_size(manifest) - SIGNATURE_BLOCK)
        m = reader.header()
        entries = reader.files()
        e = next(entries)
        for _ in entries:
            pass  # M1-M3 over the whole record list
    if m.file_count != 1 or e.path != "firmware.bin":
        raise Refused("manifest: a firmware release holds exactly one file, firmware.bin")
    target = parts(parts.RUNNING).get_next_update()  # esp32.Partition's next OTA partition
    label = partition_label(target)
    reader = entries = None
    collect()  # the writer needs one contiguous 4 KB flash block
    writer = FirmwareWriter(target, e.size, e.sha256, u.cfg["board"])
    pack, budget = pack_stream(u, tag, m.pack_size, spent, e.size)
    u.log(
        "firmware: "
        + str(e.size)
        + " bytes into "
        + label
        + "; check budget "
        + str(budget // 1000)
        + " s"
    )
    try:
        pack.open(e.offset, e.offset + e.size)
        pump(pack, u.io, e.size, writer, None)
    finally:
        pack.close()
    writer.finish()
    u.log("firmware: written, hashed and read back")
    st["fw_next"] = [tag, order, label]
    st["app_repo"] = u.repo
    slots.save(hal, st)
    writer.activate()
    # Recorded after set_boot(): if the old image runs at the next boot, the
    # bootloader rolled the new one back (fw_bad) rather than it never being set.
    st["fw_next"] = [tag, order, label, True]
    slots.save(hal, st)
    hal.fs.remove(manifest)
    u.log("firmware: " + tag + " boots next from " + label)
