"""The app boot after an update boot, as /main.py starts it (docs/device.md, "Boot flow").

/main.py imports this module when the update boot's marker (slots.APP_NEXT)
names a manager slot on its third line: the update boot counted the app's
trial boot and wrote what the app boot needs into the marker's JSON (the
app's slot and tag, the next check, when to confirm a trial app,
appboot.marker_for). `start` removes the marker, arms the check timer
(lcm_device.timerwork), puts the app's slot on sys.path and makes it the
working folder, then releases this module and timerwork: /main.py runs the
app in its own frame with only the check timer beside it. A power-on (the
power went in between) or a marker that cannot be removed make a boot like any
other, which lcm_device.appboot handles.
"""

import json
import os
import sys

from lcm_device.compat import unload


def start(root):
    """The app's tag once it is ready to start, or None: a boot like any other."""
    path = root + "/lcm/state/app.next"  # slots.APP_NEXT (slots is the app API's to load)
    try:
        with open(path, "rb") as f:
            fields = json.loads(f.read(512).split(b"\n")[1])
        slot, tag = fields["app"], fields["app_tag"]
        timer = fields["check_in"], fields["confirm_in"], fields["hal_timer"], fields["settled"]
        if _power_on():
            return None
        app = root + "/lcm/" + slot
        os.stat(app)  # there (nothing below may fail once the marker is gone)
        os.remove(path)  # a marker that stays would skip every check: a boot like any other
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None
    fields = None
    try:
        from lcm_device.timerwork import arm

        arm(root, *timer, checked=True)  # the update boot checked
    except Exception as exc:  # damaged: the app runs, its checks wait for the next boot
        print("main.py: no check timer: " + repr(exc))
    arm = timer = None
    unload(["lcm_device.timerwork", "lcm_device.appstart"], True)
    sys.path.insert(0, app)
    os.chdir(app)  # the app's working place: its relative paths stay inside its slot
    return tag


def _power_on():
    import machine

    try:
        return machine.reset_cause() == machine.PWRON_RESET
    except AttributeError:  # the unix port's machine has no reset_cause (the simulator says)
        return os.getenv("LCM_BOOT_CAUSE", "power") == "power"
