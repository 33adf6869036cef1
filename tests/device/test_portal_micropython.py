"""The portal's parsers from .mpy in the MicroPython unix port give CPython's answers.

A differential test: the same inputs (tricky form bodies, requests, DNS
packets) go through the modules on both interpreters and the outcomes must
match, so MicroPython's bytes/str corners (find with bounds, int of bytes,
UTF-8 decoding errors) cannot make the device disagree with the fuzzed
CPython behaviour.
"""

from __future__ import annotations

import io
import json
import random

import dns.message

from lcm_device.portal import dns as portal_dns
from lcm_device.portal.form import FormError, parse
from lcm_device.portal.request import RequestError, read_request

FORM_BODIES = [
    b"",
    b"ssid=home&password=p%26ss+w%25rd%2B%22%27%F0%9F%98%80x",
    b"ssid=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    b"ssid=Caf%C3%A9+%E2%98%95",
    b"ssid=%zz",
    b"ssid=%f",
    b"ssid=%ff%fe",
    b"ssid=a&ssid=b",
    b"&&&&ssid=x&&&",
    b"=&==&ssid==a=b",
    b"x=1&" * 30,
    b"%73sid=encoded-name",
    b"repo=octo%2Fapp&channel=beta&tofu=1&t=00ff",
    bytes(range(256)),
]

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: 192.168.4.1\r\n\r\n",
    b"GET /generate_204?x=1 HTTP/1.1\r\nHOST: Connectivitycheck.Gstatic.com\r\n\r\n",
    b"POST /save HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: A/B\r\n\r\nabcde",
    b"GET http://evil.example/x HTTP/1.1\r\nHost: other\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.0\n\n",
    b"GET / HTTP/2\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: y\r\n z\r\n\r\n",
    b"GET " + b"a" * 2000 + b" HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\n",
]


def dns_packets() -> list[bytes]:
    good = dns.message.make_query("captive.apple.com.", "A").to_wire()
    rng = random.Random(5)
    out = [good, dns.message.make_query("x.", "AAAA").to_wire(), good[:20], b"\xff" * 40]
    out += [good[:i] + bytes([good[i] ^ 0x55]) + good[i + 1 :] for i in range(len(good))]
    out += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))) for _ in range(20)]
    return out


def form_outcome(body: bytes) -> list:
    try:
        return ["ok", sorted(parse(body).items())]
    except FormError as exc:
        return ["error", exc.field, exc.message]


def request_outcome(raw: bytes) -> list:
    try:
        r = read_request(io.BytesIO(raw), bytearray(1024))
    except RequestError as exc:
        return ["error", exc.status, exc.message]
    return [r.method, r.path, r.query, r.host, r.ctype, None if r.body is None else r.body.hex()]


def dns_outcome(packet: bytes) -> str:
    out = bytearray(600)
    n = portal_dns.answer(packet, len(packet), out, bytes([192, 168, 4, 1]))
    return bytes(out[:n]).hex()


SCRIPT = """
import binascii, json
from lcm_device.portal import dns as portal_dns
from lcm_device.portal.form import FormError, parse
from lcm_device.portal.request import RequestError, read_request


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, mv):
        chunk = self.data[self.pos : self.pos + len(mv)]
        mv[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


with open("cases.json") as f:
    cases = json.load(f)
buf = bytearray(1024)
for body in cases["forms"]:
    try:
        fields = parse(binascii.unhexlify(body))
        items = sorted([[k, fields[k]] for k in fields])
        print(json.dumps(["ok", items]))
    except FormError as exc:
        print(json.dumps(["error", exc.field, exc.message]))
for raw in cases["requests"]:
    try:
        r = read_request(Reader(binascii.unhexlify(raw)), buf)
        body = None if r.body is None else binascii.hexlify(r.body).decode()
        print(json.dumps([r.method, r.path, r.query, r.host, r.ctype, body]))
    except RequestError as exc:
        print(json.dumps(["error", exc.status, exc.message]))
out = bytearray(600)
ip = bytes([192, 168, 4, 1])
for packet in cases["dns"]:
    p = binascii.unhexlify(packet)
    n = portal_dns.answer(p, len(p), out, ip)
    print(json.dumps(binascii.hexlify(out[:n]).decode()))
"""


# The unix port loads .mpy code into its heap (a board runs it frozen): three
# parser modules, json, this script and its cases need more than the suite's 24 KB pass.
# The data-heap bar of the portal is tested in tests/test_portal_*.py.
CODE_HEAP_KB = 64


def test_parsers_agree_with_cpython(mpy) -> None:
    packets = dns_packets()
    cases = {
        "forms": [b.hex() for b in FORM_BODIES],
        "requests": [r.hex() for r in REQUESTS],
        "dns": [p.hex() for p in packets],
    }
    (mpy.workdir / "cases.json").write_text(json.dumps(cases))
    lines = mpy.run(SCRIPT, heap=mpy.heap_at_least(CODE_HEAP_KB)).stdout.strip().splitlines()
    got = [json.loads(line) for line in lines]
    expected = (
        [form_outcome(b) for b in FORM_BODIES]
        + [request_outcome(r) for r in REQUESTS]
        + [dns_outcome(p) for p in packets]
    )
    # JSON round trip on the CPython side too (tuples become lists).
    assert got == json.loads(json.dumps(expected))
