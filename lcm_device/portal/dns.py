"""The setup network's DNS server: every name is the portal.

Each A (or ANY) query in class IN is answered with the portal's IPv4 address
and a short TTL, so that phones forget it soon after setup; AAAA and other
types get an empty NOERROR answer (no IPv6 route to the portal exists).
Answers copy the query's ID, question and RD flag and set QR, AA and RA.

Anything that is not a well-formed standard query (a response, another
opcode, not exactly one question, a compression pointer or an over-long
label in the question, truncation, a packet over 512 bytes) is dropped
without an answer: a malformed packet must never stop the portal.
"""

import socket

from lcm_device.compat import const

_MAX_PACKET = const(512)
_HEADER = const(12)
_TTL = const(60)
_TYPE_A = const(1)
_TYPE_ANY = const(255)
_CLASS_IN = const(1)
# The answer: pointer to the name at offset 12, type A, class IN, TTL, length 4.
_ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00" + bytes([_TTL]) + b"\x00\x04"


def question_end(query, n):
    """Offset just past the question (name, type, class), or -1 when malformed."""
    if n < _HEADER + 5 or n > _MAX_PACKET:
        return -1
    flags = query[2]
    if flags & 0xFA:  # a response (QR), not a standard query (opcode), or truncated (TC)
        return -1
    if query[4] != 0 or query[5] != 1 or query[6] or query[7] or query[8] or query[9]:
        return -1  # exactly one question, no answer or authority records
    i = _HEADER
    name_len = 0
    while True:
        if i >= n:
            return -1
        label = query[i]
        if label == 0:
            break
        if label > 63:  # compression pointer or reserved label type
            return -1
        name_len += label + 1
        if name_len > 254:  # 255 bytes at most with the final zero (RFC 1035 2.3.4)
            return -1
        i += label + 1
    i += 5
    return i if i <= n else -1


def answer(query, n, out, ip):
    """Write the answer to `query[:n]` into `out`; its length, or 0 to drop the packet."""
    end = question_end(query, n)
    if end < 0:
        return 0
    qtype = (query[end - 4] << 8) | query[end - 3]
    qclass = (query[end - 2] << 8) | query[end - 1]
    out[0:end] = query[0:end]
    out[2] = 0x84 | (query[2] & 0x01)  # QR, AA, and the client's RD
    out[3] = 0x80  # RA, NOERROR
    out[10] = out[11] = 0  # the query's EDNS record is not echoed
    if qclass != _CLASS_IN or qtype not in (_TYPE_A, _TYPE_ANY):
        out[6] = out[7] = 0
        return end
    out[6] = 0
    out[7] = 1
    out[end : end + 12] = _ANSWER
    out[end + 12 : end + 16] = ip
    return end + 16


class DnsServer:
    def __init__(self, bind, port, ip):
        self.ip = bytes(int(x) for x in ip.split("."))
        self.out = bytearray(_MAX_PACKET + 16)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(socket.getaddrinfo(bind, port)[0][-1])
        self.sock.setblocking(False)

    def handle(self):
        """Answer one waiting packet, if any; never raises for what a client sent."""
        try:
            query, addr = self.sock.recvfrom(_MAX_PACKET + 1)
        except (OSError, MemoryError):  # MemoryError: served mid-page, the heap at its fullest
            return
        n = answer(query, len(query), self.out, self.ip)
        if n:
            try:
                self.sock.sendto(memoryview(self.out)[:n], addr)
            except OSError:
                pass

    def close(self):
        self.sock.close()
