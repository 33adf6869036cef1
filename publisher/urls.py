"""What the publisher takes as a host's URL (--api-url, --web-url)."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_http_url(url: str) -> bool:
    """http:// or https:// with a host name, and a port from 1 to 65535 if one is given."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def is_host_chars(host: str) -> bool:
    """Only what a DNS host name (or an IPv4 address) is made of: ASCII letters, digits,
    dots and hyphens."""
    return all(c.isascii() and (c.isalnum() or c in ".-") for c in host)
