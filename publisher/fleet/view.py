"""What the fleet's retained MQTT messages say: one `FleetView` fed by a subscription.

Everything a device publishes is untrusted text: each field is type-checked
here (a wrong type reads as unknown), lengths are capped, and whoever
displays it escapes it. A status payload over MAX_STATUS bytes, or one that
is not a JSON object, is shown as a device with the problem named.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from publisher.fleet import broker
from publisher.printable import printable

log = logging.getLogger("lcm.fleet")

MAX_STATUS = 4096
_TEXT = 200  # longest text field kept (an error line is at most 200 bytes on the device)
_MAX_NUMBER = 2**53
# A device checks every interval +/- 25 %, and publishes a status after each check.
STALE_FACTOR = 1.25


def _text(value: Any) -> str | None:
    # A device's text reaches a terminal (`lcm fleet status`): its control characters as
    # escapes, so that a status cannot drive the terminal.
    return printable(value[:_TEXT]) if isinstance(value, str) else None


def _number(value: Any) -> int | None:
    # A count or a wall time: a device's own are far below 2**53 (a float's exact range,
    # where the dashboard's JavaScript and float arithmetic here are exact); anything
    # larger (a number of a thousand digits) reads as unknown.
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_NUMBER
    return value if ok else None


@dataclass
class DeviceStatus:
    id: str
    state: str = "?"
    app: str | None = None
    slot: str | None = None
    trial: bool = False
    bad: str | None = None
    manager: str | None = None
    checked: int | None = None
    result: list[str] = field(default_factory=list)
    error: str | None = None
    heap: int | None = None
    interval: int | None = None
    time: int | None = None
    received: float = 0.0
    problem: str | None = None

    @classmethod
    def parse(cls, device: str, payload: bytes, received: float) -> DeviceStatus:
        st = cls(id=printable(device[:64]), received=received)
        if len(payload) > MAX_STATUS:
            st.problem = f"status of {len(payload)} bytes (over {MAX_STATUS})"
            return st
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):  # 4 KB of "[" nests past the parser's depth
            st.problem = "status is not JSON"
            return st
        if not isinstance(data, dict):
            st.problem = "status is not a JSON object"
            return st
        st.state = _text(data.get("state")) or "?"
        st.app = _text(data.get("app"))
        st.slot = _text(data.get("slot"))
        st.trial = data.get("trial") is True
        st.bad = _text(data.get("bad"))
        st.manager = _text(data.get("manager"))
        st.checked = _number(data.get("checked"))
        result = data.get("result")
        st.result = (
            [printable(r[:16]) for r in result if isinstance(r, str)][:2]
            if isinstance(result, list)
            else []
        )
        st.error = _text(data.get("error"))
        st.heap = _number(data.get("heap"))
        st.interval = _number(data.get("interval"))
        st.time = _number(data.get("time"))
        return st

    def last_seen(self) -> float | None:
        """Wall time of the status (the device's clock), else None (no clock)."""
        return float(self.time) if self.time is not None else None

    def stale(self, now: float) -> bool:
        """Not heard from for longer than its check interval allows (offline counts too)."""
        seen = self.last_seen()
        if seen is None or not self.interval:
            return self.state == "offline"
        return now - seen > STALE_FACTOR * self.interval

    def as_json(self, now: float) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["stale"] = self.stale(now)
        return d


@dataclass
class Rollout:
    """The release hint: its tag and, for a staged roll-out, the share or the halt."""

    tag: str | None = None
    share: int | None = None  # percent; None = the whole fleet
    halted: bool = False

    @classmethod
    def parse(cls, payload: bytes) -> Rollout:
        words = payload.decode("ascii", "replace")[:80].split()
        # Shown in `lcm fleet status`'s title: its control characters as escapes.
        ro = cls(tag=printable(words[0]) if words else None)
        if len(words) >= 3 and words[1] == "rollout":
            if words[2] == "halted":
                ro.halted = True
            elif words[2].isdigit():
                ro.share = min(int(words[2]), 100)
        return ro


class FleetView:
    """The latest status of every device of one repo, and the release hint; thread-safe."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.devices: dict[str, DeviceStatus] = {}
        self.rollout = Rollout()
        self.changes = 0
        self.lock = threading.Condition()
        self._prefix = f"lcm/{repo}/status/"

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """Called in paho's network thread: an exception here would end that thread (and
        every later update), so whatever a message holds, it is read as a status or not."""
        try:
            self._take(msg)
        except Exception as exc:
            log.exception("fleet: a message on %s could not be read: %r", msg.topic, exc)

    def _take(self, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        with self.lock:
            if msg.topic.startswith(self._prefix):
                device = msg.topic[len(self._prefix) :]
                if not msg.payload:
                    self.devices.pop(device, None)  # a cleared retained status
                else:
                    self.devices[device] = DeviceStatus.parse(device, bytes(msg.payload), now)
            elif msg.topic == broker.release_topic(self.repo):
                self.rollout = Rollout.parse(bytes(msg.payload))
            else:
                return
            self.changes += 1
            self.lock.notify_all()

    def snapshot(self) -> tuple[list[DeviceStatus], Rollout, int]:
        with self.lock:
            devices = sorted(self.devices.values(), key=lambda d: d.id)
            return devices, self.rollout, self.changes

    def wait_change(self, seen: int, timeout: float) -> int:
        with self.lock:
            self.lock.wait_for(lambda: self.changes != seen, timeout)
            return self.changes

    def versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.snapshot()[0]:
            key = d.app or "(none)"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def progress(self) -> dict[str, int]:
        """Devices on the hinted release (confirmed / in trial), rolled back from it, others."""
        devices, ro, _ = self.snapshot()
        out = {"on": 0, "trial": 0, "rolled_back": 0, "other": 0}
        for d in devices:
            if ro.tag and d.app == ro.tag:
                out["trial" if d.trial else "on"] += 1
            elif ro.tag and d.bad == ro.tag:
                out["rolled_back"] += 1
            else:
                out["other"] += 1
        return out


def follow(url: str, repo: str) -> tuple[mqtt.Client, FleetView]:
    """Subscribe to the repo's statuses and release hint; the view fills as messages come."""
    view = FleetView(repo)
    client = broker.connect(url, "fleet", on_message=view.on_message)
    client.subscribe([(broker.status_topic(repo), 0), (broker.release_topic(repo), 0)])
    return client, view


def settle(view: FleetView, quiet_s: float = 0.5, max_s: float = 5.0) -> None:
    """Wait for the retained messages: until `quiet_s` without news (at most `max_s`)."""
    deadline = time.monotonic() + max_s
    seen = -1
    while time.monotonic() < deadline:
        now_seen = view.wait_change(seen, quiet_s)
        if now_seen == seen:
            return
        seen = now_seen
