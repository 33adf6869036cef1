"""/main.py starts the manager and nothing updates it, so the boot keeps a copy
and puts it back when an app removed or emptied it: before the app runs (`keep`),
after it returned or raised and every second from the check timer (`restore`).
An app that removes it and cuts the power itself beats this (docs/device.md).

A module of its own: what runs after the app (lcm_device.boot) and the check
timer import it only when /main.py is gone, not the boot's other steps.
"""

from lcm_device.compat import file_size

MAIN = "/main.py"
COPY = "/lcm/state/main.py.good"


def keep(hal):
    if file_size(hal.root + MAIN) > 0 and file_size(hal.root + COPY) < 0:
        _copy(hal, hal.root + MAIN, hal.root + COPY)


def restore(hal, log):
    """Put /main.py back from its copy when it is missing or empty, and say so."""
    if file_size(hal.root + MAIN) > 0 or file_size(hal.root + COPY) <= 0:
        return
    _copy(hal, hal.root + COPY, hal.root + MAIN)
    log("boot: /main.py was removed; restored from " + COPY)


def _copy(hal, source, target):
    from lcm_device.hal.fs import pump

    tmp = target + ".tmp"
    out = hal.fs.open_write(tmp)
    try:
        with open(source, "rb") as f:
            pump(f, memoryview(bytearray(256)), -1, out, None)
    finally:
        out.close()
    hal.fs.rename(tmp, target)
