"""`lcm certs cas`: the TLS trust anchors a device needs for the hosts it talks to.

A device checks each HTTPS host's certificate chain against the CAs of its
cert sector. The anchor to keep is the **root** the host's chain ends in: it
outlives the host's own certificate and its intermediates (which the host
sends in every handshake), so a sector built with it keeps working across the
host's certificate renewals.

How a host's root is found (nothing is trusted on the network's word):
  T1  Connect with TLS and verify the chain the host presents, its name
      included, against the machine's trust store or a given CA bundle.
  T2  Keep the last certificate of that verified chain: the trust anchor the
      verification ended in, taken from the store or bundle, never from the host.
  T3  Every kept certificate is a CA certificate (basicConstraints CA:TRUE).
"""

from __future__ import annotations

import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from publisher.errors import PublisherError

CONNECT_TIMEOUT_S = 15
# What a device downloads from on github.com: the release pages, then the asset CDN.
GITHUB_HOSTS = (
    "github.com",
    "objects.githubusercontent.com",
    "release-assets.githubusercontent.com",
)
HTTPS_PORT = 443


class AnchorError(PublisherError):
    """A host whose chain cannot be read or verified, or a certificate that is not a CA."""


@dataclass
class HostAnchor:
    host: str
    port: int
    chain: list[x509.Certificate]  # leaf first, root last (verified)

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]


def parse_host(text: str) -> tuple[str, int]:
    """`github.com`, `host:8443` or `https://host:8443/...` -> (host, port)."""
    parts = urlsplit(text if "//" in text else f"//{text}")
    if parts.scheme not in ("", "https") or not parts.hostname:
        raise AnchorError(f"{text!r} is not a host name, host:port or https:// URL")
    try:
        port = parts.port
    except ValueError:
        raise AnchorError(f"{text!r}: the port is not a number from 1 to 65535") from None
    if port == 0:
        raise AnchorError(f"{text!r}: the port is not a number from 1 to 65535")
    return parts.hostname, port or HTTPS_PORT


def _verified_chain(sock: ssl.SSLSocket) -> list[bytes]:
    """The DER chain OpenSSL verified, leaf first (T1, T2)."""
    if sys.version_info >= (3, 13):
        return list(sock.get_verified_chain())
    # Python 3.10-3.12 have the same method on the C-level object only (public since 3.13).
    chain = sock._sslobj.get_verified_chain()  # type: ignore[attr-defined]
    return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in chain]  # type: ignore[attr-defined]


def fetch_anchor(host: str, port: int = HTTPS_PORT, ca_file: Path | None = None) -> HostAnchor:
    """Verify `host`'s chain (rule T1) and return it, its root last (T2)."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise AnchorError(
            f"--ca-file {ca_file}: not a PEM CA bundle this can read ({why})"
        ) from None
    store = f"the CA bundle {ca_file}" if ca_file else "this machine's trust store"
    try:
        with (
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            der_chain = _verified_chain(sock)
    except ssl.SSLCertVerificationError as exc:
        raise AnchorError(
            f"{host}:{port}: its certificate chain does not verify against {store} "
            f"({exc.verify_message}); pass --ca-file with the CA you trust for it"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise AnchorError(f"{host}:{port}: cannot connect over TLS ({exc})") from None
    chain = [x509.load_der_x509_certificate(der) for der in der_chain]
    if not chain:
        raise AnchorError(f"{host}:{port}: no verified chain")
    check_ca(chain[-1], f"the root of {host}")
    return HostAnchor(host, port, chain)


def check_ca(cert: x509.Certificate, what: str) -> None:
    """Rule T3: only CA certificates are trust anchors."""
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise AnchorError(f"{what} ({cert.subject.rfc4514_string()}) is not a CA certificate")


def unique_roots(anchors: list[HostAnchor]) -> list[x509.Certificate]:
    """Each root once, in the order the hosts were given (hosts often share one)."""
    seen: dict[bytes, x509.Certificate] = {}
    for anchor in anchors:
        seen.setdefault(anchor.root.public_bytes(serialization.Encoding.DER), anchor.root)
    return list(seen.values())


def to_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def missing_anchor_warning(web_url: str | None) -> str | None:
    """What `certs build` says about a sector without CAs (None: a plain-HTTP host needs none)."""
    if web_url is not None and urlsplit(web_url).scheme == "http":
        return None
    hosts = urlsplit(web_url).hostname if web_url else " ".join(GITHUB_HOSTS)
    return (
        "the sector has no TLS trust anchor (--ca): devices will not check the certificates of "
        f"HTTPS hosts. Get the roots with `lcm certs cas {hosts} -o cas.pem` and build with "
        "--ca cas.pem (not needed when devices use a plain-HTTP LAN host: --web-url http://...)"
    )
