"""Where a new release's assets are served from, asked in a row before any is fetched.

github.com answers each asset's download URL with a redirect to its CDN (a
signed URL of about 1.3 KB on another host). The client keeps one connection,
so fetching the assets in turn (sector, roll-out document, manifest, pack)
would switch hosts at every asset: six TLS handshakes for an install. Asked
here one after the other on the connection the tag's request left open, and
the signed URLs kept on flash (the client's URL slot holds one; the files go
when the install ends: lcm_device.install), the assets are then fetched in a
row from the CDN: two
handshakes (lcm_device.fetch.download and the pack's stream use what this
leaves).

Nothing here is trusted: a URL only says where to fetch bytes that are
verified as before, and one the CDN no longer serves (signed URLs expire)
is asked of the download URL again. A host that does not redirect (a
static export: its first answer is the byte asked for) ends the asking at
once, and so does any answer the asking cannot use; a network failure fails
the check, as the tag's request would. Imported for the asking and released
after it (lcm_device.metadata): its code is not in the heap through the
checks.
"""

from cert_sector.assets import MANIFEST_ASSET, PACK_ASSET, ROLLOUT_ASSET, SECTOR_ASSET
from lcm_device.compat import const
from lcm_device.fetch import URL_FILE
from lcm_device.hal.fs import remove_if_exists
from lcm_device.http import (
    BudgetError,
    HTTPError,
    NetworkError,
    StalledError,
    StatusError,
    is_redirect,
)

_MAX_ANSWER = const(1024)


def resolve(u, tag):
    """Ask where each asset of release `tag` that `u`'s install fetches is served, in the
    order it fetches them; set `u.resolved` to what was learnt: ` NAME` for an asset whose
    signed URL is on flash, ` -NAME` for one the host does not have (404)."""
    hal = u.hal
    client = u.client
    found = ""
    # A list made here: a tuple constant would be an object in RAM on a board.
    names = [SECTOR_ASSET, ROLLOUT_ASSET, MANIFEST_ASSET, PACK_ASSET]
    if u.kind != "app":
        names.remove(ROLLOUT_ASSET)  # staged roll-outs are the app's
    for name in names:
        # One an earlier check left (its fetch did not come): never used (u.resolved says
        # what this check found), removed.
        remove_if_exists(hal.fs, URL_FILE % (hal.root, u.kind, name))
    for name in names:
        url = u.url(tag, name)
        try:
            # One byte asked for: a host that serves the asset itself answers with it. The
            # cap lets a 404's or a redirect's short body be read past (connection kept).
            resp = client.get(url, start=0, end=0, max_bytes=_MAX_ANSWER, follow=False)
        except StatusError as exc:
            if exc.status != 404:
                break
            found += " -" + name
            continue
        except (NetworkError, StalledError, BudgetError):
            raise  # the network failed the check, as the tag's request would have
        except HTTPError:
            break  # an answer the asking cannot use (200 to a range, ...): fetch as before
        location = resp.location if is_redirect(resp.status) else None
        resp.close()
        if location is None:
            break
        try:
            location = client.redirect_url(url, location)  # https -> http refused
            out = hal.fs.open_write(URL_FILE % (hal.root, u.kind, name))
            try:
                out.write(location.encode() if isinstance(location, str) else location)
            finally:
                out.close()
        except (HTTPError, OSError):
            break
        found += " " + name
    u.resolved = found
