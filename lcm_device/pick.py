# /lcm/pick.py: picks the manager slot and starts it (source: lcm_device/pick.py).
#
# /main.py runs `main()` at every boot but the app boot after an update boot. Like
# /main.py it is never updated over the air, so it does as little as possible: read the
# boot state (two generations, /lcm/state/boot0.json and boot1.json, each
# "JSON\n16 hex digits of its sha256\n"; the valid one with the higher "gen"
# wins, rules as in lcm_device/slots.py), count a boot of a manager in trial
# (a power-on boot forgives the boot before it: a power cut is not a crash;
# after `trial_boots` held against it the previous manager comes back), put
# the slot on sys.path and run lcm_device.boot. A manager in trial that fails
# to import or crashes resets the board, so its trial boots run out. A
# confirmed manager that does not import (its files damaged) falls back to the
# other slot, then to a manager frozen into the firmware, if there is one.
import os
import sys

R = os.getcwd().rstrip("/")


def pick():
    # The manager slot to run and its trial boots counted (None: not on trial). A function:
    # what it reads and imports is released once it ran, and its code after (main).
    import json

    D = R + "/lcm/state/"

    def rd(n):
        try:
            with open(D + n, "rb") as f:
                d = f.read(2048)
            from binascii import hexlify
            from hashlib import sha256

            if hexlify(sha256(d[:-18]).digest()[:8]) == d[-17:-1]:
                return json.loads(d[:-18])
        except (OSError, ValueError):
            pass
        return None

    b = None
    for n in ("boot0.json", "boot1.json"):
        c = rd(n)
        if (
            isinstance(c, dict)
            and isinstance(c.get("gen"), int)
            and (b is None or c["gen"] > b["gen"])
        ):
            b = c
    if b is None:
        try:  # the single boot.json of older managers
            with open(D + "boot.json") as f:
                b = json.load(f)
            b["gen"] = 0
        except (OSError, ValueError, TypeError):
            b = {"gen": 0}  # none: lcm_device.boot rebuilds the state from the slots
    m = b.get("mgr") or "m0"
    t = b.get("mgr_trial")
    if t is not None:
        try:
            import machine

            p = machine.reset_cause() == machine.PWRON_RESET
        except (ImportError, AttributeError):  # the unix port's machine has no reset_cause
            p = os.getenv("LCM_BOOT_CAUSE", "power") == "power"
        if p and t > 0:
            t -= 1  # the boot before lost its power: not the manager's fault
        if t >= (b.get("trial_boots") or 3) and b.get("mgr_prev"):
            print("main.py: manager " + str(b.get("mgr_tag")) + " failed its trial; rolling back")
            b["mgr_bad"] = b.get("mgr_tag")
            b["mgr_bad_seq"] = b.get("mgr_seq")
            b["mgr_bad_why"] = "manager crashed or reset in " + str(t) + " trial boots"
            m = b["mgr"] = b["mgr_prev"]
            b["mgr_tag"] = b.get("mgr_prev_tag")
            b["mgr_seq"] = b.get("mgr_prev_seq")
            b["mgr_trial"] = b["mgr_boots"] = b["mgr_prev"] = b["mgr_prev_tag"] = None
            b["mgr_prev_seq"] = t = None
        else:
            b["mgr_trial"] = t + 1
            b["mgr_boots"] = (b.get("mgr_boots") or 0) + 1
        b["gen"] += 1
        s = json.dumps(b).encode()
        from binascii import hexlify
        from hashlib import sha256

        n = D + "boot" + str(b["gen"] % 2) + ".json"
        try:
            with open(n + ".tmp", "wb") as f:
                f.write(s + b"\n" + hexlify(sha256(s).digest()[:8]) + b"\n")
            os.rename(n + ".tmp", n)
        except OSError as e:
            # Full or read-only flash: an uncounted trial could crash for ever, so the
            # previous manager runs this boot (lcm_device.trial.count_boot does the same).
            print("main.py: cannot count the trial boot (" + repr(e) + "); previous manager")
            if b.get("mgr_prev"):
                m, t = b["mgr_prev"], None
        s = None
    return m, t


def run(slot, t):
    # `slot` None: only what the firmware has frozen in. `t`: its trial boots (None: not
    # on trial). The exception that stopped it, or None.
    for k in [k for k in sys.modules if k.startswith(("lcm_device", "cert_sector"))]:
        del sys.modules[k]
    if slot:
        sys.path.insert(0, R + "/lcm/" + slot)
    try:
        from lcm_device import boot
    except Exception as e:
        if slot:
            sys.path.pop(0)
        return e
    boot.RUNNING = slot  # the slot this manager runs from (it may not be the active one)
    try:
        boot.main()
    except Exception as e:
        if t is None:
            raise
        return e  # a manager in trial that crashes: reset below
    return None


def main():
    global pick
    m, t = pick()
    # Released: a module's function keeps its code only while it is referenced (this
    # module's top-level code went when its import ended), and the boot and the app run
    # below this frame.
    pick = None
    e = run(m, t)
    if e is not None and t is None:
        print("main.py: manager " + m + " does not import: " + repr(e))
        for o in ({"m0": "m1"}.get(m, "m0"), None):
            e = run(o, t)
            if e is None:
                break
            print("main.py: manager " + str(o) + " does not import either: " + repr(e))
    if e is not None:
        # A manager in trial that cannot start: reset so its trial boots run out.
        print("main.py: manager " + m + " failed: " + repr(e))
        try:
            import machine

            machine.reset()
        except (ImportError, AttributeError):
            raise SystemExit(75) from None
