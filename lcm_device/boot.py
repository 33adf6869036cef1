"""What the device does at every boot, after /lcm/pick.py picked the manager slot.

Two kinds of boot (docs/device.md, "Boot flow"):

- an **update boot** when a check is due (the schedule, `lcm.request_update()`,
  a gesture, a manager or firmware on trial): network, the checks (manager
  first, then app), then a reset into an app boot (lcm_device.checkboot). The
  app does not run in it: the engine's imports are not in the app's heap.
- an **app boot** otherwise: the app's trial boot is counted, the check timer
  armed and the app run from its slot (/lcm/appN/main.py, imported as module
  `main`). After an update boot (its marker, lcm_device.slots.APP_NEXT) it
  does nothing else: no gestures, no schedule, no check. /main.py starts that
  one itself (lcm_device.appstart) when the marker names the manager slot;
  this module does when it does not (a fleet link, a firmware on trial), and
  for a /main.py older than that.

lcm_device.startup does both up to the app or the check, but an app boot
after an update boot, which lcm_device.appboot does alone: startup is not
even imported then, so its code and names stay out of the app's heap. This
module runs the update boot (lcm_device.checkboot) once the boot's steps
are released, so the checks do not carry them, and the app, from a frame
that holds nothing of the manager: what the boot imported is released
first, but the app API, the check timer and what it uses (the HAL), so the
app gets the heap a board without lcm would give it.
"""

import sys

# At import: a manager file missing or damaged fails here, and /main.py runs the other slot.
from lcm_device import appboot
from lcm_device.compat import collect, unload

startup = None
if not appboot.after_update():
    # No marker, no app boot: the boot's steps load at import, so a damaged one falls back
    # too. The app boot needs only appboot's: the update boot before it checked the
    # manager's files (aftercheck.repair_manager) a moment ago.
    from lcm_device import startup

# The manager slot this code runs from, set by /main.py; None: a /main.py that does not say.
RUNNING = None

# What stays loaded while the app runs: the app API (`import lcm`: app, slots and what
# they import), the check timer and what it uses (the HAL, and compat, whose uptime its
# clock counts). The log is loaded again when a line is logged (lcm_device.log), unless
# the boot's steps keep it.
# One string each, split where used: a tuple constant is an object in RAM while this module
# is loaded (all along, on a board), a string is not.
_KEEP = (
    "lcm_device.app lcm_device.slots cert_sector.bootstate"
    " lcm_device.checktimer lcm_device.compat lcm_device.hal"
    " lcm_device.hal.board lcm_device.hal.fs"
)


# The boot's steps, released before an update boot's checks: their heap is the checks'.
# (gestures was taken out of sys.modules by startup, not out of its package.)
_STEPS = (
    "lcm_device.startup lcm_device.appboot lcm_device.trial lcm_device.mainfile"
    " lcm_device.schedule lcm_device.due lcm_device.gestures lcm_device.config"
)


def main():
    global startup, appboot
    steps = startup if startup is not None else appboot  # appboot: the app boot after an update
    app = steps.run(RUNNING)  # (path, tag, kept), ("check", power, buf) or None
    steps = startup = appboot = None  # released with the rest before the app
    if app is not None and app[0] == "check":
        power, buf = app[1], app[2]
        app = None
        unload(_STEPS.split(), True)
        from lcm_device import checkboot
        from lcm_device.hal import get

        # Resets the board into the app boot; returns the app where it cannot.
        app = checkboot.run(get(), power, buf, RUNNING)
        checkboot = buf = None
    if app is not None:
        _run_app(app[0], app[1], app[2])


def _run_app(path, tag, keep):
    mine = tuple(["lcm_device.", "cert_sector."])  # made here: not a tuple constant in RAM
    # And what the boot's steps keep (appboot.prepare_app: the log, at times).
    keep += tuple(_KEEP.split())
    unload([n for n in sys.modules if n.startswith(mine) and n not in keep], True)
    keep = None
    sys.path.insert(0, path)
    # The slot is the app's working place: its relative paths stay inside it.
    import os

    os.chdir(path)
    os = None
    collect()
    try:
        __import__("main")
        failure = None
    except Exception as exc:
        # As text: the exception's traceback would hold the app's heap through what follows.
        failure = exc.__class__.__name__ + ": " + str(exc)
    from lcm_device.appexit import after_app

    after_app(tag, failure)  # a failure resets: a failed trial boot; else confirmed
