"""/main.py and /lcm/pick.py start the manager and nothing updates them, so the boot
keeps a copy of each and puts one back when an app removed or emptied it: before the
app runs (`keep`), after it returned or raised, and from the check timer (`restore`)
within the second. An app that removes them and cuts the power itself beats this
(docs/device.md).

A module of its own: what runs after the app (lcm_device.appexit) and the check
timer's chores (lcm_device.timerwork) import it, not the boot's other steps.
"""

from lcm_device.compat import file_size

MAIN = "/main.py"
COPY = "/lcm/state/main.py.good"
PICK = "/lcm/pick.py"
PICK_COPY = "/lcm/state/pick.py.good"


def keep(hal):
    for path, copy in [(MAIN, COPY), (PICK, PICK_COPY)]:
        if file_size(hal.root + path) > 0 and file_size(hal.root + copy) < 0:
            _copy(hal, hal.root + path, hal.root + copy)


def restore(hal, log):
    """Put /main.py and /lcm/pick.py back from their copies when missing or empty; say so."""
    for path, copy in [(MAIN, COPY), (PICK, PICK_COPY)]:
        if file_size(hal.root + path) <= 0 and file_size(hal.root + copy) > 0:
            _copy(hal, hal.root + copy, hal.root + path)
            log("boot: " + path + " was removed; restored from " + copy)


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
