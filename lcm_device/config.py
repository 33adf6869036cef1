"""Device settings in /lcm/state/config.json (keys and defaults: docs/device.md, "Config").

`load(hal)` never fails: a missing or damaged file gives the last good copy,
else the defaults, so a device always boots far enough to reach its setup
portal. `save(hal, cfg)` writes only what differs from the defaults,
atomically (temp + rename). `keep_good(hal)`, once per boot, keeps the copy.

The last good copy, /lcm/state/config.good.json, holds the bytes of the last
config.json that parsed as a JSON object. A torn config.json (truncated, or
a tail of 0xFF) is no JSON object, since its closing brace is gone: then the
copy is used and the damage logged. `keep_good` refreshes the copy whenever
config.json parses and differs from it (compared from flash, 64 bytes at a
time), whoever wrote config.json (the device, a factory image, a tool), and
writing the copy may fail (full or read-only flash) without consequence.
"""

import json

from lcm_device.hal.fs import makedirs, pump, write_atomic

PATH = "/lcm/state/config.json"
GOOD = "/lcm/state/config.good.json"
_MAX_CONFIG = 8192  # larger is not a config this device wrote

DEFAULTS = {
    "web_url": "https://github.com",
    "manager_repo": None,
    "manager_roots": [],
    "manager_threshold": 1,
    "repo": None,
    "app_roots": [],
    "app_threshold": 1,
    "channel": "stable",
    "wifi_ssid": None,
    "wifi_password": None,
    "setup_password": None,
    "setup_open": False,
    "setup_timeout_s": 900,
    "check_interval_s": 14400,
    "log_host": None,
    "log_port": 45678,
    "trial_boots": 3,
    "confirm_after_s": 30,
    "http_timeout_ms": 10000,
    "min_rate": 256,
    "check_rate": 1024,
    "check_slack_s": 30,
    "check_resumes": 3,
    "allow_http_redirect": False,
    "gestures": True,
}


def load(hal):
    # MicroPython dicts have no __missing__: start from a copy of the defaults.
    cfg = dict(DEFAULTS)
    cfg["board"] = hal.board
    data = _read(hal.root + PATH)
    if data is None:
        from lcm_device.compat import file_size

        data = _read(hal.root + GOOD)
        if file_size(hal.root + PATH) >= 0:
            print("config: " + PATH + " damaged; using " + ("defaults" if data is None else GOOD))
        elif data is not None:
            print("config: " + PATH + " missing; using " + GOOD)
        # Neither: a device not set up yet (its setup page writes the file), nothing to say.
    if data is not None:
        for key in data:
            cfg[key] = data[key]
    return cfg


def _read(path):
    from lcm_device.compat import file_size

    if file_size(path) > _MAX_CONFIG:
        return None
    try:
        with open(path) as f:
            data = json.load(f)  # streamed: no buffer of the file's size
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def keep_good(hal):
    """Copy config.json to the last good copy when it parses and they differ (the boot
    calls it once, first: its garbage is gone before what lives through the boot)."""
    from lcm_device.compat import file_size

    if _read(hal.root + PATH) is None:
        return

    if file_size(hal.root + PATH) == file_size(hal.root + GOOD):
        try:
            with open(hal.root + PATH, "rb") as fa, open(hal.root + GOOD, "rb") as fb:
                while True:
                    x = fa.read(64)
                    if x != fb.read(64):
                        break
                    if not x:
                        return  # the same bytes: the copy is up to date
        except OSError:
            pass
    tmp = hal.root + GOOD + ".tmp"
    try:
        out = hal.fs.open_write(tmp)
        try:
            with open(hal.root + PATH, "rb") as f:
                pump(f, memoryview(bytearray(64)), -1, out, None)
        finally:
            out.close()
        hal.fs.rename(tmp, hal.root + GOOD)
    except OSError:
        pass  # a full or read-only flash: the copy is refreshed at a later boot


def save(hal, cfg):
    out = {}
    for key in cfg:
        if cfg[key] != DEFAULTS.get(key) and not (key == "board" and cfg[key] == hal.board):
            out[key] = cfg[key]
    makedirs(hal.fs, hal.root + "/lcm/state")
    write_atomic(hal.fs, hal.root + PATH, json.dumps(out))
