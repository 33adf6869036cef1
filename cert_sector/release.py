"""Finding releases through GitHub's browser URLs only (never the REST API).

An idle check is one request: `/OWNER/REPO/releases/latest` answers 302 with
`Location: .../releases/tag/TAG`; the tag alone tells whether anything is new.
With no full release, GitHub redirects to `/OWNER/REPO/releases` instead.
On a static host (`lcm release export`) the same URL is a small file holding
the tag (`tag_from_pointer`), answered 200. Beta devices then read the
`beta.tag` pointer asset of that latest full release.
"""

from cert_sector.assets import MAX_TAG
from cert_sector.encoding import const
from cert_sector.errors import FormatError

_TAG_MARK = const("/releases/tag/")
_TAG_CHARS = const("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+")


def latest_url(web_url, repo):
    return "%s/%s/releases/latest" % (web_url.rstrip("/"), repo)


def download_url(web_url, repo, tag, name):
    return "%s/%s/releases/download/%s/%s" % (web_url.rstrip("/"), repo, tag, name)


def check_tag(tag):
    """A tag as lcm publishes them; anything else from the network is refused. A tag is
    a URL path segment and a folder name (`lcm release export`): "." and ".." are not
    (git refuses a leading "." too)."""
    if not 1 <= len(tag) <= MAX_TAG or tag[0] == "." or not all(c in _TAG_CHARS for c in tag):
        raise FormatError("invalid release tag " + repr(tag[:MAX_TAG]))
    return tag


def tag_from_location(location, repo):
    """The tag a `/releases/latest` redirect points at, or None when there is no release."""
    if location is None:
        raise FormatError("no Location in the latest-release redirect")
    if not isinstance(location, str):  # a long one, kept in the client's URL slot
        raise FormatError("latest-release redirect to a URL too long for a tag page")
    path = location.split("?", 1)[0]
    # GitHub redirects to the repo's canonical spelling: owner and name match
    # case-insensitively, the tag keeps its case.
    lowered = path.lower()
    marker = ("/" + repo + _TAG_MARK).lower()
    i = lowered.find(marker)
    if i < 0:
        if lowered.rstrip("/").endswith(("/%s/releases" % (repo,)).lower()):
            return None
        raise FormatError("unexpected latest-release redirect to " + repr(location[:100]))
    return check_tag(path[i + len(marker) :])


def tag_from_pointer(body):
    """The tag in a `beta.tag` asset or a static host's `/releases/latest` (one line)."""
    try:
        text = bytes(body).decode().strip()
    except UnicodeError:
        raise FormatError("beta pointer is not text") from None
    return check_tag(text)
