"""Wi-Fi: the station with stored credentials first, the setup portal otherwise.

`connect_or_setup(hal, cfg)` returns the connected station interface. It
tries the stored network for `wifi_wait_s` seconds (several attempts: after
a power cut the router boots more slowly than the device), then runs setup
mode; setup mode ends when the user's network works, when the stored
network comes back (retried in the background every `wifi_retry_s`), or
after `setup_timeout_s`, and then the station is tried again.

The setup access point is `LCM-XXXXXX` (the last three bytes of the MAC),
WPA2 with the per-device `setup_password` (or one derived from the unique id
when none was stored at provisioning); open only with `setup_open: true`.
Credentials are written to the config only after a connection with them
succeeded, so a failed attempt keeps the old ones.
"""

import binascii
import hashlib

from lcm_device.compat import const, sleep_ms, ticks_diff, ticks_ms
from lcm_device.log import log

STA = 0
AP = 1
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

CONFIG = "/lcm/state/config.json"
DEFAULT_WAIT_S = 90
DEFAULT_RETRY_S = 30
DEFAULT_SETUP_TIMEOUT_S = 900

_ATTEMPT_MS = const(20000)
_PAUSE_MS = const(2000)
_POLL_MS = const(100)
# Derived setup passwords avoid characters that are easy to misread (0/O, 1/l/I).
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_DERIVED_LEN = const(12)
_SALT = b"lcm setup network v1:"

# Failure values of `status()`: the ESP8266 port's STAT_* (2..4), and the
# ESP32 port's, which are ESP-IDF disconnect reasons (15 and 200..212).
_FAILURES = {
    15: "wrong password (handshake timeout)",
    210: "network not found (no compatible security)",
    211: "network not found (security below the threshold)",
    212: "network not found (signal too weak)",
    200: "the network stopped answering (beacon timeout)",
    201: "network not found",
    202: "wrong password",
    203: "the network refused the connection",
    204: "wrong password (handshake timeout)",
    2: "wrong password",
    3: "network not found",
    4: "the network refused the connection",
}


def seconds(cfg, key, default):
    """A duration setting; a missing, mistyped or negative one takes the default (and says so)."""
    value = cfg.get(key)
    if value is None:
        return default
    if type(value) is not int or value < 0:  # bool is not a duration either
        log("wifi: ignoring " + key + "=" + repr(value) + ", using " + str(default))
        return default
    return value


def ap_name(hal):
    """`LCM-XXXXXX` from the last three bytes of the MAC."""
    return "LCM-" + binascii.hexlify(bytes(hal.unique_id())[-3:]).decode().upper()


def derived_password(unique_id):
    """A 12-character WPA2 password from SHA-256 of the unique id.

    Anyone who knows the MAC (it is on the air) can compute it too: it keeps
    casual neighbours off the setup network, nothing more. Provisioning
    stores a random `setup_password` instead (see docs/portal.md).
    """
    digest = hashlib.sha256(_SALT + bytes(unique_id)).digest()
    n = len(_ALPHABET)
    return "".join(_ALPHABET[b % n] for b in digest[:_DERIVED_LEN])


def ap_password(hal, cfg):
    """The setup network's WPA2 password, or None when it runs open (explicitly)."""
    if cfg.get("setup_open") is True:
        return None
    stored = cfg.get("setup_password")
    if isinstance(stored, str) and 8 <= len(stored) <= 63:
        return stored
    if stored is not None:
        log("wifi: setup_password in the config is not 8..63 characters; using the derived one")
    return derived_password(hal.unique_id())


def join(sta, ssid, password, timeout_ms=_ATTEMPT_MS, pause=sleep_ms):
    """Connect the station; None when it worked, else the reason in words. `pause(ms)`
    waits between polls of the radio (the portal answers DNS meanwhile)."""
    sta.active(True)
    try:
        sta.disconnect()
    except OSError:
        pass
    try:
        sta.connect(ssid, password)
    except OSError as e:  # boards refuse some names outright, or are busy scanning
        return "the radio refused the attempt (" + str(e) + ")"
    start = ticks_ms()
    while True:
        if sta.isconnected():
            return None
        reason = _FAILURES.get(sta.status())
        if reason is not None:
            return reason
        if ticks_diff(ticks_ms(), start) >= timeout_ms:
            return "no answer from the network (timed out)"
        pause(_POLL_MS)


def station(sta, cfg):
    """Try the stored network for `wifi_wait_s` seconds; True when connected."""
    ssid = cfg.get("wifi_ssid")
    if not ssid:
        return False
    wait_ms = seconds(cfg, "wifi_wait_s", DEFAULT_WAIT_S) * 1000
    start = ticks_ms()
    attempt = 0
    while True:
        attempt += 1
        left = wait_ms - ticks_diff(ticks_ms(), start)
        password = cfg.get("wifi_password") or ""
        reason = join(sta, ssid, password, max(1000, min(_ATTEMPT_MS, left)))
        if reason is None:
            log("wifi: connected to " + repr(ssid) + " at " + sta.ifconfig()[0])
            return True
        log("wifi: attempt " + str(attempt) + " to join " + repr(ssid) + " failed: " + reason)
        if ticks_diff(ticks_ms(), start) + _PAUSE_MS >= wait_ms:
            return False
        sleep_ms(_PAUSE_MS)


class BackgroundRetry:
    """While in setup mode: rejoin the stored network every `every_ms`; poll() says when up."""

    def __init__(self, sta, ssid, password, every_ms):
        self.sta = sta
        self.ssid = ssid
        self.password = password
        self.every_ms = every_ms
        self.last = ticks_ms()

    def poll(self):
        if self.sta.isconnected():
            return True
        now = ticks_ms()
        if ticks_diff(now, self.last) >= self.every_ms:
            self.last = now
            try:
                self.sta.connect(self.ssid, self.password)
            except OSError as e:
                log("wifi: background retry failed: " + str(e))
        return False

    def restart(self):
        # The user's attempt replaced the station's connection; start the retry over.
        self.last = ticks_ms()
        try:
            self.sta.connect(self.ssid, self.password)
        except OSError as e:
            log("wifi: background retry failed: " + str(e))


def save_config(hal, cfg):
    """Write the config atomically (the engine's `config.save` once it exists)."""
    try:
        from lcm_device.config import save
    except ImportError:
        save = _save_json
    save(hal, cfg)


def _save_json(hal, cfg):
    import json

    path = hal.root + CONFIG
    f = hal.fs.open_write(path + ".tmp")
    try:
        f.write(json.dumps(cfg))
    finally:
        f.close()
    hal.fs.rename(path + ".tmp", path)


def start_ap(hal, cfg):
    """Bring up the setup access point; (the AP interface, its name)."""
    ap = hal.wlan(AP)
    ap.active(True)
    name = ap_name(hal)
    password = ap_password(hal, cfg)
    if password is None:
        ap.config(essid=name, authmode=AUTH_OPEN)
        log("wifi: setup network " + name + " (OPEN: setup_open is set)")
    else:
        ap.config(essid=name, password=password, authmode=AUTH_WPA2_PSK)
        # On the serial console for whoever holds the device (also on its label).
        log("wifi: setup network " + name + " password " + password)
    return ap, name


def setup_mode(hal, cfg, *, http_port=80, dns_port=53, bind="0.0.0.0"):
    """Run the access point, DNS and portal; True when the station is up, False on timeout."""
    from lcm_device.portal.session import Session

    sta = hal.wlan(STA)
    sta.active(True)
    ap, name = start_ap(hal, cfg)
    address = bind if bind != "0.0.0.0" else ap.ifconfig()[0]
    retry = None
    if cfg.get("wifi_ssid"):
        every = seconds(cfg, "wifi_retry_s", DEFAULT_RETRY_S) * 1000
        retry = BackgroundRetry(sta, cfg["wifi_ssid"], cfg.get("wifi_password") or "", every)
    timeout_ms = seconds(cfg, "setup_timeout_s", DEFAULT_SETUP_TIMEOUT_S) * 1000

    def save(updates):
        merged = dict(cfg)
        merged.update(updates)
        save_config(hal, merged)
        cfg.update(updates)

    session = Session(hal, cfg, sta, name, address, join, save, retry)
    try:
        up = session.run(bind, http_port, dns_port, timeout_ms)
    finally:
        ap.active(False)
    if up:
        log("wifi: leaving setup mode, connected to " + repr(cfg.get("wifi_ssid")))
    else:
        log("wifi: setup mode timed out")
    return up


def connect_or_setup(hal, cfg, **setup_args):
    """Return the connected station, running setup mode as long as needed."""
    sta = hal.wlan(STA)
    sta.active(True)
    while True:
        if station(sta, cfg):
            break
        if setup_mode(hal, cfg, **setup_args):
            break
    try:
        from lcm_device import log as logmod

        logmod.online(True)
    except Exception:
        pass
    return sta
