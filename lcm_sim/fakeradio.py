"""A scripted fake radio with the `network.WLAN` API, for the unix HAL.

The unix port has no Wi-Fi; the tests and `lcm device simulate` describe the
air around the device in a JSON script instead:

    {
      "mac": "a4cf12b3c4d5",
      "ap_ip": "192.168.4.1",
      "networks": [
        {"ssid": "home", "rssi": -48, "auth": 3, "channel": 6,
         "password": "correct horse", "connect_ms": 300},
        {"ssid": "cafe", "rssi": -80, "auth": 0},
        {"ssid": "attic", "rssi": -60, "auth": 3, "passwords": ["a", "b"], "hidden": true},
        {"ssid": "router", "rssi": -50, "auth": 3, "password": "x", "down": true}
      ]
    }

`auth` is the `network.AUTH_*` number (0 = open); an open network accepts any
password; `passwords` lists several that work; `hidden` networks scan with an
empty SSID but accept a connection by name; `ssid_hex` gives the bytes the
network's name has on the air instead of its UTF-8 (a name that is not UTF-8:
the air carries any 32 bytes); a network with `"down": true`
(a router still booting) is neither scanned nor joinable; `connect_ms` is
how long a connection attempt takes before it succeeds or fails.

The script is read from `$LCM_RADIO_SCRIPT` (a path) or else
`<root>/lcm/state/radio.json`, and read again on every `scan()` and
`connect()`: a test changes the air (a router coming back) by rewriting the
file (atomically) while the device runs. Write it as UTF-8: MicroPython's
json does not join `\\u` surrogate pairs (emoji).

What the access point shows on the air (active, essid, authmode, password)
is written to `radio-ap.json` next to the script whenever it changes, so a
test can check the setup network as a phone would see it.

Status numbers are the ESP32 port's `network.STAT_*` values, so the code
that reads them is the code that runs on a board.
"""

import binascii
import json
import os

from lcm_device.compat import ticks_diff, ticks_ms
from lcm_sim import RADIO_SCRIPT

STA = 0
AP = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202

AUTH_OPEN = 0
AUTH_WPA2_PSK = 3

_DEFAULT_MAC = "02000000cafe"

# One radio per process, as on a board: the station and the access point
# share the MAC and see the same air.
_radios = {}


class ScriptError(Exception):
    """The radio script is missing or malformed; the message names the file and the problem."""


def script_path(root):
    return os.getenv("LCM_RADIO_SCRIPT") or (root + RADIO_SCRIPT)


def load_script(path):
    try:
        with open(path) as f:
            script = json.load(f)
    except OSError:
        raise ScriptError("radio script not found: " + path) from None
    except ValueError:
        raise ScriptError("radio script is not valid JSON: " + path) from None
    if not isinstance(script, dict) or not isinstance(script.get("networks", []), list):
        raise ScriptError("radio script must be an object with a 'networks' list: " + path)
    for net in script.get("networks", []):
        if not isinstance(net, dict) or not isinstance(net.get("ssid"), str):
            raise ScriptError("every network in " + path + " needs an 'ssid' string")
    return script


def wlan(mode, root):
    """The WLAN object for `STA` (0) or `AP` (1); the unix HAL's `wlan(mode)` calls this."""
    if mode not in (STA, AP):
        raise ValueError("wlan mode must be 0 (STA) or 1 (AP)")
    w = _radios.get(mode)
    if w is None:
        path = script_path(root)
        load_script(path)  # fail now, with the file's name, rather than at the first scan
        w = FakeWLAN(mode, path)
        _radios[mode] = w
    return w


class FakeWLAN:
    def __init__(self, mode, path):
        self.mode = mode
        self.path = path
        self._active = False
        self._status = STAT_IDLE
        self._ssid = None
        self._outcome = STAT_IDLE
        self._started = 0
        self._delay = 0
        self._ip = None
        self._conf = {"essid": "", "password": "", "authmode": AUTH_OPEN, "channel": 1}

    def _script(self):
        return load_script(self.path)

    def _mac(self):
        mac = binascii.unhexlify(self._script().get("mac", _DEFAULT_MAC))
        if self.mode == AP:  # as on an ESP: the soft-AP MAC is the station MAC + 1
            mac = mac[:5] + bytes([(mac[5] + 1) & 0xFF])
        return mac

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not self._active:
            self.disconnect()
        self._show()
        return None

    def _show(self):
        if self.mode != AP:
            return
        air = dict(self._conf)
        air["active"] = self._active
        path = self.path[:-5] if self.path.endswith(".json") else self.path
        with open(path + "-ap.json", "w") as f:
            json.dump(air, f)

    def scan(self):
        if self.mode != STA or not self._active:
            raise OSError("scan needs an active station interface")
        networks = self._script().get("networks", [])
        # Made at its final size, as a board's driver makes it: a list grown by appends
        # asks for ever larger blocks (512 bytes past 32 networks) where a board asks none.
        found = [None] * len(networks)
        n = 0
        for net in networks:
            if net.get("down"):
                continue
            ssid = b"" if net.get("hidden") else net["ssid"].encode()
            if ssid and net.get("ssid_hex"):
                ssid = binascii.unhexlify(net["ssid_hex"])
            bssid = binascii.unhexlify(net.get("bssid", "0200000000%02x" % (n & 0xFF)))
            found[n] = (
                ssid,
                bssid,
                net.get("channel", 1),
                net.get("rssi", -70),
                net.get("auth", AUTH_WPA2_PSK),
                bool(net.get("hidden")),
            )
            n += 1
        del found[n:]
        return found

    def connect(self, ssid=None, key=None, *, bssid=None):
        if self.mode != STA or not self._active:
            raise OSError("connect needs an active station interface")
        if isinstance(ssid, (bytes, bytearray)):
            ssid = bytes(ssid).decode()
        self._ssid = ssid
        self._ip = None
        self._status = STAT_CONNECTING
        self._outcome = STAT_NO_AP_FOUND
        self._delay = 0
        self._started = ticks_ms()
        for net in self._script().get("networks", []):
            if net["ssid"] != ssid or net.get("down"):
                continue
            self._delay = int(net.get("connect_ms", 0))
            good = net.get("passwords") or [net.get("password", "")]
            if net.get("auth", AUTH_WPA2_PSK) == AUTH_OPEN or (key or "") in good:
                self._outcome = STAT_GOT_IP
                self._ip = net.get("ip", "192.168.1.50")
            else:
                self._outcome = STAT_WRONG_PASSWORD
            break

    def _settle(self):
        # The attempt resolves once its scripted delay has passed.
        if self._status == STAT_CONNECTING and ticks_diff(ticks_ms(), self._started) >= self._delay:
            self._status = self._outcome

    def status(self, param=None):
        if param == "rssi":
            return -50
        self._settle()
        return self._status

    def isconnected(self):
        if self.mode == AP:
            return self._active
        self._settle()
        return self._status == STAT_GOT_IP

    def disconnect(self):
        self._status = STAT_IDLE
        self._ssid = None
        self._ip = None

    def ifconfig(self, conf=None):
        if conf is not None:
            return None
        if self.mode == AP:
            ip = self._script().get("ap_ip", "192.168.4.1")
            return (ip, "255.255.255.0", ip, ip)
        if self.isconnected():
            return (self._ip, "255.255.255.0", "192.168.1.1", "192.168.1.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kwargs):
        if kwargs:
            for k in kwargs:
                if k not in ("essid", "ssid", "password", "key", "authmode", "channel", "hidden"):
                    raise ValueError("unknown config parameter " + k)
                self._conf["essid" if k == "ssid" else "password" if k == "key" else k] = kwargs[k]
            self._show()
            return None
        if len(args) != 1:
            raise TypeError("config() takes one parameter name or keyword arguments")
        name = args[0]
        if name == "mac":
            return self._mac()
        if name in ("essid", "ssid"):
            return (self._ssid or "") if self.mode == STA else self._conf["essid"]
        if name in self._conf:
            return self._conf[name]
        raise ValueError("unknown config parameter " + name)
