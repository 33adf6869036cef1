# The device's /main.py: picks the manager slot and starts it (source: lcm_device/main.py).
#
# It is never updated over the air, so it does as little as possible: read
# /lcm/state/boot.json, count a boot of a manager in trial (rolling back to
# the previous manager after `trial_boots` of them, with one atomic rename,
# as lcm_device/slots.py does for apps), put the slot on sys.path and run
# lcm_device.boot. A manager that fails to import or crashes resets the
# board, so its trial boots run out and the previous manager comes back.
import json
import os
import sys

R = os.getcwd().rstrip("/")
S = R + "/lcm/state/boot.json"
try:
    with open(S) as f:
        b = json.load(f)
except (OSError, ValueError):
    b = {}
m = b.get("mgr") or "m0"
t = b.get("mgr_trial")
if t is not None:
    if t >= b.get("trial_boots", 3) and b.get("mgr_prev"):
        print("main.py: manager " + str(b.get("mgr_tag")) + " failed its trial; rolling back")
        b["mgr_bad"] = b.get("mgr_tag")
        b["mgr_bad_seq"] = b.get("mgr_seq")
        m = b["mgr"] = b["mgr_prev"]
        b["mgr_tag"] = b.get("mgr_prev_tag")
        b["mgr_seq"] = b.get("mgr_prev_seq")
        b["mgr_trial"] = b["mgr_prev"] = b["mgr_prev_tag"] = b["mgr_prev_seq"] = None
    else:
        b["mgr_trial"] = t + 1
    with open(S + ".tmp", "w") as f:
        f.write(json.dumps(b))
    os.rename(S + ".tmp", S)
sys.path.insert(0, R + "/lcm/" + m)
try:
    from lcm_device.boot import main

    main()
except Exception as e:
    # A manager that cannot start: in trial, reset so its trial boots run out.
    print("main.py: manager " + m + " failed: " + repr(e))
    if t is None:
        raise
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        raise SystemExit(75) from None
