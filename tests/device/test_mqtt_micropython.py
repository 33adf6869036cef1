"""The device's MQTT client (lcm_device/mqtt.py) in the MicroPython unix port: against
mosquitto over TLS, and against a hostile broker (a raw socket server that lies)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
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


REFUSED_THEN = """
import time
from lcm_device.mqtt import Client, MQTTError, SubscribeError
c = Client(bytearray(256), "lcm-d1", timeout_ms=2000)
c.connect("{url}")
c.subscribe("lcm/acme/widget/release")
for i in range(40):
    try:
        m = c.poll()
    except SubscribeError as e:
        print("REFUSED", e)
        continue
    except MQTTError as e:
        print("ERR", e.__class__.__name__, e)
        break
    if m:
        print("MSG", m[0], m[1])
        break
    time.sleep_ms(50)
"""


def test_a_refused_subscription_keeps_the_link_and_what_follows_is_read(mpy: Any) -> None:
    """The refusing SUBACK was left in the buffer and read again as a SUBACK for no
    SUBSCRIBE of ours: a ProtocolError that dropped the link, at every reconnect."""
    refused = b"\x90\x03\x00\x01\x80"  # SUBACK for packet 1: refused (0x80)
    broker = LyingBroker(CONNACK + refused + b"\x30\x05\x00\x01tok", close=False)
    out = mpy.run(REFUSED_THEN.format(url=f"mqtt://127.0.0.1:{broker.port}"), timeout=30).stdout
    assert "REFUSED the broker refused the subscription" in out, out
    assert "MSG b't' b'ok'" in out and "ERR" not in out, out


class TwoConnections:
    """Refuses protocol level 5 as a 3.1.1 broker does (CONNACK code 1, then closes), then
    accepts the next connection; records each CONNECT's protocol level."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2)
        self.port = self.sock.getsockname()[1]
        self.levels: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        for reply in (b"\x20\x02\x00\x01", CONNACK):
            conn, _ = self.sock.accept()
            connect = b""
            while len(connect) < 9:  # the client writes the fixed header and the rest apart
                connect += conn.recv(1024)
            self.levels.append(connect[8])  # fixed header (2), "MQTT" (6), then the level
            conn.sendall(reply)
            if reply != CONNACK:
                conn.close()
        conn.settimeout(10)
        with contextlib.suppress(OSError):
            while conn.recv(1024):
                pass


LEVEL = """
from lcm_device.mqtt import Client, MQTTError
c = Client(bytearray(256), "lcm-d1", timeout_ms=2000)
try:
    c.connect("{url}")
    print("CONNECTED", c.level)
except MQTTError as e:
    print("ERR", e.__class__.__name__, e)
"""


def test_a_broker_that_refuses_mqtt5_is_spoken_to_in_3_1_1_at_once(mpy: Any) -> None:
    broker = TwoConnections()
    out = mpy.run(LEVEL.format(url=f"mqtt://127.0.0.1:{broker.port}"), timeout=30).stdout
    assert "CONNECTED 4" in out, out
    assert broker.levels == [5, 4]


TIMED = """
import time
from lcm_device.mqtt import Client, MQTTError
c = Client(bytearray(256), "lcm-d1", timeout_ms=2000)
t0 = time.ticks_ms()
try:
    c.connect("{url}")
    print("CONNECTED")
except MQTTError as e:
    print("ERR", e.__class__.__name__, e)
print("MS", time.ticks_diff(time.ticks_ms(), t0))
"""


def test_a_broker_that_trickles_its_tls_handshake_is_cut_within_the_timeout(mpy: Any) -> None:
    """A byte a second of a 16 KB TLS record: each read is within the 2 s timeout, so a
    blocking handshake took hours and held the app's tick; now it is cut at 2 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        record = b"\x16\x03\x03\x40\x00" + b"\x02" * 100
        with contextlib.suppress(OSError):
            for byte in record:
                if stop.is_set():
                    break
                conn.sendall(bytes([byte]))
                time.sleep(1)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        port = server.getsockname()[1]
        # TLS: its context needs more than the update bar's 24 KB pass gives (as above).
        out = mpy.run(
            TIMED.format(url=f"mqtts://127.0.0.1:{port}"), timeout=60, heap=mpy.heap_at_least(64)
        ).stdout
    finally:
        stop.set()
    assert "ERR NetworkError connect to 127.0.0.1" in out, out
    elapsed = int(out.split("MS ")[1].split()[0])
    assert elapsed < 6000, out  # the 2 s timeout and a poll's rounding, not a minute


FLAPPING = """
from lcm_sim.unix import UnixHal
from lcm_device.fleet import Agent
import os
hal = UnixHal()
os.mkdir(hal.root + "/lcm")
os.mkdir(hal.root + "/lcm/state")
cfg = {{"repo": "acme/widget", "mqtt_url": "{url}", "check_interval_s": 14400}}
agent = Agent(hal, cfg, None)
connects = []
for now in range(0, 900):
    before = agent.retry_at
    agent.poll(now)
    if agent.retry_at != before:
        connects.append(agent.retry_at - now)
print("WAITS", " ".join(str(w) for w in connects))
"""


def test_a_broker_that_accepts_then_drops_is_asked_less_and_less_often(
    tmp_path: Path, mpy: Any
) -> None:
    """Each CONNACK reset the back-off to 5 s: a broker that drops the device right after
    accepting it (a retained message over the buffer, a refused subscription) had it
    reconnect every 2-5 s for ever, publishing its status each time."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.recv(1024)
                conn.sendall(CONNACK + b"\x30\xff\xff\x7f")  # then a packet over the buffer
                time.sleep(0.2)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    root = tmp_path / "dev"
    root.mkdir()
    env = {"LCM_ROOT": str(root), "LCM_MAC": "240ac4000001"}
    url = f"mqtt://127.0.0.1:{server.getsockname()[1]}"
    try:
        # The simulated board and the agent: an app's heap, not the update bar's 24 KB.
        out = mpy.run(
            FLAPPING.format(url=url), extra_env=env, timeout=120, heap=mpy.heap_at_least(64)
        ).stdout
    finally:
        server.close()
    waits = [int(w) for w in out.split("WAITS")[1].split()]
    # 5 s doubling to 300 s, jittered to between half and all of it.
    assert len(waits) <= 12, waits  # about 150 when every connect reset it
    assert max(waits) >= 80, waits
