"""What a device starts with in /lcm/state/config.json, and its setup network.

Settings are checked here so that a bad value is refused with a message
naming it before any image is built or any board touched.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cert_sector.encoding import check_repo
from cert_sector.errors import FormatError
from publisher.device.firmware import ImageError
from publisher.signing import load_trusted_key
from publisher.urls import is_host_chars, is_http_url

CONFIG_PATH = "/lcm/state/config.json"
DEFAULT_WEB_URL = "https://github.com"
CHANNELS = ("stable", "beta")
SETUP_SSID_PREFIX = "LCM-"
# No 0/O/1/l/I: the password is typed from a label or a terminal.
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
GENERATED_PASSWORD_LENGTH = 16


@dataclass
class DeviceSettings:
    """Everything that goes into /lcm/state/config.json."""

    board: str
    repo: str | None  # None: set on the setup page (lcm device install without --repo)
    app_roots: list[bytes]
    app_threshold: int = 1
    manager_repo: str | None = None
    manager_roots: list[bytes] = field(default_factory=list)
    manager_threshold: int = 1
    channel: str = "stable"
    web_url: str = DEFAULT_WEB_URL
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    setup_password: str = ""
    mqtt_url: str | None = None  # the fleet's broker (docs/fleet.md); None: no MQTT


# ---------------------------------------------------------------- settings


def check_setup_password(password: str, what: str) -> str:
    if not 8 <= len(password) <= 63 or not all(32 <= ord(c) < 127 for c in password):
        raise ImageError(f"{what} must be 8 to 63 printable ASCII characters (WPA2)")
    return password


def check_wifi(ssid: str | None, password: str | None) -> None:
    if ssid is None:
        if password:
            raise ImageError("a Wi-Fi password was given without --wifi-ssid")
        return
    raw = ssid.encode("utf-8")
    if not 1 <= len(raw) <= 32:
        raise ImageError(f"Wi-Fi SSID {ssid!r} must be 1 to 32 bytes, it is {len(raw)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in ssid):
        raise ImageError(f"Wi-Fi SSID {ssid!r} contains a control character")
    if password:
        is_psk = len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password)
        if not is_psk:
            check_setup_password(password, "the Wi-Fi password")


def check_web_url(url: str) -> str:
    if not is_http_url(url):
        raise ImageError(
            f"--web-url {url!r} must be an http:// or https:// URL with a host (and a port "
            "from 1 to 65535)"
        )
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ImageError(f"--web-url {url!r} must not have a query or fragment")
    return url.rstrip("/")


def check_log_host(host: str) -> str:
    """Where a device sends its UDP log lines: an IPv4 address (255.255.255.255
    broadcasts) or a host name the device resolves."""
    parts = host.split(".")
    if all(p.isascii() and p.isdigit() for p in parts):
        ok = len(parts) == 4 and all(int(p) <= 255 for p in parts)
    else:
        ok = 0 < len(host) <= 253 and is_host_chars(host)
    if not ok:
        raise ImageError(
            f"--log-host {host!r} must be an IPv4 address (255.255.255.255 broadcasts) or a "
            "host name"
        )
    return host


def check_mqtt_url(url: str) -> str:
    """A broker URL the device takes (lcm_device.mqtt.split_url, the setup page):
    mqtt://HOST[:PORT] or mqtts://HOST[:PORT], no credentials (the device's own account
    is set on its setup page: the broker's ACL names each device), at most 100 bytes."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    host = parts.hostname or ""
    if (
        parts.scheme not in ("mqtt", "mqtts")
        or not host
        or not is_host_chars(host)
        or port == 0
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or len(url.encode()) > 100
    ):
        raise ImageError(
            f"--mqtt {url!r} must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (at most 100 "
            "bytes, no credentials: each device's broker account is set on its setup page)"
        )
    return url.rstrip("/")


def load_roots(paths: Sequence[Path], threshold: int, what: str) -> list[bytes]:
    if not paths:
        raise ImageError(f"at least one {what} root public key is needed")
    roots = [load_trusted_key(p) for p in paths]
    if len(set(roots)) != len(roots):
        raise ImageError(f"the same {what} root key was given twice")
    if not 1 <= threshold <= len(roots):
        raise ImageError(
            f"{what} threshold {threshold} needs between 1 and {len(roots)} (the roots given)"
        )
    return roots


def check_settings(s: DeviceSettings, require_repo: bool = True) -> None:
    """Refuse settings the device could not use; messages name the bad value."""
    if require_repo and s.repo is None:
        raise ImageError("--repo is needed: the app repo the device follows")
    for repo, what in ((s.repo, "--repo"), (s.manager_repo, "--manager-repo")):
        if repo is None:
            continue
        try:
            check_repo(repo)
        except FormatError as exc:
            raise ImageError(f"{what}: {exc}") from None
    if s.channel not in CHANNELS:
        raise ImageError(f"channel {s.channel!r} must be one of {', '.join(CHANNELS)}")
    if s.repo is not None and not s.app_roots:
        raise ImageError("at least one app root public key (--root) is needed")
    if s.repo is None and s.app_roots:
        raise ImageError("--root needs --repo: the keys are pinned for one repo")
    if bool(s.manager_repo) != bool(s.manager_roots):
        raise ImageError("--manager-repo and --manager-root go together")
    s.web_url = check_web_url(s.web_url)
    check_wifi(s.wifi_ssid, s.wifi_password)
    check_setup_password(s.setup_password, "the setup password")
    if s.mqtt_url is not None:
        s.mqtt_url = check_mqtt_url(s.mqtt_url)


def generate_setup_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LENGTH))


def config_json(s: DeviceSettings) -> bytes:
    """The device's /lcm/state/config.json (keys as in docs/device.md)."""
    cfg: dict[str, Any] = {
        "board": s.board,
        "web_url": s.web_url,
        "channel": s.channel,
        "setup_password": s.setup_password,
    }
    if s.repo is not None:
        cfg["repo"] = s.repo
        cfg["app_roots"] = [k.hex() for k in s.app_roots]
        cfg["app_threshold"] = s.app_threshold
    if s.manager_repo:
        cfg["manager_repo"] = s.manager_repo
        cfg["manager_roots"] = [k.hex() for k in s.manager_roots]
        cfg["manager_threshold"] = s.manager_threshold
    if s.wifi_ssid is not None:
        cfg["wifi_ssid"] = s.wifi_ssid
        cfg["wifi_password"] = s.wifi_password or ""
    if s.mqtt_url is not None:
        cfg["mqtt_url"] = s.mqtt_url
    # A factory reset (gestures) keeps what the factory set: the setup password on
    # the board's label, the app it was made for and its fleet's broker, but not the
    # owner's Wi-Fi.
    keep = ["setup_password", "channel"]
    if s.repo is not None:
        keep += ["repo", "app_roots", "app_threshold"]
    if s.mqtt_url is not None:
        keep.append("mqtt_url")
    cfg["factory_keys"] = keep
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------- setup network


def setup_ssid(mac: bytes) -> str:
    """The setup access point's name: LCM- and the last 3 bytes of the MAC in hex."""
    return SETUP_SSID_PREFIX + mac[-3:].hex().upper()


def parse_mac(text: str) -> bytes:
    digits = re.sub(r"[:\-.]", "", text.strip())
    if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        raise ImageError(f"--mac {text!r} is not a MAC address like 24:0a:c4:12:34:56")
    return bytes.fromhex(digits)


def wifi_qr_payload(ssid: str, password: str) -> str:
    """The `WIFI:T:WPA;S:...;P:...;;` text phones read from a QR code."""
    import segno.helpers

    return str(segno.helpers.make_wifi_data(ssid=ssid, password=password, security="WPA"))


def wifi_qr_text(ssid: str, password: str) -> str:
    """A terminal rendering of the Wi-Fi QR code."""
    import segno

    buf = io.StringIO()
    segno.make(wifi_qr_payload(ssid, password), error="m").terminal(out=buf, compact=True)
    return buf.getvalue()
