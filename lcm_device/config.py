"""Device settings in /lcm/state/config.json (keys and defaults: docs/device.md, "Config").

`load(hal)` never fails: a missing or damaged file gives the defaults, so a
device always boots far enough to reach its setup portal. `save(hal, cfg)`
writes only what differs from the defaults, atomically (temp + rename).
"""

import json

from lcm_device.hal.fs import makedirs, write_atomic

PATH = "/lcm/state/config.json"

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
    try:
        with open(hal.root + PATH) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        print("config: using defaults (" + str(exc) + ")")
        return cfg
    if isinstance(data, dict):
        for key in data:
            cfg[key] = data[key]
    return cfg


def save(hal, cfg):
    out = {}
    for key in cfg:
        if cfg[key] != DEFAULTS.get(key) and not (key == "board" and cfg[key] == hal.board):
            out[key] = cfg[key]
    makedirs(hal.fs, hal.root + "/lcm/state")
    write_atomic(hal.fs, hal.root + PATH, json.dumps(out))
