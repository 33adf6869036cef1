"""Property tests of the portal's parsers on CPython (the same modules the device runs).

The request parser, the form decoder and the DNS answerer get arbitrary
bytes: each either succeeds or refuses with its own error type; nothing else
escapes, and every call returns (the inputs are finite, so no hang).
"""

from __future__ import annotations

import io
import urllib.parse

import dns.message
import dns.name
import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcm_device.portal import dns as portal_dns
from lcm_device.portal.form import FIELDS, FormError, parse, validate
from lcm_device.portal.request import RequestError, read_request

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Drip(io.RawIOBase):
    """A reader that hands out the data in the given piece sizes, as a socket would."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes or [len(data) or 1]
        self.pos = 0
        self.i = 0

    def readinto(self, mv: memoryview) -> int:  # type: ignore[override]
        size = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        chunk = self.data[self.pos : self.pos + min(size, len(mv))]
        mv[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def parse_request(data: bytes, sizes: list[int] | None = None):  # type: ignore[no-untyped-def]
    return read_request(Drip(data, sizes or []), bytearray(1024))


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=8))
def test_request_parser_takes_any_bytes(data: bytes, sizes: list[int]) -> None:
    try:
        req = parse_request(data, sizes)
    except RequestError as exc:
        assert 400 <= exc.status < 600 and exc.message
    else:
        assert req.method in ("GET", "HEAD", "POST") and req.path.startswith("/")


TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
paths = st.text("abcdefghijklmnopqrstuvwxyz0123456789/._-~%", max_size=200).map(lambda p: "/" + p)
hosts = st.text(TOKEN_CHARS + ".", min_size=1, max_size=60)
junk_headers = st.lists(
    st.tuples(
        st.text(TOKEN_CHARS, min_size=1, max_size=30),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=100),
    ),
    max_size=20,
)


@FUZZ
@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    paths,
    st.text(TOKEN_CHARS + "=&", max_size=50),
    hosts,
    junk_headers,
    st.binary(max_size=1024),
    st.lists(st.integers(1, 300), max_size=6),
)
def test_valid_requests_parse_exactly(
    method: str,
    path: str,
    query: str,
    host: str,
    headers: list[tuple[str, str]],
    body: bytes,
    sizes: list[int],
) -> None:
    if method != "POST":
        body = b""
    lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1", f"Host: {host}"]
    lines += [f"X-{name}: {value}" for name, value in headers]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/x-www-form-urlencoded")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    req = parse_request(raw, sizes)
    assert (req.method, req.path, req.query, req.host) == (method, path, query, host.lower())
    if method == "POST":
        assert bytes(req.body) == body
        assert req.ctype == "application/x-www-form-urlencoded"
    else:
        assert req.body is None


@FUZZ
@given(st.binary(max_size=1024))
def test_form_decoder_takes_any_bytes(body: bytes) -> None:
    try:
        fields = parse(body)
    except FormError as exc:
        assert exc.message
    else:
        assert set(fields) <= set(FIELDS)
        assert all(isinstance(v, str) for v in fields.values())


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=60)))
def test_form_decoder_reverses_the_browsers_encoding(fields: dict[str, str]) -> None:
    # What a browser sends: UTF-8, %XX for reserved bytes, '+' for spaces.
    body = urllib.parse.urlencode(fields).encode()
    assert parse(body) == fields


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=80)))
def test_validation_accepts_or_names_the_field(fields: dict[str, str]) -> None:
    try:
        ssid, password, settings_ = validate(fields, {})
    except FormError as exc:
        assert exc.field in (*FIELDS, "")
        assert exc.message
    else:
        assert 1 <= len(ssid.encode()) <= 32
        assert settings_["wifi_ssid"] == ssid and settings_["wifi_password"] == password


@FUZZ
@given(st.binary(max_size=700))
def test_dns_answerer_takes_any_bytes(packet: bytes) -> None:
    out = bytearray(600)
    n = portal_dns.answer(packet, len(packet), out, bytes([192, 168, 4, 1]))
    if n:
        msg = dns.message.from_wire(bytes(out[:n]))
        assert msg.id == int.from_bytes(packet[:2], "big")


labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)


@FUZZ
@given(
    st.lists(labels, min_size=1, max_size=4),
    st.sampled_from(["A", "AAAA", "ANY", "MX", "TXT"]),
)
def test_dns_answers_every_name(parts: list[str], rdtype: str) -> None:
    name = dns.name.from_text(".".join(parts) + ".")
    query = dns.message.make_query(name, rdtype)
    wire = query.to_wire()
    out = bytearray(600)
    n = portal_dns.answer(wire, len(wire), out, bytes([192, 168, 4, 1]))
    reply = dns.message.from_wire(bytes(out[:n]))
    assert reply.id == query.id and reply.question == query.question
    addresses = [r.address for rrset in reply.answer for r in rrset]
    assert addresses == (["192.168.4.1"] if rdtype in ("A", "ANY") else [])
