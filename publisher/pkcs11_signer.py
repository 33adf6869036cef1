"""Keys in PKCS#11 tokens (HSMs, YubiKeys, SoftHSM), named by a PKCS#11 URI (RFC 7512).

  pkcs11:token=lcm;object=release

The module (the token's PKCS#11 library) comes from LCM_PKCS11_MODULE (or
the URI's `module-path` query attribute); the user PIN from LCM_PKCS11_PIN or
a prompt, never from the command line: a URI carrying `pin-value` is refused.
The key is found by its token and its label (`object`) or id; it signs the
SHA-256 digest with CKM_ECDSA (answer: r‖s) and never leaves the token.
"""

from __future__ import annotations

import getpass
import itertools
import os
import re
import sys
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    NoSuchToken,
    PinIncorrect,
    PinLenRange,
    PKCS11Error,
)
from pkcs11.util.ec import encode_named_curve_parameters

from publisher.signing import PKCS11_PREFIX, Signer, SigningKeyError

MODULE_ENV = "LCM_PKCS11_MODULE"
PIN_ENV = "LCM_PKCS11_PIN"
# Path attributes that select a token or an object (RFC 7512 §2.3).
TOKEN_ATTRIBUTES = ("token", "serial")
OBJECT_ATTRIBUTES = ("object", "id", "type")
P256_PARAMS = encode_named_curve_parameters("secp256r1")  # CKA_EC_PARAMS: the curve's OID


def _refuse_pin(uri: str) -> None:
    """Refuse a URI with any pin attribute (pin-value, pin-source, or a made-up `pin=`),
    wherever it is, before any other check: every other error repeats the URI, and would
    put the PIN in the logs it should never reach."""
    for part in re.split("[:;?&]", uri):  # ":": the first attribute follows "pkcs11:"
        name = unquote(part.partition("=")[0]).strip().lower()
        if name.startswith("pin"):
            raise SigningKeyError(
                f"a pkcs11: URI with {name}: a PIN never goes in the key's name (it would "
                f"show in the shell history and the logs); set {PIN_ENV} or let lcm prompt"
            )


class Pkcs11Uri:
    """The parts of a `pkcs11:` URI lcm uses."""

    def __init__(self, uri: str) -> None:
        _refuse_pin(uri)
        if not uri.startswith(PKCS11_PREFIX):
            raise SigningKeyError(f"{uri!r} is not a pkcs11: URI")
        self.text = uri
        path, _, query = uri[len(PKCS11_PREFIX) :].partition("?")
        self.attrs: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            self._add(part, TOKEN_ATTRIBUTES + OBJECT_ATTRIBUTES, uri)
        self.module: str | None = None
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            if name != "module-path":
                raise SigningKeyError(f"{uri}: unsupported query attribute {name!r}")
            self.module = unquote(value)
        if "token" not in self.attrs and "serial" not in self.attrs:
            raise SigningKeyError(f"{uri}: name the token (token=LABEL or serial=...)")
        if self.attrs.get("type", "private") != "private":
            raise SigningKeyError(f"{uri}: type must be private (a signing key)")

    def _add(self, part: str, allowed: tuple[str, ...], uri: str) -> None:
        name, sep, value = part.partition("=")
        if not sep or name not in allowed:
            raise SigningKeyError(
                f"{uri}: unsupported attribute {name!r} (use {', '.join(allowed)})"
            )
        self.attrs[name] = value

    def text_attr(self, name: str) -> str | None:
        raw = self.attrs.get(name)
        return None if raw is None else unquote(raw)

    @property
    def label(self) -> str | None:
        return self.text_attr("object")

    @property
    def key_id(self) -> bytes | None:
        # The id is bytes, percent-encoded: id=%01%02.
        raw = self.attrs.get("id")
        return None if raw is None else unquote_to_bytes(raw)


def _module(uri: Pkcs11Uri) -> str:
    module = uri.module or os.environ.get(MODULE_ENV)
    if not module:
        raise SigningKeyError(
            f"{uri.text}: set {MODULE_ENV} to the token's PKCS#11 module "
            "(e.g. /usr/lib/softhsm/libsofthsm2.so)"
        )
    return module


def _library(module: str) -> Any:  # pkcs11.lib() returns the module's _pkcs11.lib
    try:
        return pkcs11.lib(module)
    except PKCS11Error as exc:
        raise SigningKeyError(f"cannot load the PKCS#11 module {module}: {exc}") from None


def _pin(uri: Pkcs11Uri) -> str:
    pin = os.environ.get(PIN_ENV)
    if pin is not None:
        return pin
    if sys.stdin.isatty():
        return getpass.getpass(f"PIN for {uri.text}: ")
    raise SigningKeyError(f"{uri.text}: no PIN: set {PIN_ENV} or run interactively")


def open_session(uri: Pkcs11Uri, pin: str, rw: bool = False) -> pkcs11.Session:
    """A logged-in session on the URI's token; each failure named.

    The caller closes it after each operation: closing a token's last session
    logs out, so no login outlives the operation that needed it.
    """
    module = _module(uri)
    lib = _library(module)
    select: dict[str, object] = {}
    label, serial = uri.text_attr("token"), uri.text_attr("serial")
    if label is not None:
        select["token_label"] = label
    if serial is not None:
        select["token_serial"] = serial.encode()
    try:
        tokens = list(lib.get_tokens(**select))
    except NoSuchToken:
        tokens = []
    except PKCS11Error as exc:
        raise SigningKeyError(f"{uri.text}: cannot list the tokens: {exc!r}") from None
    if not tokens:
        raise SigningKeyError(f"{uri.text}: no such token in {module}")
    if len(tokens) > 1:
        raise SigningKeyError(f"{uri.text}: {len(tokens)} tokens match; name it by serial=")
    try:
        return tokens[0].open(rw=rw, user_pin=pin)
    except (PinIncorrect, PinLenRange):
        raise SigningKeyError(f"{uri.text}: wrong PIN") from None
    except PKCS11Error as exc:
        raise SigningKeyError(f"{uri.text}: cannot log in to the token: {exc!r}") from None


def _search(session: pkcs11.Session, attrs: dict[Attribute, Any]) -> list[Any]:
    """Up to 16 objects matching `attrs`."""
    search: Any = session.get_objects(attrs)  # a generator, typed as an Iterator
    try:
        return list(itertools.islice(search, 16))
    finally:
        # Ends the token's search now: left to the garbage collector, it ran after the
        # session closed and printed a SessionHandleInvalid traceback after lcm's error.
        search.close()


def _id_text(key: Any) -> str:
    try:
        return quote(bytes(key[Attribute.ID]), safe="")
    except PKCS11Error:
        return ""


def _find(session: pkcs11.Session, uri: Pkcs11Uri, object_class: ObjectClass) -> Any:
    what = "private key" if object_class == ObjectClass.PRIVATE_KEY else "public key"
    attrs: dict[Attribute, Any] = {Attribute.CLASS: object_class, Attribute.KEY_TYPE: KeyType.EC}
    if uri.label is not None:
        attrs[Attribute.LABEL] = uri.label
    if uri.key_id is not None:
        attrs[Attribute.ID] = uri.key_id
    keys = _search(session, attrs)
    if not keys:
        raise SigningKeyError(
            f"{uri.text}: the token holds no EC {what} with this "
            f"{'label' if uri.label else 'id'} (create one with `lcm keys new --pkcs11 URI`)"
        )
    if len(keys) > 1:
        ids = [_id_text(key) for key in keys]
        if uri.key_id is None and all(ids) and len(set(ids)) == len(ids):
            hint = f"add id= to the URI (their ids: {', '.join(sorted(ids))})"
        else:
            hint = "the URI cannot tell them apart: give each its own label or id in the token"
        raise SigningKeyError(f"{uri.text}: {len(keys)} {what}s match; {hint}")
    key = keys[0]
    if object_class == ObjectClass.PRIVATE_KEY and not isinstance(key, pkcs11.types.SignMixin):
        # python-pkcs11 gives a key `sign` only when its CKA_SIGN is true.
        raise SigningKeyError(f"{uri.text}: the token does not allow this key to sign (CKA_SIGN)")
    return key


def _public_point(key: pkcs11.Key, uri: Pkcs11Uri) -> bytes:
    """The 65-byte point from CKA_EC_POINT (a DER OCTET STRING, or raw on some tokens)."""
    # The curve first: a secp256k1 point has the same length and shape as a P-256 one.
    try:
        params = bytes(key[Attribute.EC_PARAMS])
    except PKCS11Error:
        params = b""
    if params != P256_PARAMS:
        raise SigningKeyError(f"{uri.text}: the key is not a P-256 (secp256r1) key")
    raw = bytes(key[Attribute.EC_POINT])
    if len(raw) == 67 and raw[:2] == b"\x04\x41":
        raw = raw[2:]
    if len(raw) != 65 or raw[0] != 4:
        raise SigningKeyError(f"{uri.text}: the key is not a P-256 key")
    return raw


class Pkcs11Signer(Signer):
    def __init__(self, uri: Pkcs11Uri) -> None:
        self.describe = uri.text
        self._uri = uri
        _module(uri)  # a missing module is named before anyone is asked for a PIN
        self._pin = _pin(uri)  # asked once per run, kept only in memory
        with open_session(uri, self._pin) as session:
            _find(session, uri, ObjectClass.PRIVATE_KEY)
            self.public_key = _public_point(_find(session, uri, ObjectClass.PUBLIC_KEY), uri)

    def sign_digest(self, digest: bytes) -> bytes:
        with open_session(self._uri, self._pin) as session:
            key = _find(session, self._uri, ObjectClass.PRIVATE_KEY)
            try:
                return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))
            except PKCS11Error as exc:
                raise SigningKeyError(
                    f"{self.describe}: the token refused to sign: {exc!r}"
                ) from None


def open_pkcs11(spec: str) -> Pkcs11Signer:
    return Pkcs11Signer(Pkcs11Uri(spec))


def generate_in_token(spec: str) -> bytes:
    """Create a P-256 key pair labelled `object` in the token; its 65-byte public point.

    The private key is sensitive and not extractable: it never leaves the token.
    Refuses to create a second key with the same label.
    """
    uri = Pkcs11Uri(spec)
    if not uri.label:
        raise SigningKeyError(f"{spec}: name the new key with object=LABEL")
    _module(uri)
    session = open_session(uri, _pin(uri), rw=True)
    try:
        if _search(session, {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: uri.label}):
            raise SigningKeyError(
                f"{spec}: a key labelled {uri.label!r} already exists; refusing to add another"
            )
        try:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: P256_PARAMS},
                local=True,
            )
            public, _ = params.generate_keypair(
                store=True,
                label=uri.label,
                id=uri.key_id,
                private_template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True,
                },
            )
        except PKCS11Error as exc:
            raise SigningKeyError(f"{spec}: the token could not create the key: {exc!r}") from None
        return _public_point(public, uri)
    finally:
        session.close()
