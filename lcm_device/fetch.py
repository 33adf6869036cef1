"""Downloads for the update engine: small assets to flash, and pack ranges that resume.

Both stream through the caller's memoryview into flash and hash on the way.
Drops and stalls are retried (`_RETRIES` in a row without progress); a pack
range resumes with Range from the last byte written, so a cut costs at most
the bytes that were in flight (one buffer). Resumes of one check are capped
(`max_resumes`, from the check's budget): a server that sends a few bytes and
stalls, again and again, ends the check with BudgetError. Each asset is fetched from
where lcm_device.resolve found it served (its signed CDN URL, on flash) when
it asked, else from its browser download URL; a CDN URL that expired
(403/404/410) is asked of the download URL again.
"""

import hashlib

from lcm_device.compat import const
from lcm_device.hal.fs import pump
from lcm_device.http import (
    BudgetError,
    NetworkError,
    ProtocolError,
    StalledError,
    StatusError,
    is_redirect,
)
from lcm_device.update import Refused

_RETRIES = const(3)
_LONG_URL = const(256)  # lcm_device.http's _LONG_VALUE: longer Locations stay in the URL slot
# Where lcm_device.resolve keeps an asset's signed URL: % (root, kind, asset name). A
# format string, not a function: a function is an object in RAM on a board, a string not.
URL_FILE = "%s/lcm/state/%s-%s.url"


def stored_url(u, name):
    """The signed URL lcm_device.resolve found for asset `name` in this check, or None. As
    the client keeps a Location: a long one in its URL slot (a memoryview: a URL of 1.3 KB
    never becomes a str), a short one as a str (a relative redirect may be joined to it)."""
    if " " + name not in u.resolved:
        return None
    with open(URL_FILE % (u.hal.root, u.kind, name), "rb") as f:
        n = f.readinto(u.slot)
    return u.slot[:n] if n > _LONG_URL else str(u.slot[:n], "utf-8")


def download(u, url, path, limit, headers):
    """GET the release asset whose browser download URL is `url` with the Updater `u`'s
    client into the file `path`, at most `limit` bytes, through its buffer, with `headers`
    (a dict, or None); (size, sha256, etag). From its signed URL when lcm_device.resolve
    found one, else (or when that one expired) from `url`.

    A StatusError (304 for an unchanged If-None-Match, 404, ...) is passed on: a 404
    without a request when lcm_device.resolve heard it already.
    """
    name = url[url.rfind("/") + 1 :]
    if " -" + name in u.resolved:
        exc = StatusError("HTTP 404 from " + url)
        exc.status = 404
        exc.retry_after = None
        raise exc
    failures = 0
    stored = " " + name in u.resolved
    while True:
        try:
            try:
                # Read at each try: a redirect followed from it replaced it in the URL slot.
                resp = u.client.get(
                    stored_url(u, name) if stored else url, max_bytes=limit, headers=headers
                )
            except StatusError as exc:
                expired = exc.status == 403 or exc.status == 404 or exc.status == 410
                if not stored or not expired:
                    raise
                stored = False
                u.log("download: asset URL expired (HTTP %s), renewing" % (exc.status,))
                continue
            etag = resp.header("etag")
            h = hashlib.sha256()
            f = u.hal.fs.open_write(path)
            try:
                return pump(resp, u.io, -1, f, h), h.digest(), etag
            finally:
                f.close()
                resp.close()
        except (NetworkError, StalledError) as exc:
            failures += 1
            if failures > _RETRIES:
                raise
            u.log("download: retrying %s (%s)" % (url.split("?")[0][-60:], exc))


class PackStream:
    """Byte ranges of the pack asset, [start, end), over one kept-alive connection."""

    def __init__(self, client, url, size, max_resumes, log):
        self.client = client
        self.max_resumes = max_resumes
        self.url = url
        self.size = size
        self.log = log
        self.cdn = None
        self.resp = None
        self.pos = 0
        self.end = 0
        self.resumes = 0

    def open(self, start, end):
        self.close()
        self.pos = start
        self.end = end

    def close(self):
        if self.resp is not None:
            self.resp.close()
            self.resp = None

    def _request(self):
        client = self.client
        url = self.cdn or self.url
        n = self.end - self.pos
        resp = client.get(url, start=self.pos, end=self.end - 1, max_bytes=n, follow=False)
        if is_redirect(resp.status):
            resp.close()
            if resp.location is None:
                raise ProtocolError("pack redirect without Location")
            self.cdn = client.redirect_url(url, resp.location)
            resp = client.get(self.cdn, start=self.pos, end=self.end - 1, max_bytes=n)
            # Where the ranges come from now: a further redirect's Location replaced the
            # one above in the client's URL slot (a long URL lives there).
            self.cdn = resp.url
        if resp.range_total != self.size:
            resp.close()
            raise Refused(
                "pack is %s bytes on the server, the manifest says %s"
                % (resp.range_total, self.size)
            )
        self.resp = resp

    def readinto(self, mv):
        """Next bytes of the open range into `mv` (no longer than what is left of the range)."""
        failures = 0
        while True:
            try:
                if self.resp is None:
                    self._request()
                got = self.resp.readinto(mv)
                if not got:
                    raise NetworkError("pack range ended early at byte " + str(self.pos))
                self.pos += got
                return got
            except StatusError as exc:
                self.resp = None
                expired = exc.status == 403 or exc.status == 404 or exc.status == 410
                if not expired or self.cdn is None:
                    raise
                # The signed CDN URL expired: ask the download URL for a fresh one.
                self.cdn = None
                failures += 1
                if failures > _RETRIES:
                    raise
                self.log("download: asset URL expired (HTTP %s), renewing" % (exc.status,))
            except (NetworkError, StalledError) as exc:
                if self.resp is not None:
                    self.resp.close()
                self.resp = None
                failures += 1
                if failures > _RETRIES:
                    raise
                self.resumes += 1
                if self.resumes > self.max_resumes:
                    raise BudgetError(
                        "more than %s resumes (%s)" % (self.max_resumes, exc)
                    ) from None
                self.log("download: resuming pack at byte %s (%s)" % (self.pos, exc))
