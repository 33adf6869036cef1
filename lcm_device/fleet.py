"""Push hints and fleet status over MQTT, while the app runs (off unless `mqtt_url` is set).

The boot polls an `Agent` from the check timer once the update checks are
done and the engine's modules are unloaded: the client is never connected
while the engine runs, and nothing on the update path imports this module
or lcm_device.mqtt (the update boot's heap stays what the bars measure).

- Status: on every connect (so after every check: a check is a reset into the
  manager, then a new connection) the device publishes, retained, to
  `lcm/OWNER/REPO/status/DEVICE_ID` a JSON object: `id`, `state` (`online`),
  `app`, `slot`, `trial`, `bad` (a tag that failed its trial), `manager`,
  `checked` (wall time of the last check or null), `result` (`[manager,
  app]` results), `error` (the last refusal or failure line), `heap` (free
  heap after the last check), `interval` (check_interval_s), `time`. The
  same object with `state: offline` is the last will, so a device that
  drops keeps its versions on the dashboard. Before it resets into the
  manager for a check it publishes `state: checking` and disconnects cleanly.
- Push: it subscribes to `lcm/OWNER/REPO/release`. A message is only a hint
  (`TAG` or `TAG NOTE`, printable ASCII, at most 80 bytes); what is installed
  is decided by the signed manifest. A hint for the tag already installed,
  or the very hint last acted on (the retained copy seen again at every
  connect), does nothing; any other moves the next check
  to a random moment within `push_spread_s` (default 60 s) so a fleet does
  not stampede the CDN. Rate limit: at most one hint-triggered check per
  `push_min_gap_s` (default 3600 s); a hint inside the gap moves the check to
  the gap's end, never earlier. The gap survives resets (/lcm/state/push.json:
  the wall time of the last hint-triggered check; without a clock the gap
  restarts at each boot, which only makes it longer). So a forged hint costs
  a device at most one extra idle check per gap, and a forged retained hint
  one check in all.
- The connection is retried with exponential back-off (5 s doubling to
  300 s, jittered); it goes back to 5 s only once a link has stayed up for
  `_STABLE_S`, so a broker that accepts and then drops the device (a refused
  subscription, a retained message over the buffer) is not reconnected to
  every few seconds. Every error is logged with its name and never stops the
  app.
"""

import json

from lcm_device import slots
from lcm_device.compat import const, unload
from lcm_device.hal.fs import makedirs, write_atomic
from lcm_device.schedule import safe_log, uniform

CHECK_PATH = "/lcm/state/lastcheck.json"
PUSH_PATH = "/lcm/state/push.json"
DEFAULT_SPREAD_S = 60
DEFAULT_GAP_S = 3600
DEFAULT_KEEPALIVE_S = 300
BUF_SIZE = 512  # the largest packet accepted from the broker (a hint is ~60 bytes)
_MAX_STATE = const(512)
# The error line a status carries, at most: escaped as JSON (at worst twice as long) it
# leaves room in _MAX_STATE for the rest of the record. The dashboard shows 200.
_MAX_ERROR = const(160)
_RETRY_MIN_S = const(5)
_RETRY_MAX_S = const(300)
_STABLE_S = const(60)  # a link up this long resets the back-off
_MAX_HINT = const(80)


def device_id(hal):
    import binascii

    return binascii.hexlify(hal.unique_id()).decode()


def record_check(hal, results, error, free_heap):
    """Called by the boot after the checks (engine unloaded): what the status reports."""
    if error:
        # The record is read back in _MAX_STATE bytes: a line holding a server's bytes,
        # escaped, could be longer, and the status would then lose the whole record.
        error = error[:_MAX_ERROR]
    rec = {"time": _wall(hal), "result": results, "error": error, "heap": free_heap}
    try:
        makedirs(hal.fs, hal.root + "/lcm/state")
        write_atomic(hal.fs, hal.root + CHECK_PATH, json.dumps(rec).encode())
    except Exception as exc:
        safe_log("fleet: cannot save the check record: " + repr(exc))


def _wall(hal):
    try:
        return hal.time()
    except Exception:
        return None


def _read_json(path):
    try:
        with open(path) as f:
            value = json.loads(f.read(_MAX_STATE))
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _int(cfg, key, default):
    try:
        return max(0, int(cfg.get(key, default)))
    except (TypeError, ValueError):
        return default


class Agent:
    """Polled every second (`poll(now_s)`); `sched`: the deadline it may move for a push hint
    (lcm_device.checktimer, armed by the boot: `seconds_until_due`; lcm_device.timerwork
    moves it)."""

    def __init__(self, hal, cfg, sched=None):
        self.hal = hal
        self.cfg = cfg
        self.sched = sched
        self.url = cfg.get("mqtt_url")
        repo = cfg.get("repo") or ""
        self.id = device_id(hal)
        self.release_topic = "lcm/" + repo + "/release"
        self.status_topic = "lcm/" + repo + "/status/" + self.id
        self.spread = _int(cfg, "push_spread_s", DEFAULT_SPREAD_S)
        self.gap = _int(cfg, "push_min_gap_s", DEFAULT_GAP_S)
        self.client = None
        self.retry_at = 0
        self.retry_s = _RETRY_MIN_S
        self.up_since = 0
        self.closed_for_check = False
        # The gap since the last hint-triggered check, counted on this boot's clock.
        self.gap_until = 0
        pushed = _read_json(hal.root + PUSH_PATH)
        self.last_hint = pushed.get("hint")
        if "wall" in pushed:
            from lcm_device.schedule import uptime_s

            last, now = pushed["wall"], _wall(hal)
            known = isinstance(last, int) and now is not None
            self.gap_until = uptime_s() + (last + self.gap - now if known else self.gap)

    # -- status ---------------------------------------------------------------

    def status(self, state):
        st = slots.load(self.hal)
        rec = _read_json(self.hal.root + CHECK_PATH)
        return json.dumps(
            {
                "id": self.id,
                "state": state,
                "app": st.get("app_tag"),
                "slot": st.get("app"),
                "trial": slots.in_trial(st, "app"),
                "bad": st.get("app_bad"),
                "manager": st.get("mgr_tag"),
                "checked": rec.get("time"),
                "result": rec.get("result"),
                "error": rec.get("error"),
                "heap": rec.get("heap"),
                "interval": _int(self.cfg, "check_interval_s", 14400),
                "time": _wall(self.hal),
            }
        ).encode()

    # -- the connection -------------------------------------------------------

    def poll(self, now_s):
        if self.sched is not None and not self.sched.seconds_until_due(now_s):
            self._close_for_check()
            return
        if self.client is None or self.client.sock is None:
            if now_s >= self.retry_at:
                self._connect(now_s)
            return
        from lcm_device.mqtt import MQTTError, RefusedError, SubscribeError

        try:
            for _ in range(4):  # a few packets per tick, never an unbounded loop
                msg = self.client.poll()
                if msg is None:
                    return
                self._hint(now_s, msg[0], msg[1])
        except SubscribeError as exc:
            safe_log("mqtt: " + self.release_topic + ": " + str(exc) + "; no push hints")
        except RefusedError as exc:
            # The broker's ACL refused our status (MQTT 5 PUBACK): said, the link stays up.
            safe_log("mqtt: " + str(exc) + " (check the broker's ACL for this device)")
        except MQTTError as exc:
            safe_log("mqtt: connection lost: " + _why(exc))
            if now_s - self.up_since >= _STABLE_S:
                self.retry_s = _RETRY_MIN_S
            self._back_off(now_s)

    def _connect(self, now_s):
        from lcm_device.mqtt import Client, MQTTError

        if self.client is None:
            self.client = Client(
                bytearray(BUF_SIZE),
                "lcm-" + self.id,
                user=self.cfg.get("mqtt_user"),
                password=self.cfg.get("mqtt_password"),
                keepalive_s=_int(self.cfg, "mqtt_keepalive_s", DEFAULT_KEEPALIVE_S),
                ca_ders=self._anchors(),
            )
        try:
            self.client.connect(self.url, self.status_topic, self.status("offline"))
            self.client.subscribe(self.release_topic)
            # QoS 1: with MQTT 5 the PUBACK says whether the broker's ACL took it.
            self.client.publish(self.status_topic, self.status("online"), retain=True, qos=1)
        except MQTTError as exc:
            safe_log("mqtt: " + _why(exc))
            self._back_off(now_s)
            return
        safe_log("mqtt: connected to " + self.url + " as " + self.id)
        self.up_since = now_s

    def _anchors(self):
        if not self.url.startswith("mqtts://"):
            return None
        try:
            from lcm_device import trust

            return trust.tls_anchors(self.hal, "app", self.cfg.get("repo"))
        except Exception as exc:
            safe_log("mqtt: no TLS anchors (" + repr(exc) + "); the broker is not verified")
            return None

    def _back_off(self, now_s):
        if self.client is not None:
            self.client.close(clean=False)
        wait = self.retry_s // 2 + int(uniform() * (self.retry_s // 2 + 1))
        self.retry_at = now_s + wait
        safe_log("mqtt: retrying in " + str(wait) + " s")
        self.retry_s = min(self.retry_s * 2, _RETRY_MAX_S)

    def _close_for_check(self):
        if self.closed_for_check:
            return
        self.closed_for_check = True
        if self.client is None or self.client.sock is None:
            return
        from lcm_device.mqtt import MQTTError

        try:
            self.client.publish(self.status_topic, self.status("checking"), retain=True)
        except MQTTError:
            pass
        self.client.close()

    # -- push -----------------------------------------------------------------

    def _hint(self, now_s, topic, payload):
        if topic != self.release_topic.encode():
            return  # not ours (a broker may deliver anything): ignored
        text = payload.decode() if _is_hint(payload) else None
        if text is None:
            safe_log("push: ignored a malformed hint (" + str(len(payload)) + " bytes)")
            return
        tag = text.split(" ")[0]
        installed = slots.load(self.hal).get("app_tag")
        if tag == installed or text == self.last_hint:
            return  # what runs, or a hint already acted on (the retained copy): nothing to do
        at = max(now_s + int(uniform() * (self.spread + 1)), self.gap_until)
        if self.sched is None:
            return
        if self.sched.seconds_until_due(now_s) <= at - now_s:
            safe_log("push: hint " + tag + "; a check is due sooner anyway")
            return
        from lcm_device.timerwork import check_within

        check_within(now_s, at - now_s)
        unload(["lcm_device.timerwork"], True)
        from lcm_device.rollout import recheck

        recheck(self.hal, self.cfg.get("repo"))  # a widened roll-out: read it at that check
        self.gap_until = at + self.gap
        self.last_hint = text
        wall = _wall(self.hal)
        try:
            # The wall time of the hint-triggered check (None: no clock).
            rec = {"wall": None if wall is None else wall + at - now_s, "hint": text}
            write_atomic(self.hal.fs, self.hal.root + PUSH_PATH, json.dumps(rec))
        except Exception as exc:
            safe_log("push: cannot save the rate limit: " + repr(exc))
        safe_log(
            "push: hint "
            + tag
            + " (installed "
            + str(installed or "none")
            + "); check in "
            + str(at - now_s)
            + " s"
        )


def _is_hint(data):
    # "TAG" or "TAG NOTE" (e.g. a roll-out stage): printable ASCII, at most _MAX_HINT bytes.
    if not 1 <= len(data) <= _MAX_HINT or data[0] == 0x20:
        return False
    return all(0x20 <= c < 0x7F for c in data)


def _why(exc):
    return exc.__class__.__name__ + ": " + str(exc)
