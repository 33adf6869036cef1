"""Flash faults of the unix HAL (lcm_sim/unix.py), used only when a run asks for them.

Fault injection: with `LCM_FAULT_AT=k` the k-th flash mutation of the
process (a `write` call, a file creation, rename, remove, mkdir, rmdir) cuts
the power instead: a write is cut half way, then the process exits with
EXIT_POWER_CUT. MicroPython has no `os._exit`, so the cut is a SystemExit;
the flash is marked dead first, so `finally` blocks that run on the way out
cannot change anything more, as after a real power cut.

Flash failure: with `LCM_FLASH_FAIL=full@k` the flash is full from the k-th
mutation of the process on (creating a folder or writing a byte raises
OSError 28, ENOSPC; a file is still created empty, renames and removals
work, and `free_bytes()` is 0) until a removal frees space; with `ro@k` it turns read-only (every
mutation raises OSError 30, EROFS), as a worn or failing chip does.

With either variable set (LCM_FAULT_AT=0 counts and cuts nothing: the power-cut
census), the HAL's flash is a FaultyFs; without, it is the board's plain `Fs`,
and this module is not loaded.
"""

import os

from lcm_device.hal.fs import Fs
from lcm_sim import EXIT_POWER_CUT


class PowerCut(SystemExit):
    """Raised by the fault injector; not an Exception, so nothing catches it by accident."""


class FaultyFs(Fs):
    """Flash mutations counted; the `fault_at`-th one cuts the power."""

    def __init__(self, fault_at=0, fail=""):
        self.fault_at = fault_at
        self.mutations = 0
        self.dead = False
        # "full@k" / "ro@k": the flash fails from the k-th mutation on.
        self.fail_mode, _, at = fail.partition("@")
        self.fail_at = int(at) if at else 0

    def _tick(self, grows=True):
        # True when this mutation is the one that cuts the power; raises when the flash
        # is full (for a mutation that needs space: `grows`) or read-only.
        if self.dead:
            raise PowerCut(EXIT_POWER_CUT)
        self.mutations += 1
        if self.mutations == self.fail_at:
            print("lcm-hal: flash " + self.fail_mode + " from mutation " + str(self.fail_at))
        if self.failing() and (grows or self.fail_mode == "ro"):
            raise OSError(28 if self.fail_mode == "full" else 30)
        return self.mutations == self.fault_at

    def failing(self):
        return self.fail_at > 0 and self.mutations >= self.fail_at

    def full(self):
        """Whether the flash is full now (`LCM_FLASH_FAIL=full@k`, from the k-th mutation on)."""
        return self.fail_mode == "full" and self.failing()

    def cut(self):
        self.dead = True
        print("lcm-hal: power cut at flash mutation " + str(self.mutations))
        raise PowerCut(EXIT_POWER_CUT)

    def open_write(self, path):
        if self._tick(grows=False):
            open(path, "wb").close()  # created and truncated, nothing written
            self.cut()
        return CountedFile(self, open(path, "wb"))

    def open_append(self, path):
        if self._tick(grows=False):
            open(path, "ab").close()
            self.cut()
        return CountedFile(self, open(path, "ab"))

    def rename(self, old, new):
        if self._tick(grows=False):
            self.cut()  # a rename is atomic: cut before it happens
        os.rename(old, new)

    def remove(self, path):
        if self._tick(grows=False):
            self.cut()
        os.remove(path)
        self._freed()

    def _freed(self):
        # A full flash has room again once something was removed.
        if self.full():
            self.fail_at = 0

    def mkdir(self, path):
        if self._tick():
            self.cut()
        os.mkdir(path)

    def rmdir(self, path):
        if self._tick(grows=False):
            self.cut()
        os.rmdir(path)
        self._freed()


class CountedFile:
    """A file whose writes are flash mutations of its FaultyFs."""

    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def write(self, data):
        if self._fs._tick():
            self._f.write(data[: len(data) // 2])
            self._f.close()
            self._fs.cut()
        return self._f.write(data)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
