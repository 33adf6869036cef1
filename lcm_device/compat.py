"""The only place where MicroPython and CPython differ for the device code.

Everything else in `lcm_device/` imports these names from here and never
checks `sys.implementation`: the same modules run on a board, in the unix
port (tests, `lcm device simulate`) and on CPython (unit tests).
"""

import os
import sys
from gc import collect  # exported: a collect keeps the peak heap low

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:  # CPython
    from time import monotonic, sleep

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        sleep(ms / 1000)


_last_ticks = ticks_ms()
_uptime_ms = 0


def uptime_s():
    """Seconds since this module was imported (the boot's first import). ticks_ms wraps
    (every ~12 days on MicroPython), so elapsed ticks are accumulated: call it at least
    every few days (the check timer polls every second). One base for the schedule, the
    check timer and the log's `+Ns`, which live through the boot in different modules."""
    global _last_ticks, _uptime_ms
    t = ticks_ms()
    _uptime_ms += ticks_diff(t, _last_ticks)
    _last_ticks = t
    return _uptime_ms // 1000


def random_bytes(n):
    """`n` unpredictable bytes (os.urandom exists on the unix port, ESP32 and ESP8266)."""
    try:
        return os.urandom(n)
    except (AttributeError, NotImplementedError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def file_size(path):
    """Size in bytes, or -1 when the file does not exist."""
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def listdir(path):
    """Names in a folder; empty when it does not exist."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def free_bytes(path):
    """Free bytes on the filesystem holding `path`, or None when the port cannot tell."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is None:
        return None
    try:
        st = statvfs(path or "/")
    except OSError:
        return None
    return st[0] * st[4]


def free_heap():
    """Free bytes of the GC heap, or None where there is no such figure (CPython)."""
    try:
        import gc

        return gc.mem_free()
    except (ImportError, AttributeError):
        return None


def unload(names, release):
    """Take modules out of sys.modules. With `release` true, out of their package's attributes
    too, so that their objects are freed (a submodule stays an attribute of its package);
    without, `from package import name` still finds it and does not load it again."""
    for name in names:
        sys.modules.pop(name, None)
        cut = name.rfind(".")
        # Released after an unload without: the package's attribute is all that is left.
        package = sys.modules.get(name[:cut]) if release and cut > 0 else None
        if package is not None and name[cut + 1 :] in package.__dict__:
            delattr(package, name[cut + 1 :])
    collect()


def errno_text(exc):
    """What a flash write's OSError means, for a log line."""
    code = exc.args[0] if exc.args else None
    return {28: "flash full", 30: "flash read-only"}.get(code, "OSError " + str(code))


def step(fn, *args):
    """Run one boot step; a full or read-only flash (OSError) is logged, the boot goes on,
    and so it does when the heap is too fragmented for the step (MemoryError): the app
    runs rather than a crash at every boot. The log is imported only to say so (the app
    boot after an update boot logs nothing otherwise: the app's heap)."""
    try:
        return fn(*args)
    except MemoryError:
        why = "MemoryError"
    except OSError as exc:
        why = errno_text(exc)
    from lcm_device.log import log

    log("boot: %s skipped (%s)" % (fn.__name__.lstrip("_"), why))
    return None


# The text of the device's messages in a .mpy build: publisher/mpytext.py moves each one out
# of the compiled code into catalog.txt, one a line, beside this module, and puts
# `_text(N, K)` in its place, N the byte offset of its line (a string constant of a module
# loaded from a .mpy file is an object in the heap for as long as the module is loaded; the
# catalog is read from flash only when a message is made). It ships, and is replaced, with
# the modules of its build: a manager slot holds both (publisher/device/manager.py). The
# sources and a frozen build keep their strings and never call this.
_MESSAGE_READ = const(256)  # publisher/mpytext.py's MAX_MESSAGE and the line break


def text(n, k):
    """The message at byte `n` of the catalog, as the source wrote it; `k`: how many values
    its `%` specifiers take."""
    try:
        with open(__file__[: __file__.rfind("/") + 1] + "catalog.txt", "rb") as f:
            f.seek(n)
            line = f.read(_MESSAGE_READ)
        end = line.find(b"\n")
        if end >= 0:
            return line[:end].decode()
    except (OSError, UnicodeError):
        pass
    # Damaged or missing (a slot's self-check repairs it): say which message it was, with
    # its values, and take as many as the message would (a TypeError would replace it).
    # A space after it: a message may be the first piece of a concatenation.
    return "[message %d, catalog.txt unreadable] " % n + "%r " * k
