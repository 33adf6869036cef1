"""A small MQTT client for the device: TCP or TLS, user/password, keep-alive, QoS 0 and 1.

c = Client(buf, client_id, user=None, password=None, keepalive_s=300, ca_ders=None)
c.connect("mqtts://broker.lan:8883", will_topic, will_payload)   # waits for CONNACK
c.subscribe(topic)                    # the SUBACK is read by poll(): a refusal raises there
c.publish(topic, payload, retain=True, qos=1)   # QoS 1: a refusal comes back in poll()
msg = c.poll()                        # never blocks: (topic, payload) or None
c.close()                             # DISCONNECT (the will is not sent)

Protocol: MQTT 5 first, because only its acknowledgements carry a reason
code: a broker's ACL refusing the device's status PUBLISH (PUBACK 0x87) or a
subscription (SUBACK >= 0x80) is then seen, named and logged by the device.
A broker that answers in MQTT 3.1.1 (a 2-byte CONNACK) is spoken to in 3.1.1
from then on (`level` 4; one reconnect when it refused protocol level 5). No
MQTT 5 property is sent; received ones are skipped, bounds-checked.

Rules (every breach is an MQTTError naming it, and the connection is dropped):
- one preallocated buffer (`buf`) holds at most one incoming packet: a packet
  whose remaining length says it is larger is refused before its body is read
  (LimitError), so neither a hostile broker nor an oversized message can make
  the device allocate;
- a variable-length integer (remaining length, property length) has at most
  4 bytes, and every length stays inside its packet;
- CONNACK must be the first packet and say 0 (accepted); its other codes are
  named (bad user name or password, not authorised, ...): RefusedError;
- a SUBACK code >= 0x80 is the broker refusing the subscription (its ACL):
  SubscribeError; a PUBACK code >= 0x80 (MQTT 5) is the broker refusing our
  QoS-1 PUBLISH: RefusedError naming the topic. These two keep the connection;
- only the packets this client can receive are accepted (CONNACK, PUBLISH,
  PUBACK, SUBACK, PINGRESP, and an MQTT 5 DISCONNECT with its reason; a QoS-1
  PUBLISH is acknowledged); anything else is a ProtocolError, as are a
  PUBLISH with QoS 3 and a SUBACK for no SUBSCRIBE of ours;
- keep-alive: a PINGREQ after keepalive_s / 2 of silence from us; no packet
  from the broker for 1.5 x keepalive_s is a dead connection (StalledError).

Sockets are non-blocking once connected: `poll()` reads what has arrived
and returns. MicroPython's readinto returns None when nothing is there;
CPython raises an OSError with EAGAIN (plain) or SSL_ERROR_WANT_READ (TLS).
These shims are private to this module, as http.py's are to it.
"""

import select
import socket

from lcm_device.compat import const, ticks_diff, ticks_ms


class MQTTError(Exception):
    pass


# The subclasses are made with type(): a class statement costs more heap each.
LimitError = type("LimitError", (MQTTError,), {})
ProtocolError = type("ProtocolError", (MQTTError,), {})
RefusedError = type("RefusedError", (MQTTError,), {})
SubscribeError = type("SubscribeError", (MQTTError,), {})
StalledError = type("StalledError", (MQTTError,), {})
NetworkError = type("NetworkError", (MQTTError,), {})

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
# Would-block codes of a non-blocking socket: EAGAIN; CPython's TLS says
# SSL_ERROR_WANT_READ or _WRITE.
_AGAIN = (11, 2, 3)
# MicroPython's sockets (plain and TLS) have readinto/write; CPython's recv_into/send.
_MPY = not hasattr(socket.socket, "recv_into")
_MAX_TOPIC = const(200)

# MQTT 5 reason codes worth a name (the others are shown in hex).
_REASONS = {
    0x00: "normal disconnection",
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client id rejected",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8D: "keep-alive timeout",
    0x8E: "session taken over",
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
}


def _reason(code):
    return _REASONS.get(code) or "reason 0x%02x" % code


_CONNACK_CODES = (
    None,
    "unacceptable protocol version",
    "client id rejected",
    "server unavailable",
    "bad user name or password",
    "not authorised",
)


def split_url(url):
    """("mqtt" or "mqtts", host, port) of mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""
    if url.startswith("mqtts://"):
        scheme, rest, port = "mqtts", url[8:], 8883
    elif url.startswith("mqtt://"):
        scheme, rest, port = "mqtt", url[7:], 1883
    else:
        raise MQTTError("the broker URL must start with mqtt:// or mqtts://: " + url[:40])
    rest = rest.rstrip("/")
    if ":" in rest:
        rest, digits = rest.rsplit(":", 1)
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise MQTTError("bad port in the broker URL: " + digits[:8])
        port = int(digits)
    if not rest or "/" in rest or "@" in rest:
        raise MQTTError("bad host in the broker URL (credentials go in mqtt_user/mqtt_password)")
    return scheme, rest, port


def _str(out, text):
    data = text.encode() if isinstance(text, str) else bytes(text)
    out.append(len(data) >> 8)
    out.append(len(data) & 0xFF)
    out.extend(data)


def _length(out, n):
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return


class Client:
    def __init__(
        self,
        buf,
        client_id,
        user=None,
        password=None,
        keepalive_s=300,
        ca_ders=None,
        timeout_ms=5000,
    ):
        self.buf = memoryview(buf)
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.cas = ca_ders
        self.timeout_ms = timeout_ms
        self.sock = None
        self._poll = None
        self._have = 0
        self._sent = self._heard = 0
        self._pid = 0
        self._pending = None  # (packet id, topic) of the QoS-1 PUBLISH awaiting its PUBACK
        self._suback = None  # packet id of the SUBSCRIBE awaiting its SUBACK
        self.connected = False
        self.level = 5  # MQTT 5; 4 (3.1.1) once a broker answered in 3.1.1

    # -- connection ---------------------------------------------------------

    def connect(self, url, will_topic=None, will_payload=b"", will_retain=True):
        level = self.level  # the refusal's CONNACK, in 3.1.1, sets 4 already
        try:
            self._connect(url, will_topic, will_payload, will_retain)
        except RefusedError as exc:
            if level != 5 or not str(exc).endswith("unacceptable protocol version"):
                raise
            self.level = 4  # a 3.1.1 broker: once more in its protocol
            self._connect(url, will_topic, will_payload, will_retain)

    def _connect(self, url, will_topic, will_payload, will_retain):
        self.close(clean=False)
        scheme, host, port = split_url(url)
        pkt = bytearray()
        flags = 0x02  # clean session: nothing queued for a device while it is away
        if will_topic:
            flags |= 0x04 | (0x20 if will_retain else 0)
        if self.user:
            flags |= 0x80
        if self.password:
            flags |= 0x40
        v5 = self.level == 5
        _str(pkt, "MQTT")
        pkt.append(self.level)
        pkt.append(flags)
        pkt.append(self.keepalive_s >> 8)
        pkt.append(self.keepalive_s & 0xFF)
        if v5:
            pkt.append(0)  # no properties
        _str(pkt, self.client_id)
        if will_topic:
            if v5:
                pkt.append(0)  # no will properties
            _str(pkt, will_topic)
            _str(pkt, will_payload)
        if self.user:
            _str(pkt, self.user)
        if self.password:
            _str(pkt, self.password)
        sock = None
        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            sock = socket.socket(ai[0], socket.SOCK_STREAM)
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(ai[-1])
            if scheme == "mqtts":
                import ssl

                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                if self.cas:
                    ctx.verify_mode = ssl.CERT_REQUIRED
                    for der in self.cas:
                        ctx.load_verify_locations(cadata=bytes(der))
                else:
                    # No anchors in the app's cert sector: the hint is only a hint and
                    # the status is public, but say so (docs/fleet.md).
                    if hasattr(ctx, "check_hostname"):
                        ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                # MicroPython: no handshake here, where it would block read after read (a
                # broker trickling it would hold the app): the CONNECT's write below
                # drives it, in non-blocking steps, all within timeout_ms.
                sock = ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=not _MPY)
            sock.setblocking(False)
            self.sock = sock
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)
            self._have = 0
            self._send(_CONNECT, pkt)
        except (OSError, ValueError, IndexError, MQTTError) as exc:
            self.sock = None
            if sock:
                sock.close()
            raise NetworkError("connect to " + host + ":" + str(port) + ": " + _why(exc)) from None
        start = ticks_ms()
        while not self.connected:
            if ticks_diff(ticks_ms(), start) > self.timeout_ms:
                self.close(clean=False)
                raise StalledError("no CONNACK within " + str(self.timeout_ms) + " ms")
            if self.poll() is not None:
                self.close(clean=False)
                raise ProtocolError("a PUBLISH before the CONNACK")
            self._poll.poll(50)
        self._heard = ticks_ms()

    def close(self, clean=True):
        """Disconnect; `clean` sends DISCONNECT first, so the broker does not send the will."""
        sock = self.sock
        if sock is None:
            return
        if clean and self.connected:
            try:
                self._send(_DISCONNECT, b"")
            except MQTTError:
                pass
        self.sock = None
        self._poll = None
        self.connected = False
        try:
            sock.close()
        except OSError:
            pass

    # -- sending ------------------------------------------------------------

    def _send(self, kind, body):
        head = bytearray((kind,))
        _length(head, len(body))
        self._write(head)
        self._write(body)
        self._sent = ticks_ms()

    def _write(self, data):
        mv = memoryview(data)
        start = ticks_ms()
        while mv:
            try:
                n = self.sock.write(mv) if _MPY else self.sock.send(mv)
            except (OSError, ValueError) as exc:  # MicroPython's TLS: ValueError(its reason)
                if not exc.args or exc.args[0] not in _AGAIN:
                    self._drop()
                    raise NetworkError("send: " + _why(exc)) from None
                n = None
            if n:
                mv = mv[n:]
            elif ticks_diff(ticks_ms(), start) > self.timeout_ms:
                self._drop()
                raise StalledError("send stalled for " + str(self.timeout_ms) + " ms")
            else:
                p = select.poll()
                p.register(self.sock, select.POLLOUT)
                p.poll(50)

    def subscribe(self, topic):
        self._pid = self._pid % 65535 + 1
        pkt = bytearray((self._pid >> 8, self._pid & 0xFF))
        if self.level == 5:
            pkt.append(0)  # no properties
        _str(pkt, topic)
        pkt.append(0)  # QoS 0: a hint lost in a reconnect is caught by the retained copy
        self._suback = self._pid
        self._send(_SUBSCRIBE, pkt)

    def publish(self, topic, payload, retain=False, qos=0):
        """QoS 0, or 1: the broker's PUBACK (MQTT 5: with its verdict) is read by poll()."""
        pkt = bytearray()
        _str(pkt, topic)
        if qos:
            self._pid = self._pid % 65535 + 1
            pkt.append(self._pid >> 8)
            pkt.append(self._pid & 0xFF)
            self._pending = (self._pid, topic)
        if self.level == 5:
            pkt.append(0)  # no properties
        pkt.extend(payload)
        self._send(_PUBLISH | (2 if qos else 0) | (1 if retain else 0), pkt)

    # -- receiving ----------------------------------------------------------

    def poll(self):
        """Handle what has arrived; (topic, payload) of a PUBLISH, else None. Never blocks."""
        if self.sock is None:
            raise NetworkError("not connected")
        now = ticks_ms()
        ka = self.keepalive_s * 1000
        if self.connected and ka:
            if ticks_diff(now, self._heard) > ka * 3 // 2:
                self._drop()
                raise StalledError(
                    "nothing from the broker for " + str(self.keepalive_s * 3 // 2) + " s"
                )
            if ticks_diff(now, self._sent) > ka // 2:
                self._send(_PINGREQ, b"")
        while True:
            msg = self._packet()
            if msg is not False:
                return msg
            if not self._fill():
                return None

    def _fill(self):
        # Read what is there into the buffer after the partial packet; False: nothing came.
        free = self.buf[self._have :]
        if not free:
            return False
        try:
            n = self.sock.readinto(free) if _MPY else self.sock.recv_into(free)
        except OSError as exc:
            if exc.args[0] in _AGAIN:
                return False
            self._drop()
            raise NetworkError("read: " + _why(exc)) from None
        if n is None:
            return False
        if n == 0:
            self._drop()
            raise NetworkError("the broker closed the connection")
        self._have += n
        self._heard = ticks_ms()
        return True

    def _packet(self):
        # One complete packet from the buffer: its message, None (handled), or False
        # (incomplete: read more).
        b = self.buf
        have = self._have
        if have < 2:
            return False
        n, i = self._varint(1, have, "remaining length")
        if i < 0:
            return False
        total = i + n
        if total > len(b):
            self._drop()
            raise LimitError(
                "a packet of " + str(total) + " bytes is over the " + str(len(b)) + "-byte buffer"
            )
        if have < total:
            return False
        try:
            return self._handle(b[0] & 0xF0, b[0], i, total)
        finally:
            # Move what follows this packet to the front (the buffer is the only storage),
            # a packet that raised too: a refusal that keeps the connection is read once.
            b[: have - total] = b[total:have]
            self._have = have - total

    def _varint(self, i, end, what):
        # (value, index after it) of a variable-length integer at i; (0, -1): not all there.
        b = self.buf
        n = shift = 0
        start = i
        while True:
            if i >= end:
                return 0, -1
            c = b[i]
            n |= (c & 0x7F) << shift
            i += 1
            if not c & 0x80:
                return n, i
            shift += 7
            if i - start >= 4:
                self._drop()
                raise ProtocolError(what + " longer than 4 bytes")

    def _skip_properties(self, i, total, what):
        # MQTT 5: the properties at i are skipped; the index after them.
        if self.level != 5:
            return i
        n, j = self._varint(i, total, what + " properties")
        if j < 0 or j + n > total:
            self._drop()
            raise ProtocolError(what + " properties past the packet's end")
        return j + n

    def _handle(self, kind, first, i, total):
        b = self.buf
        if not self.connected:
            if kind != _CONNACK or total - i < 2:
                self._drop()
                raise ProtocolError("expected a CONNACK, got packet type " + str(first >> 4))
            code = b[i + 1]
            if total - i == 2 and self.level == 5:
                self.level = 4  # the broker answered in 3.1.1: speak it from now on
            if code:
                self._drop()
                if self.level == 5:
                    why = _reason(code)
                elif code < len(_CONNACK_CODES):
                    why = _CONNACK_CODES[code]
                else:
                    why = "code " + str(code)
                raise RefusedError("the broker refused the connection: " + why)
            self._skip_properties(i + 2, total, "CONNACK")
            self.connected = True
            return None
        if kind == _PUBLISH:
            qos = (first >> 1) & 3
            if total - i < 2:
                self._drop()
                raise ProtocolError("PUBLISH shorter than its topic length")
            if qos == 3:  # MQTT 3.3.1-4: close the connection
                self._drop()
                raise ProtocolError("malformed PUBLISH (QoS 3)")
            tlen = (b[i] << 8) | b[i + 1]
            start = i + 2 + tlen
            if tlen > _MAX_TOPIC or start + (2 if qos else 0) > total:
                self._drop()
                raise ProtocolError("malformed PUBLISH (topic length " + str(tlen) + ")")
            topic = bytes(b[i + 2 : start])
            pid = None
            if qos:
                pid = bytes(b[start : start + 2])
                start += 2
            start = self._skip_properties(start, total, "PUBLISH")
            if pid is not None:
                self._send(_PUBACK if qos == 1 else 0x50, pid)
            return topic, bytes(b[start:total])
        if kind == _SUBACK:
            j = self._skip_properties(i + 2, total, "SUBACK")
            if total - i < 3 or j >= total:
                self._drop()
                raise ProtocolError("SUBACK too short")
            pid = (b[i] << 8) | b[i + 1]
            if pid != self._suback:
                self._drop()
                raise ProtocolError("SUBACK for packet " + str(pid) + ", not our SUBSCRIBE's")
            self._suback = None
            if b[j] >= 0x80:
                raise SubscribeError("the broker refused the subscription: " + _reason(b[j]))
            return None
        if kind == _PUBACK:
            if total - i < 2:
                self._drop()
                raise ProtocolError("PUBACK too short")
            pending = self._pending
            if pending is not None and pending[0] == (b[i] << 8) | b[i + 1]:
                self._pending = None
                if total - i > 2 and b[i + 2] >= 0x80:
                    raise RefusedError(
                        "the broker refused the message to " + pending[1] + ": " + _reason(b[i + 2])
                    )
            return None
        if kind == _PINGRESP:
            return None
        if kind == _DISCONNECT and self.level == 5:
            code = b[i] if total > i else 0
            self._drop()
            raise NetworkError("the broker disconnected us: " + _reason(code))
        self._drop()
        raise ProtocolError("unexpected packet type " + str(first >> 4))

    def _drop(self):
        self.close(clean=False)


def _why(exc):
    return exc.__class__.__name__ + ": " + str(exc)
