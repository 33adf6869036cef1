# The device's /main.py (source: lcm_device/main.py), never updated over the air.
#
# The app boot that follows an update boot is started here alone: the update boot
# counted the app's trial boot and left its marker (/lcm/state/app.next, written by
# lcm_device.appboot.marker_for: its reset cause, JSON naming the app's slot and tag,
# the next check and when to confirm a trial app, then the manager slot it ran from).
# lcm_device.appstart, from that slot, arms the check timer and readies the app, which
# then runs in this file's frame with only the check timer (lcm_device.checktimer)
# beside it, and the app API once it imports `lcm`. This file's code stays in the heap
# while the app runs, so it is kept this short. A marker without a manager slot (a
# fleet link, a firmware on trial, an older manager), a power-on boot (the power went
# in between) or a marker that cannot be removed make a boot like any other:
# /lcm/pick.py picks the manager slot, counts its trial and starts it (docs/device.md,
# "Boot flow").
import os
import sys

R = os.getcwd().rstrip("/")
a = None
try:
    with open(R + "/lcm/state/app.next") as f:
        a = f.read(512).split("\n")[2]  # a manager slot: this file starts the app
except Exception:  # none, or damaged (a boot like any other removes it): never stop here
    a = None
if a:
    sys.path.insert(0, R + "/lcm/" + a)
    try:
        from lcm_device.appstart import start

        a = start(R)  # the app's tag, the app ready to start; None: a boot like any other
    except Exception:  # damaged: a boot like any other (its boot checks the manager)
        a = None
    start = None
    if a is None:
        sys.path.pop(0)
if a is None:
    sys.path.insert(0, R + "/lcm")
    import pick  # /lcm/pick.py

    sys.path.pop(0)
    del sys.modules["pick"]  # the app may have a module of that name
    pick.main()
else:
    t = a
    try:
        __import__("main")
        a = None
    except Exception as x:
        a = x.__class__.__name__ + ": " + str(x)  # text: the traceback holds the app's heap
    from lcm_device.appexit import after_app

    after_app(t, a)  # a failure resets: a failed trial boot; else confirmed
