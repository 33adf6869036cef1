"""The update engine: find, fetch, verify and install a release into the inactive slot.

One `Updater` serves one kind of software: the app ("app": the configured
repo, app0/app1) or the manager itself ("mgr": the manager repo, m0/m1).
`check()` runs one cycle and never raises for anything the network or a
release can do; it returns what happened:

  "idle"       nothing new (one request: the /releases/latest redirect)
  "installed"  a release was installed and switched to (trial mode); reset next
  "refused"    a release failed a trust rule or a limit; logged with the reason
  "failed"     the network failed (retried next check); partial work is resumed then
  "crashed"    an unexpected error (a bug, MemoryError); logged, the app still runs
  "broken"     a module of this manager does not import: its own fault, never a
               server's (a manager on trial fails that boot; lcm_device.checkboot)

The cycle, and why it is safe (docs/device.md, "Update engine"):

  1. tag: GET /releases/latest without following; the Location names the tag
     (beta devices read the `beta.tag` pointer). Same tag as installed: idle.
     A tag that failed its trial before is looked at again only to read its
     signed sequence (metadata.py refuses it unless it is higher). The check's budget (time,
     and resumes) starts here at check_slack_s; metadata.py widens it to what the
     metadata may cost, slotfill.py to what the signed manifest says to fetch.
  2. cert sector: GET certs.sector with If-None-Match; a new one is verified
     against the installed sector (or the pinned roots) and swapped in
     atomically (trust.py). Its CAs become the TLS anchors.
  3. manifest: downloaded to /lcm/SLOT.lcm.new (at most MAX_MANIFEST_SIZE),
     signature checked from flash with the sector's release keys (and the
     key's scope), header checked (repo, board, channel, manager version,
     sequence above the installed one). If it equals the manifest already staged in the
     inactive slot, the slot's files are kept (resume); else the slot is
     wiped and the manifest renamed to /lcm/SLOT.lcm.
  4. plan: the file records are streamed from flash next to the active
     slot's manifest (both sorted by path); each file is done (already in
     the slot), copied (same path, size, sha256 as the active slot) or
     fetched from a pack offset. One 9-byte record per file goes to
     /lcm/state/plan.bin so that adjacent fetched files become one Range
     request without holding a list in memory. Free space is checked.
  5. fetch: copies and pack ranges stream into the inactive slot, hashed on
     the way; a bad hash refuses the release.
  6. verify: every file of the slot is hashed again against the manifest.
  7. switch: one atomic save of the boot state (slots.py) makes the slot active in trial.
"""

from cert_sector import release
from cert_sector.assets import BETA_POINTER_ASSET
from cert_sector.errors import TrustError
from lcm_device import slots, trust
from lcm_device.compat import collect, const, exists, ticks_diff, ticks_ms
from lcm_device.http import Client, HTTPError, StatusError, is_redirect

BUF_SIZE = 5120
_NET = const(2048)  # the HTTP client's part: a github.com signed asset URL is ~1.3 KB, and its
# Location header and the request line must fit; then the client's URL slot (as
# long: where such a URL is kept); the rest (1 KB): file data


class Refused(Exception):
    """A release refused for a reason that retrying will not change; the message says why
    (the engine's own refusal, next to cert_sector's TrustError)."""


class Updater:
    """The update engine of one kind: its settings, its one buffer, its HTTP client.

    install.py's steps take it as their first argument: one object, nothing copied.
    Settings come from the config (lcm_device.config.DEFAULTS fills every key).
    """

    # ticks_ms() when the update boot's checks began (lcm_device.checkboot), else None:
    # the check's budget counts from there, so that a boot's two checks share one.
    started = None
    # The seconds a server asked to wait (Retry-After, on a 429 or 503 that failed the
    # check), else None: lcm_device.checkboot gives them to the schedule.
    retry_after = None

    def __init__(self, hal, cfg, kind, buf, log):
        self.hal = hal
        self.cfg = cfg
        self.kind = kind
        self.log = log
        app = kind == "app"
        self.repo = cfg["repo" if app else "manager_repo"]
        self.roots = cfg["app_roots" if app else "manager_roots"]
        self.threshold = cfg["app_threshold" if app else "manager_threshold"]
        self.channel = cfg["channel"] if app else "stable"
        self.buf = memoryview(buf)  # the client's two parts are cut from it in check()
        self.io = self.buf[2 * _NET :]
        self.slot = self.buf[_NET : 2 * _NET]  # the client's URL slot
        self.client = None
        # What lcm_device.resolve learnt of this check's assets (lcm_device.fetch).
        self.resolved = ""

    # -- the cycle ---------------------------------------------------------

    def check(self):
        name = "manager" if self.kind == "mgr" else "app"
        if not self.repo:
            # The manager's repo is optional (a factory image's --manager-repo): say what
            # its absence means, not that the device has no repo.
            self.log(
                "manager: no manager repo set, lcm itself is not updated"
                if self.kind == "mgr"
                else "app: no repo set yet, nothing to check"
            )
            return "idle"
        st = slots.load(self.hal)
        if st.get(self.kind + "_repo") not in (None, self.repo):
            # The device was pointed at another repo (setup portal): what is installed
            # says nothing about this one's tags and sequences.
            self.log("%s: repo changed to %s, installing it afresh" % (name, self.repo))
            # A list, made here: a tuple would be a constant, an object in RAM on a board.
            for key in ["_tag", "_seq", "_bad", "_bad_seq", "_repo"]:
                st[self.kind + key] = None
            if self.kind == "app":
                st["fw_tag"] = st["fw_seq"] = st["fw_bad"] = None
        if slots.in_trial(st, self.kind):
            self.log(name + ": in trial, no update check until it is confirmed")
            return "idle"
        tag = None
        try:
            self.client = Client(
                self.buf[:_NET],
                slot=self.slot,
                load_cas=self._tls_anchors,
                timeout_ms=self.cfg["http_timeout_ms"],
                min_rate=self.cfg["min_rate"],
                allow_downgrade=self.cfg["allow_http_redirect"] is True,
            )
            if self.started is not None:
                self.client.born = self.started
            self.budget(0)
            tag = self._latest_tag()
            if tag is None:
                self.log("%s: %s has no release yet" % (name, self.repo))
                return "idle"
            if tag == st.get(self.kind + "_tag") or (
                self.kind == "app" and tag == st.get("fw_tag")
            ):
                self.log("%s: %s is installed, nothing new" % (name, tag))
                return "idle"
            # A tag that failed its trial: offered again only under a higher signed
            # sequence (`lcm release publish --force`), which the manifest tells.
            if (tag == st.get(self.kind + "_bad") and st.get(self.kind + "_bad_seq") is None) or (
                self.kind == "app" and tag == st.get("fw_bad")
            ):
                reason = st.get(self.kind + "_bad_why") or "why not recorded"
                self.log(
                    "%s: %s failed its trial before; waiting for a newer one (%s)"
                    % (name, tag, reason)
                )
                return "idle"
            # lcm_device.rollout.WAIT, checked without importing the module.
            if self.kind == "app" and exists(self.hal.root + "/lcm/state/rollout.wait"):
                # A staged roll-out this device waits for: one request, as an idle check.
                from lcm_device.rollout import waiting

                if waiting(self.hal, self.repo, tag, self.log):
                    return "idle"
            self.log(
                "%s: %s available (installed %s)"
                % (name, tag, st.get(self.kind + "_tag") or "none")
            )
            # Only now the code that installs: an idle check does not load it.
            from lcm_device.install import install

            # None: installed; "idle": a staged roll-out that does not include this device.
            return install(self, st, tag) or "installed"
        except (TrustError, Refused, HTTPError, OSError) as exc:
            # How long the check held the device, counted as its budget is (from the
            # client's creation): the figure bench/bench_attacks.py reports.
            c = self.client
            if isinstance(exc, StatusError):
                self.retry_after = exc.retry_after
            refused = isinstance(exc, (TrustError, Refused))
            self.log(
                name
                + (": refused " + str(tag) if refused else ": check failed")
                + ": "
                + why(exc)
                + " (held %d ms, budget %d ms)" % (ticks_diff(ticks_ms(), c.born), c.budget_ms)
            )
            return "refused" if refused else "failed"
        except ImportError as exc:
            self.log(name + ": check broken: " + why(exc))
            return "broken"
        except Exception as exc:
            # A bug (or MemoryError) must not keep the app from running: report it.
            self.log(name + ": check crashed: " + why(exc))
            return "crashed"
        finally:
            if self.client is not None:
                self.client.close()
                self.client = None
            collect()

    # -- 1. the tag --------------------------------------------------------

    def _latest_tag(self):
        resp = self.client.get(release.latest_url(self.cfg["web_url"], self.repo), follow=False)
        try:
            if resp.status == 200:
                # A static host (`lcm release export`) has no redirects: there
                # /releases/latest is a pointer file naming the tag (docs/formats.md).
                tag = release.tag_from_pointer(resp.read_all(release.MAX_TAG + 2))
            elif is_redirect(resp.status):
                tag = release.tag_from_location(resp.location, self.repo)
            else:
                raise Refused("/releases/latest answered %s, not a redirect" % (resp.status,))
        finally:
            resp.close()
        if tag is None or self.channel != "beta":
            return tag
        # Beta: the latest full release's `beta.tag` names the newest release of any
        # channel; without one (404), the latest full release.
        try:
            resp = self.client.get(self.url(tag, BETA_POINTER_ASSET))
        except StatusError as exc:
            if exc.status != 404:
                raise
            return tag
        try:
            return release.tag_from_pointer(resp.read_all(release.MAX_TAG + 2))
        finally:
            resp.close()

    def _tls_anchors(self):
        return trust.tls_anchors(self.hal, self.kind, self.repo)

    def budget(self, nbytes):
        """Set the check's budget for when `nbytes` must be fetched: check_slack_s plus
        those bytes at check_rate (docs/threat-model.md, "Slow retrieval"); returns it in ms."""
        cfg = self.cfg
        ms = cfg["check_slack_s"] * 1000 + nbytes * 1000 // cfg["check_rate"]
        self.client.budget_ms = ms
        return ms

    def url(self, tag, name):
        """The browser download URL of asset `name` of release `tag`."""
        return release.download_url(self.cfg["web_url"], self.repo, tag, name)


def why(exc):
    """A log line's reason: the exception's class and message."""
    return exc.__class__.__name__ + ": " + str(exc)
