"""What GitHub accepts as owner/repo, tag and asset names, and how it rewrites asset names."""

from __future__ import annotations

import re

from publisher.host.errors import validation_failed

MAX_ASSET_NAME = 255
MAX_TAG_NAME = 255
MAX_LABEL = 255

_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# Characters GitHub keeps in an asset name; any other one becomes "." (spaces,
# "~", ":", parentheses, non-ASCII ...), runs of dots collapse, and leading or
# trailing dots go: "my file (1).zip" is stored as "my.file.1.zip".
_ASSET_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]")
_DOTS = re.compile(r"\.{2,}")
# A tag as `git check-ref-format` allows it, restricted to characters that
# need no escaping in a browser URL path.
_TAG = re.compile(r"^[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*$")


def is_repo_name(full_name: str) -> bool:
    owner, sep, name = full_name.partition("/")
    return (
        bool(sep)
        and bool(_OWNER.match(owner))
        and bool(_REPO.match(name))
        and name
        not in (
            ".",
            "..",
        )
    )


def rewrite_asset_name(name: str) -> str:
    """The name GitHub stores for an uploaded asset; refuses names that rewrite to nothing."""
    rewritten = _DOTS.sub(".", _ASSET_UNSAFE.sub(".", name)).strip(".")
    if not rewritten or len(rewritten) > MAX_ASSET_NAME:
        raise validation_failed("ReleaseAsset", "invalid", "name", "invalid asset name")
    return rewritten


def check_tag_name(tag: object) -> str:
    if not isinstance(tag, str) or not tag:
        raise validation_failed("Release", "missing_field", "tag_name")
    bad = (
        len(tag) > MAX_TAG_NAME
        or not _TAG.match(tag)
        or ".." in tag
        or tag.startswith("-")
        # git check-ref-format: no component starts with "." or ends with ".lock"
        or any(part.startswith(".") or part.endswith(".lock") for part in tag.split("/"))
        or tag.endswith(".")
        or tag.startswith("untagged-")
    )
    if bad:
        raise validation_failed("Release", "invalid", "tag_name", "tag_name is not a valid tag")
    return tag
