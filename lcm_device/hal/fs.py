"""Flash mutations, and the few tree helpers built on them.

Every write, rename, remove, mkdir and rmdir of the device goes through an
`Fs` object, so the unix HAL can cut the power at the k-th one (fault
injection). Helpers here only combine those primitives; reading is plain
`open(path, "rb")`, which changes nothing.

`rename` replaces an existing target atomically: the property every state
switch relies on. LittleFS (the ESP32/ESP8266 default) and POSIX both
guarantee it.
"""

import os

from lcm_device.compat import exists, is_dir, listdir


class Fs:
    """Plain flash mutations (boards); the unix HAL subclasses it to inject power cuts."""

    def open_write(self, path):
        return open(path, "wb")

    def open_append(self, path):
        return open(path, "ab")

    def rename(self, old, new):
        os.rename(old, new)

    def remove(self, path):
        os.remove(path)

    def mkdir(self, path):
        os.mkdir(path)

    def rmdir(self, path):
        os.rmdir(path)


def makedirs(fs, path):
    """Create `path` and its missing parents (absolute or relative, e.g. a unix root "state")."""
    path = path.rstrip("/")
    if not path or is_dir(path):
        return
    cut = path.rfind("/")
    if cut > 0:  # -1: a relative top folder has no parent to make; 0: the parent is "/"
        makedirs(fs, path[:cut])
    fs.mkdir(path)


def remove_tree(fs, path):
    """Remove a file or a folder with everything in it; absent is fine."""
    if is_dir(path):
        for name in listdir(path):
            remove_tree(fs, path + "/" + name)
        fs.rmdir(path)
    elif exists(path):
        fs.remove(path)


def remove_if_exists(fs, path):
    if exists(path):
        fs.remove(path)


def write_atomic(fs, path, data):
    """Replace `path` by `data` with temp + rename: a power cut leaves the old or the new file."""
    tmp = path + ".tmp"
    f = fs.open_write(tmp)
    try:
        f.write(data)
    finally:
        f.close()
    fs.rename(tmp, path)


def pump(src, mv, n, out, h):
    """Move up to `n` bytes (all, when `n` < 0) from `src.readinto` through the buffer
    `mv` into `out.write` and `h.update` (either may be None); returns the bytes moved.
    (No defaults: a function's defaults cost RAM on a board.)

    The device's one read-into-flash loop: downloads, copies and hashes all use it.
    """
    done = 0
    while n:
        k = src.readinto(mv if n < 0 or n >= len(mv) else mv[:n])
        if not k:
            break
        chunk = mv[:k]
        if out is not None:
            out.write(chunk)
        if h is not None:
            h.update(chunk)
        done += k
        n -= k
    return done
