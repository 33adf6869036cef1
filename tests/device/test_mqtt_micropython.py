"""The device's MQTT client (lcm_device/mqtt.py) in the MicroPython unix port: against
mosquitto over TLS, and against a hostile broker (a raw socket server that lies)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.mqttbroker import running_broker

CLIENT = """
import time
from lcm_device.mqtt import Client, MQTTError
c = Client(bytearray(256), "lcm-d1", user="d1", password="pw", keepalive_s=60, ca_ders={cas},
           timeout_ms=2000)
try:
    c.connect("{url}", "lcm/acme/widget/status/d1", b"offline")
    c.subscribe("lcm/acme/widget/release")
    c.publish("lcm/acme/widget/status/d1", b"online", retain=True)
    for i in range(40):
        m = c.poll()
        if m:
            print("MSG", m[0], m[1])
            break
        time.sleep_ms(50)
    print("DONE")
except MQTTError as e:
    print("ERR", e.__class__.__name__, e)
"""


def test_tls_broker_with_the_sectors_ca(tmp_path: Path, mpy: Any) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    with running_broker(tmp_path, tls=ca) as broker:
        broker.add_device("acme/widget", "d1", "pw")
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        der = repr([x509.load_pem_x509_certificate(ca.cert_pem.bytes()).public_bytes(Encoding.DER)])
        import paho.mqtt.client as mqtt

        from tests.mqttbroker import PUBLISHER

        p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p")
        p.username_pw_set(*PUBLISHER)
        p.connect("127.0.0.1", broker.port)
        p.loop_start()
        p.publish("lcm/acme/widget/release", b"v2.0.0", qos=1, retain=True).wait_for_publish(5)
        p.disconnect()
        out = mpy.run(CLIENT.format(cas=der, url=broker.tls_url), heap=mpy.heap_at_least(64)).stdout
        assert "MSG b'lcm/acme/widget/release' b'v2.0.0'" in out, out
        # Another CA: the handshake fails, named.
        other = repr([trustme.CA().cert_pem.bytes()])
        out = mpy.run(
            CLIENT.format(cas=other, url=broker.tls_url), heap=mpy.heap_at_least(64)
        ).stdout
        assert "ERR NetworkError connect to localhost" in out, out


class LyingBroker:
    """Accepts one connection, reads the CONNECT, sends `reply`, then closes or keeps it open."""

    def __init__(self, reply: bytes, close: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.close = close
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(1024)
        conn.sendall(self.reply)
        if self.close:
            conn.close()
            return
        conn.settimeout(10)
        try:
            while conn.recv(1024):
                pass
        except OSError:
            pass
        conn.close()


CONNACK = b"\x20\x02\x00\x00"  # a 3.1.1 broker's: the client speaks 3.1.1 from then on
CONNACK5 = b"\x20\x03\x00\x00\x00"  # MQTT 5: flags, reason, no properties


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"\x20\x02\x00\x04", "RefusedError the broker refused the connection: bad user name"),
        (b"\x20\x02\x00\x63", "RefusedError the broker refused the connection: code 99"),
        (b"\x30\x02\x00\x00", "ProtocolError expected a CONNACK"),
        (CONNACK + b"\x30\xff\xff\xff\xff\x01", "ProtocolError remaining length longer than 4"),
        (CONNACK + b"\x30\xff\xff\xff\x7f", "LimitError a packet of 268435460 bytes is over"),
        (CONNACK + b"\x30\x04\xff\xff\x00\x00", "ProtocolError malformed PUBLISH"),
        (CONNACK + b"\xf0\x00", "ProtocolError unexpected packet type 15"),
        (CONNACK + b"\x90\x03\x00\x01\x80", "SubscribeError the broker refused the subscription"),
        (CONNACK + b"\x90\x03\x00\x07\x00", "ProtocolError SUBACK for packet 7, not our SUB"),
        (CONNACK + b"\x36\x05\x00\x01t\x00\x01", "ProtocolError malformed PUBLISH (QoS 3)"),
        (CONNACK + b"\x30\x10\x00", "NetworkError "),  # closed, or EPIPE on the SUBSCRIBE
        (b"", "StalledError no CONNACK within 2000 ms"),
        # MQTT 5 answers (a 3-byte CONNACK and more): reason codes and properties.
        (b"\x20\x03\x00\x87\x00", "RefusedError the broker refused the connection: not auth"),
        (b"\x20\x03\x00\x00\x05", "ProtocolError CONNACK properties past the packet's end"),
        (CONNACK5 + b"\xe0\x01\x8d", "NetworkError the broker disconnected us: keep-alive"),
        (CONNACK5 + b"\x30\x08\x00\x01t\xff\xff\xff\xff\x01", "ProtocolError PUBLISH prop"),
        (CONNACK5 + b"\x90\x04\x00\x01\x00\x87", "SubscribeError the broker refused the sub"),
    ],
)
def test_a_lying_broker_gets_a_named_error(reply: bytes, error: str, mpy: Any) -> None:
    # The packet cut short is followed by a close.
    broker = LyingBroker(reply, close=error == "NetworkError ")
    out = mpy.run(CLIENT.format(cas=None, url=f"mqtt://127.0.0.1:{broker.port}"), timeout=30).stdout
    assert "ERR " + error in out, out


KEEPALIVE = """
import time
from lcm_device.mqtt import Client, MQTTError
c = Client(bytearray(256), "lcm-d1", user="d1", password="pw", keepalive_s=1, timeout_ms=2000)
try:
    c.connect("{url}")
    for i in range(60):
        c.poll()
        time.sleep_ms(50)
    print("ALIVE")
except MQTTError as e:
    print("ERR", e.__class__.__name__, e)
"""


def test_keepalive_pings_a_live_broker_and_drops_a_silent_one(tmp_path: Path, mpy: Any) -> None:
    with running_broker(tmp_path) as broker:
        broker.add_device("acme/widget", "d1", "pw")
        out = mpy.run(KEEPALIVE.format(url=broker.url)).stdout
        assert "ALIVE" in out, out
        assert broker.log_text().count("Received PINGREQ from lcm-d1") >= 2
    silent = LyingBroker(CONNACK, close=False)  # accepts, then never answers a PINGREQ
    out = mpy.run(KEEPALIVE.format(url=f"mqtt://127.0.0.1:{silent.port}")).stdout
    assert "ERR StalledError nothing from the broker for 1 s" in out, out


def test_an_mqtt5_message_with_properties_is_delivered(mpy: Any) -> None:
    broker = LyingBroker(CONNACK5 + b"\x30\x09\x00\x01t\x02\x01\x01hey", close=False)
    out = mpy.run(CLIENT.format(cas=None, url=f"mqtt://127.0.0.1:{broker.port}"), timeout=30).stdout
    assert "MSG b't' b'hey'" in out, out
