"""The setup form: application/x-www-form-urlencoded parsing and validation.

`parse(body)` decodes `name=value&...` (`+` is a space, `%XX` a byte, the
result UTF-8) into a dict of the known fields; `validate(fields, cfg)` checks
each one and returns what to try and what to save. Both raise FormError
naming the field and the problem, which the page shows to the user.
"""

from lcm_device.compat import const
from lcm_device.portal.page import printable, utf8

FIELDS = (
    "t",  # CSRF token
    "ssid",  # a scanned network, or "" for the hidden-network field
    "hidden_ssid",
    "password",
    "repo",
    "channel",
    "fingerprint",
    "tofu",
    "log_host",
    "interval_h",
    "mqtt_url",
    "mqtt_user",
    "mqtt_password",
)
LABELS = {
    "ssid": "Network",
    "hidden_ssid": "Hidden network name",
    "password": "Password",
    "repo": "App repository",
    "channel": "Channel",
    "fingerprint": "Root key fingerprint",
    "log_host": "Log host",
    "interval_h": "Check interval",
    "mqtt_url": "MQTT broker",
    "mqtt_user": "MQTT user",
    "mqtt_password": "MQTT password",
    "t": "Form token",
}
_MAX_FIELDS = const(24)
_MAX_SSID = const(32)
_HEX = "0123456789abcdef"
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"


class FormError(Exception):
    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


def _unquote(raw, name):
    raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # %
            h = raw[i + 1 : i + 3].lower()
            if len(h) != 2 or h[0] not in b"0123456789abcdef" or h[1] not in b"0123456789abcdef":
                raise FormError(name, "bad %-escape in field " + name)
            out.append(int(h, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def parse(body):
    """Known fields of an urlencoded body as str; unknown names are ignored, repeats refused."""
    body = bytes(body)
    fields = {}
    count = 0
    start = 0
    n = len(body)
    while start < n:
        # Walk the body in place: no list of parts (a body of 1000 '&' must stay cheap).
        end = body.find(b"&", start)
        if end < 0:
            end = n
        if end > start:
            count += 1
            if count > _MAX_FIELDS:
                raise FormError("", "too many form fields")
            _field(body[start:end], fields)
        start = end + 1
    return fields


def _field(part, fields):
    eq = part.find(b"=")
    raw_name, raw_value = (part, b"") if eq < 0 else (part[:eq], part[eq + 1 :])
    try:
        name = utf8(_unquote(raw_name, "?"))
    except (UnicodeError, FormError):
        return  # not one of ours
    if name not in FIELDS:
        return
    if name in fields:
        raise FormError(name, "field " + name + " was sent twice")
    try:
        fields[name] = utf8(_unquote(raw_value, name))
    except UnicodeError:
        raise FormError(name, LABELS.get(name, name) + " is not valid UTF-8") from None


def _printable(name, value):
    if not printable(value):
        raise FormError(name, LABELS[name] + " contains a control character")
    return value


def check_ssid(name, ssid):
    n = len(ssid.encode())
    if not 1 <= n <= _MAX_SSID:
        raise FormError(name, "a network name is 1 to 32 bytes, this one is " + str(n))
    return _printable(name, ssid)


def check_password(password):
    n = len(password.encode())
    if n == 0:
        return password  # an open network
    if n == 64 and all(c in _HEX for c in password.lower()):
        return password  # a raw WPA2 key
    if not 8 <= n <= 63:
        raise FormError(
            "password", "a Wi-Fi password is 8 to 63 characters (bytes in UTF-8) or 64 hex digits"
        )
    return _printable("password", password)


def check_fingerprint(text):
    """16 to 64 hex digits of SHA-256(root key); spaces and colons between groups allowed."""
    fp = text.replace(" ", "").replace(":", "").lower()
    if not all(c in _HEX for c in fp) or not 16 <= len(fp) <= 64 or len(fp) % 2:
        raise FormError(
            "fingerprint", "the fingerprint is 16 to 64 hex digits (the key id or longer)"
        )
    return fp


def check_host(text):
    if not 1 <= len(text) <= 64 or not all(c in _HOST_CHARS for c in text):
        raise FormError("log_host", "the log host is a name or IPv4 address (letters, digits, .-)")
    return text


def check_interval(text):
    digits = 1 <= len(text) <= 3 and all(c in "0123456789" for c in text)
    if not digits or not 1 <= int(text) <= 168:
        raise FormError("interval_h", "the check interval is 1 to 168 hours")
    return int(text) * 3600


def check_mqtt_url(text):
    """mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (lcm_device.mqtt.split_url's rules)."""
    for scheme in ("mqtt://", "mqtts://"):
        if text.startswith(scheme):
            host, colon, port = text[len(scheme) :].partition(":")
            # "host:" names no port: split_url refuses it, so it is not saved
            ok_port = not colon or (port.isdigit() and 0 < int(port) < 65536)
            if host and len(text) <= 100 and all(c in _HOST_CHARS for c in host) and ok_port:
                return text
    raise FormError("mqtt_url", "the broker is mqtt://host[:port] or mqtts://host[:port]")


def validate(fields, cfg):
    """(ssid, password, settings to save on success) or FormError.

    Repo, channel and key trust are accepted only while the config has no
    repo: a device provisioned for one app cannot be repointed from the air.
    """
    ssid = fields.get("ssid", "")
    if ssid:
        check_ssid("ssid", ssid)
    else:
        ssid = fields.get("hidden_ssid", "")  # as typed: a name may begin or end with a space
        if not ssid:
            raise FormError("ssid", "pick a network, or type the name of a hidden one")
        check_ssid("hidden_ssid", ssid)
    password = check_password(fields.get("password", ""))
    settings = {"wifi_ssid": ssid, "wifi_password": password}
    repo = fields.get("repo", "").strip()
    if repo and not cfg.get("repo"):
        from cert_sector.encoding import check_repo
        from cert_sector.errors import FormatError

        try:
            settings["repo"] = check_repo(repo)
        except FormatError:
            raise FormError("repo", "the repository is owner/name (letters digits - _ .)") from None
        channel = fields.get("channel", "stable")
        if channel not in ("stable", "beta"):
            raise FormError("channel", "the channel is stable or beta")
        settings["channel"] = channel
        if not cfg.get("app_roots"):
            fp = fields.get("fingerprint", "").strip()
            if fp:
                settings["app_root_fingerprint"] = check_fingerprint(fp)
            elif fields.get("tofu") == "1":
                settings["app_trust_first_use"] = True
            else:
                raise FormError(
                    "fingerprint",
                    "enter the root key fingerprint, or tick 'trust on first use'",
                )
    if fields.get("log_host", "").strip():
        settings["log_host"] = check_host(fields["log_host"].strip())
    if fields.get("interval_h", "").strip():
        settings["check_interval_s"] = check_interval(fields["interval_h"].strip())
    if fields.get("mqtt_url", "").strip():
        settings["mqtt_url"] = check_mqtt_url(fields["mqtt_url"].strip())
        for name in ("mqtt_user", "mqtt_password"):
            value = fields.get(name, "")
            if len(value.encode()) > 64:
                raise FormError(name, LABELS[name] + " is at most 64 bytes")
            if value:
                settings[name] = _printable(name, value)
    return ssid, password, settings
