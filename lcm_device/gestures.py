"""Power-cycle gestures and the optional button: how a user talks to a device without a screen.

Counting (as LCM): every power-on adds one to a counter on flash *before*
anything else happens. Once the device has stayed powered QUICK_S seconds the
cycle was not quick and the count ends:

| quick power cycles | action |
| --- | --- |
| 1-4 | nothing |
| 5-7 | check for updates now |
| 8-10 | forget Wi-Fi (back to setup) |
| 11-13 | nothing (the way to abort) |
| 14+ | factory reset |

From the second quick cycle on, the boot waits QUICK_S (logging the count)
so the user can keep cycling; when the count calls for an action, a
countdown of COUNTDOWN_S seconds is logged first. A power cut during the wait
or the countdown counts one more cycle: it escalates to the next action or,
from 11, aborts. The counter is cleared only after the action is done, so a
cut in the middle of a factory reset finishes it at the next boot.

A single power-on (count 1) does not wait: the boot carries on and
`settle(hal, now_s)` clears the count once the device has been up QUICK_S (the
check timer polls it while the app runs). If that never happens (no app, the
unix port), the next power-on shows count 2, waits QUICK_S and clears it: a
late settle costs one wait, never an accidental gesture.

The counter lives in a small file through `hal.fs` (temp + rename). RTC
memory is not used: on these boards it survives a reset but not a power
cut, and power cuts are what is counted.

Optional button (`button_pin` in the config, active low with pull-up, like
the BOOT button): pressed at boot = check now; held LONG_S seconds = setup.
"""

from lcm_device.compat import collect, const, sleep_ms
from lcm_device.log import log

PATH = "/lcm/state/gesture"
# Same file as lcm_device.schedule.REQUEST (a test keeps them equal).
CHECK_REQUEST = "/lcm/state/check.now"
QUICK_S = 4
COUNTDOWN_S = 6
LONG_S = 5

CHECK = "check"
FORGET_WIFI = "forget-wifi"
FACTORY_RESET = "factory-reset"
SETUP = "setup"

# Config kept by a factory reset: the manager and its pinned keys; plus any key
# the factory image listed in `factory_keys` (e.g. repo, app_roots, app_threshold).
KEEP = ("board", "web_url", "manager_repo", "manager_roots", "manager_threshold", "factory_keys")
# State removed by a factory reset (besides the erased settings).
STATE_FILES = (
    "/lcm/state/schedule.json",
    CHECK_REQUEST,
    "/lcm/state/log.ring",
    "/lcm/state/log.ring.old",
    PATH,
)

_MAX_COUNT = const(99)
_POLL_MS = const(100)

# settle() has looked at the counter in this process. Module state is lost when the
# boot unloads this module to free heap: a fresh import then reads the file once.
_settled = False


def action_for(count):
    if 5 <= count <= 7:
        return CHECK
    if 8 <= count <= 10:
        return FORGET_WIFI
    if count >= 14:
        return FACTORY_RESET
    return None


def at_boot(hal, cfg, power_on, sleep=sleep_ms):
    """Count this boot, run a finished gesture or the button; returns the action done
    (CHECK, FORGET_WIFI, FACTORY_RESET, SETUP) or None. Blocks only during a gesture."""
    global _settled
    count = read(hal)
    if power_on:
        count = min(count + 1, _MAX_COUNT)
        _write(hal, count)
    if count < 2:
        _settled = count == 0
        return button(hal, cfg, sleep)
    log("gesture: power cycle %d; keep the power on %d s to end" % (count, QUICK_S))
    sleep(QUICK_S * 1000)
    action = action_for(count)
    if action is None:
        log("gesture: %d power cycles: nothing to do" % count)
    else:
        for left in range(COUNTDOWN_S, 0, -1):
            log(
                "gesture: %d power cycles = %s in %d s (cut the power to change)"
                % (count, action, left)
            )
            sleep(1000)
        perform(hal, cfg, action)
    _write(hal, 0)
    _settled = True
    return action


def settle(hal, now_s):
    """Clear a single power-on's count once the device has been up QUICK_S seconds
    (reads the counter once per process, writes only when it is not already 0)."""
    global _settled
    if not _settled and now_s >= QUICK_S:
        _settled = True
        if read(hal):
            _write(hal, 0)


def perform(hal, cfg, action):
    """Do what a gesture or the button asked for; `cfg` is the config the boot loaded."""
    log("gesture: " + action)
    collect()  # room for the module the action needs
    if action == CHECK:
        # schedule.request_check without loading the schedule module (heap).
        from lcm_device.hal.fs import makedirs

        makedirs(hal.fs, hal.root + "/lcm/state")
        hal.fs.open_write(hal.root + CHECK_REQUEST).close()
    elif action == FORGET_WIFI:
        from lcm_device import config

        cfg["wifi_ssid"] = None
        cfg["wifi_password"] = None
        config.save(hal, cfg)
    elif action == FACTORY_RESET:
        factory_reset(hal, cfg)


def factory_reset(hal, cfg):
    """Erase settings, credentials and life-cycle state; keep the manager, its pinned keys
    and whatever the factory image listed in `factory_keys`. `cfg` (the loaded config)
    is reset in place to what a fresh load would now give."""
    from lcm_device import config
    from lcm_device.hal.fs import remove_if_exists

    keep = list(KEEP)
    extra = cfg.get("factory_keys")
    if isinstance(extra, list):
        keep.extend(k for k in extra if isinstance(k, str))
    for key in list(cfg):
        if key not in keep:
            cfg[key] = config.DEFAULTS.get(key)
    config.save(hal, cfg)
    for path in STATE_FILES:
        remove_if_exists(hal.fs, hal.root + path)


def button(hal, cfg, sleep=sleep_ms):
    """CHECK when the button is pressed at boot, SETUP when held LONG_S; else None."""
    pin = _pin(hal, cfg.get("button_pin"))
    if pin is None or pin.value() != 0:
        return None
    held = 0
    while pin.value() == 0 and held < LONG_S * 1000:
        sleep(_POLL_MS)
        held += _POLL_MS
    action = SETUP if held >= LONG_S * 1000 else CHECK
    log("button: " + action)
    if action == CHECK:
        perform(hal, cfg, CHECK)
    return action


def read(hal):
    """The stored count; a missing or damaged file counts as 0."""
    try:
        with open(hal.root + PATH) as f:
            return max(0, min(int(f.read(4)), _MAX_COUNT))
    except (OSError, ValueError):
        return 0


def _write(hal, count):
    from lcm_device.hal.fs import makedirs, write_atomic

    try:
        makedirs(hal.fs, hal.root + "/lcm/state")
        write_atomic(hal.fs, hal.root + PATH, str(count).encode())
    except OSError as exc:
        log("gesture: cannot save the count: " + repr(exc))


def _pin(hal, number):
    if number is None:
        return None
    try:
        return hal.pin(number)
    except Exception as exc:
        log("button: no pin " + repr(number) + ": " + repr(exc))
        return None
