"""One MQTT connection to the fleet's broker (paho-mqtt), credentials from the environment.

`connect(url)` returns a connected paho client running its network loop in
a thread. The user name and password come from $LCM_MQTT_USER and
$LCM_MQTT_PASSWORD (never from the command line, where `ps` and shell
history would keep them); `mqtts://` verifies the broker against the
system's CAs, or the PEM file in $LCM_MQTT_CA.
"""

from __future__ import annotations

import os
import shlex
import ssl
import threading
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from publisher.fleet.errors import BrokerError

USER_ENV = "LCM_MQTT_USER"
PASSWORD_ENV = "LCM_MQTT_PASSWORD"
CA_ENV = "LCM_MQTT_CA"
TIMEOUT_S = 10.0
# The largest packet the broker may send us: a status (4 KB at most, publisher.fleet.view)
# with its topic, and room to name one that is too long; larger ones are not delivered.
MAX_PACKET = 8192


def release_topic(repo: str) -> str:
    return f"lcm/{repo}/release"


def status_topic(repo: str, device: str = "+") -> str:
    return f"lcm/{repo}/status/{device}"


def split_broker_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise BrokerError(
            f"the broker URL must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {url!r}"
        )
    if parts.username or parts.password:
        raise BrokerError(
            f"put no credentials in the broker URL: export ${USER_ENV} and ${PASSWORD_ENV}"
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise BrokerError(f"bad port in the broker URL {url!r}") from None
    return parts.hostname, port, tls


def connect(url: str, name: str, on_message: mqtt.CallbackOnMessage | None = None) -> mqtt.Client:
    """A connected client (its loop running); BrokerError when the broker refuses or is away."""
    host, port, tls = split_broker_url(url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"lcm-{name}-{uuid.uuid4().hex[:8]}",
        # MQTT 5: its PUBACK says when the broker's ACL refused a message (3.1.1 cannot).
        protocol=mqtt.MQTTv5,
    )
    user = os.environ.get(USER_ENV)
    if user:
        client.username_pw_set(user, os.environ.get(PASSWORD_ENV))
    if tls:
        ca = os.environ.get(CA_ENV)
        try:
            client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot load ${CA_ENV} ({ca}): {exc}") from None
    if on_message is not None:
        client.on_message = on_message
    done = threading.Event()
    outcome: list[str] = []

    def on_connect(
        _c: mqtt.Client, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object
    ) -> None:
        outcome.append("" if not rc.is_failure else str(rc))
        done.set()

    client.on_connect = on_connect
    # MQTT 5: the broker must not send a packet larger than this (it drops it instead), so
    # a device that publishes a status of megabytes cannot fill this process's memory.
    limits = Properties(PacketTypes.CONNECT)
    limits.MaximumPacketSize = MAX_PACKET
    try:
        client.connect(host, port, keepalive=60, properties=limits)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot connect to the broker {url}: {exc}") from None
    client.loop_start()
    if not done.wait(TIMEOUT_S):
        close(client)
        raise BrokerError(f"the broker {url} did not answer within {TIMEOUT_S:g} s")
    if outcome[0]:
        close(client)
        raise BrokerError(
            f"the broker {url} refused the connection: {outcome[0]} "
            f"(user from ${USER_ENV}, password from ${PASSWORD_ENV})"
        )
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish_hint(url: str, repo: str, hint: str) -> None:
    """Publish the retained push hint `hint` ("TAG" or "TAG NOTE") for `repo`'s devices."""
    data = hint.encode()
    if not 1 <= len(data) <= 80 or not all(0x20 <= c < 0x7F for c in data):
        raise BrokerError(f"a hint is 1 to 80 printable ASCII bytes, not {hint!r}")
    client = connect(url, "publish")
    acked = threading.Event()
    codes: list[mqtt.ReasonCode] = []

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        codes.append(rc)
        acked.set()

    client.on_publish = on_publish
    try:
        client.publish(release_topic(repo), data, qos=1, retain=True)
        if not acked.wait(TIMEOUT_S):
            raise BrokerError(
                f"the broker {url} did not acknowledge the hint within {TIMEOUT_S:g} s"
            )
        if codes[0].is_failure:
            raise BrokerError(
                f"the broker refused the hint on {release_topic(repo)}: {codes[0]} "
                "(may this account write that topic? see the ACL in docs/fleet.md)"
            )
    finally:
        close(client)


def publish_hint_after(url: str, repo: str, hint: str, done: str) -> None:
    """`publish_hint` once `done` happened (a release published, a roll-out widened): a
    failure says that it did, so the user does not redo it, only the hint."""
    try:
        publish_hint(url, repo, hint)
    except BrokerError as exc:
        raise BrokerError(
            f"{done}, but its push hint was not sent: {exc}. Devices find it at their next "
            f"check; to send the hint: lcm fleet hint --mqtt {url} --repo {repo} "
            f"{shlex.quote(hint)}"
        ) from None
