"""The portal's DNS server in the unix port, queried by a real client (dnspython)."""

from __future__ import annotations

import random
import socket
import string
import threading
import time
import urllib.parse
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from publisher.device.setup_sim import SetupSim, start_setup
from tests.test_portal_support import (  # noqa: F401  (fixtures)
    DATA_HEAP,
    FORM,
    form_body,
    http,
    make_state,
    portal,
    portal_build,
    token,
)


def query(sim: SetupSim, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    answer = dns.query.udp(q, sim.address, port=sim.dns_port, timeout=10)
    assert answer.id == q.id
    return answer


def random_name(rng: random.Random) -> str:
    labels = [
        "".join(
            rng.choice(string.ascii_lowercase + string.digits + "-")
            for _ in range(rng.randint(1, 20))
        )
        for _ in range(rng.randint(1, 4))
    ]
    return ".".join(label.strip("-") or "x" for label in labels) + "."


def test_every_name_resolves_to_the_portal(portal: SetupSim) -> None:  # noqa: F811
    rng = random.Random(6)
    names = [
        "connectivitycheck.gstatic.com.",
        "captive.apple.com.",
        "www.msftconnecttest.com.",
        "detectportal.firefox.com.",
    ] + [random_name(rng) for _ in range(20)]
    for name in names:
        answer = query(portal, name)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.flags & dns.flags.QR and answer.flags & dns.flags.AA
        assert answer.flags & dns.flags.RD  # copied from the query
        assert [str(r) for rrset in answer.answer for r in rrset] == [portal.address]
        assert answer.answer[0].name.to_text() == name
        assert answer.question[0].name.to_text() == name


def test_aaaa_and_other_types_answer_empty(portal: SetupSim) -> None:  # noqa: F811
    for rdtype in ("AAAA", "MX", "TXT", "HTTPS"):
        answer = query(portal, "example.com.", rdtype)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.answer == []


def test_edns_query_is_answered(portal: SetupSim) -> None:  # noqa: F811
    answer = query(portal, "example.org.", "A", use_edns=0, want_dnssec=True)
    assert [str(r) for rrset in answer.answer for r in rrset] == [portal.address]


def malformed_packets() -> list[bytes]:
    good = dns.message.make_query("example.com.", "A").to_wire()
    rng = random.Random(1)
    packets = [
        b"",
        b"\x00",
        good[:11],  # a cut header
        good[:-1],  # question cut short
        good[:12],  # header only
        good[:2] + b"\x81\x80" + good[4:],  # a response, not a query
        good[:2] + b"\x28\x00" + good[4:],  # opcode UPDATE
        good[:4] + b"\x00\x02" + good[6:],  # two questions announced, one present
        good[:4] + b"\x00\x00" + good[6:],  # no question
        good[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer loop in the question
        good[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # a 64-byte label
        good[:12] + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01",  # a 320-byte name
        good + b"\x00" * 600,  # over 512 bytes
        good[:2] + bytes([good[2] | 0x02]) + good[3:],  # truncated (TC)
        # A 256-byte name (with its final zero): one over RFC 1035's 255.
        good[:12] + (b"\x3f" + b"a" * 63) * 3 + b"\x3e" + b"a" * 62 + b"\x00\x00\x01\x00\x01",
        b"\xff" * 4096,
        bytes(rng.randrange(256) for _ in range(300)),
    ]
    packets += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 600))) for _ in range(50)]
    # Every single-byte corruption of a good query.
    for i in range(len(good)):
        packets.append(good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1 :])
    return packets


def test_malformed_packets_are_dropped_and_the_server_keeps_answering(
    portal: SetupSim,  # noqa: F811
) -> None:
    packets = malformed_packets()
    sentinel = dns.message.make_query("still-alive.example.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)  # a hang guard, not a measurement
        for packet in packets:
            s.sendto(packet, (portal.address, portal.dns_port))
        s.sendto(sentinel.to_wire(), (portal.address, portal.dns_port))
        # Loopback keeps the order: the sentinel's answer comes after any other.
        replies = []
        while True:
            msg = dns.message.from_wire(s.recvfrom(2048)[0])
            if msg.id == sentinel.id and msg.question == sentinel.question:
                break
            replies.append(msg)
    assert [str(r) for rrset in msg.answer for r in rrset] == [portal.address]
    # Only the corruptions that left a valid query were answered, each well formed.
    assert len(replies) < len(packets) // 2
    assert all(m.flags & dns.flags.QR for m in replies)
    assert portal.process.poll() is None
    assert "Traceback" not in portal.output()


@pytest.mark.parametrize(
    "name", ["a.", "x" * 63 + ".com.", ".".join(["x" * 63] * 3 + ["x" * 61]) + "."]
)
def test_label_edges(portal: SetupSim, name: str) -> None:  # noqa: F811
    answer = query(portal, name)
    assert [str(r) for rrset in answer.answer for r in rrset] == [portal.address]


def test_dns_is_answered_while_a_silent_connection_holds_the_http_server(
    portal: SetupSim,  # noqa: F811
) -> None:
    """A phone asks DNS while a socket it preconnected, which says nothing, holds the
    one-at-a-time HTTP server (up to its 5 s read wait): the query is answered meanwhile,
    not after. Told by order, not by time: the silent connection is still open when the
    answer arrives."""
    base = urllib.parse.urlsplit(portal.url)
    silent = socket.create_connection((base.hostname, base.port), timeout=30)
    try:
        time.sleep(0.5)  # accepted: the HTTP server now waits on it
        answer = query(portal, "connectivitycheck.gstatic.com.")
        assert [str(r) for rrset in answer.answer for r in rrset] == [portal.address]
        silent.settimeout(0.05)
        with pytest.raises(TimeoutError):
            silent.recv(1)  # neither data nor the server's close yet
    finally:
        silent.close()


def test_dns_is_answered_while_the_portal_tries_a_network(
    portal_build: Path,  # noqa: F811
    device_root: Path,
) -> None:
    """Trying the user's network takes up to 20 s, and DNS went silent meanwhile (found
    from outside: anyone on the setup network could repeat it with a network that never
    answers). Told by order: the lookups are answered while the form's answer is still
    to come."""
    slow = {
        "ssid": "slow",
        "rssi": -50,
        "auth": 3,
        "password": "slow-pass-123",
        "connect_ms": 60000,
    }
    state = make_state(device_root, {}, {"mac": "a4cf12b3c4d5", "networks": [slow]})
    with start_setup(state, build_dir=portal_build, data_heap=DATA_HEAP) as sim:
        body = form_body(
            {"t": token(http(sim.url)[2]), "ssid": "slow", "password": "slow-pass-123"}
        )
        answered: list[tuple[int, str]] = []
        trying = threading.Thread(
            target=lambda: answered.append(http(sim.url + "save", body, FORM)[::2])
        )
        trying.start()
        try:
            time.sleep(1.0)  # the device is now waiting for the network
            for _ in range(3):
                answer = query(sim, "captive.apple.com.")
                assert [str(r) for rrset in answer.answer for r in rrset] == [sim.address]
                assert not answered  # still trying the network
        finally:
            trying.join(60)
        [(status, page)] = answered
        assert status == 200 and "timed out" in page, page[-500:]
