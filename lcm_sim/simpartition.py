"""ESP32 OTA partitions simulated with files, following `esp32.Partition`.

The unix HAL's `partitions()` returns `SimPartitions`, whose members behave
like the `esp32.Partition` class and its instances as the firmware documents
them (`get_next_update`, `info`, `readblocks`, `writeblocks`, `ioctl`,
`set_boot`, `mark_app_valid_cancel_rollback`, `Partition.RUNNING`), so the
firmware writer runs unchanged here and on a board.

Files in the device folder: one file per written 4 KB block under
`lcm/state/ota_0/` and `lcm/state/ota_1/` (the app partitions; a block never
written reads as erased flash, 0xFF) and `lcm/state/otadata.json` (which one
boots, and whether it is still pending verification, as ESP-IDF's otadata
does). Writes go through the HAL's `fs`, so power cuts can be injected into
a firmware update too: a cut block is torn, as on real flash.
"""

import json

from lcm_device.compat import exists

BLOCK = 4096
_SLOTS = ("ota_0", "ota_1")
_OTADATA = "/lcm/state/otadata.json"


class SimPartition:
    """One app partition: a file of `size` bytes (0xFF until written)."""

    RUNNING = 1  # as esp32.Partition.RUNNING

    def __init__(self, parts, label):
        self._parts = parts
        self.label = label
        self.path = parts.root + "/lcm/state/" + label

    def info(self):
        # (type, subtype, addr, size, label, encrypted), as esp32.Partition.info()
        index = _SLOTS.index(self.label)
        addr = 0x10000 + index * self._parts.size
        return (0, 0x10 + index, addr, self._parts.size, self.label, False)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self._parts.size // BLOCK
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase block
            return 0
        return None

    def readblocks(self, block, buf, offset=0):
        pos = block * BLOCK + offset
        if pos + len(buf) > self._parts.size:
            raise OSError(22)
        done = 0
        while done < len(buf):
            n = min(len(buf) - done, BLOCK - pos % BLOCK)
            view = memoryview(buf)[done : done + n]
            got = 0
            try:
                with open(self._block_path(pos // BLOCK), "rb") as f:
                    f.seek(pos % BLOCK)
                    got = f.readinto(view) or 0
            except OSError:
                pass
            for i in range(got, n):
                view[i] = 0xFF
            done += n
            pos += n

    def writeblocks(self, block, buf, offset=0):
        # The simple block interface: whole blocks only, each erased then written.
        if offset or len(buf) % BLOCK or (block * BLOCK + len(buf)) > self._parts.size:
            raise OSError(22)
        if not exists(self.path):
            self._parts.fs.mkdir(self.path)
        for i in range(len(buf) // BLOCK):
            f = self._parts.fs.open_write(self._block_path(block + i))
            try:
                f.write(memoryview(buf)[i * BLOCK : (i + 1) * BLOCK])
            finally:
                f.close()

    def _block_path(self, block):
        return self.path + "/" + str(block) + ".blk"

    def set_boot(self):
        self._parts.save({"boot": self.label, "pending": True})

    def get_next_update(self):
        # As esp32.Partition(RUNNING).get_next_update(): the other OTA slot.
        return SimPartition(self._parts, _SLOTS[1 - _SLOTS.index(self.label)])

    def __eq__(self, other):
        return isinstance(other, SimPartition) and other.label == self.label


class SimPartitions:
    """The `esp32.Partition` class, for one simulated device folder."""

    RUNNING = SimPartition.RUNNING

    def __init__(self, root, fs, size=0x180000):
        self.root = root
        self.fs = fs
        self.size = size

    def _state(self):
        try:
            with open(self.root + _OTADATA) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"boot": _SLOTS[0], "pending": False}

    def save(self, state):
        path = self.root + _OTADATA
        f = self.fs.open_write(path + ".tmp")
        try:
            f.write(json.dumps(state))
        finally:
            f.close()
        self.fs.rename(path + ".tmp", path)

    def running(self):
        return SimPartition(self, self._state()["boot"])

    def __call__(self, which):
        if which != SimPartition.RUNNING:
            raise ValueError("only Partition.RUNNING is simulated")
        return self.running()

    def get_next_update(self):
        running = self._state()["boot"]
        return SimPartition(self, _SLOTS[1 - _SLOTS.index(running)])

    def mark_app_valid_cancel_rollback(self):
        state = self._state()
        if state.get("pending"):
            state["pending"] = False
            self.save(state)

    def bootloader(self):
        """What ESP-IDF's bootloader does at each boot, with app roll-back enabled.

        A freshly set image boots once in PENDING_VERIFY; if the device resets
        again before the app marked it valid, the bootloader returns to the
        other partition. Returns the label of the partition that boots.
        """
        state = self._state()
        if state.get("pending"):
            if state.get("tried"):
                label = _SLOTS[1 - _SLOTS.index(state["boot"])]
                state = {"boot": label, "pending": False, "rolled_back": state["boot"]}
            else:
                state["tried"] = True
            self.save(state)
        return state["boot"]
