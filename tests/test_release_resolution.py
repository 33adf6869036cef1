"""Browser-URL release resolution, shared by devices and `lcm release verify`."""

from __future__ import annotations

import pytest

from cert_sector import release
from cert_sector.errors import FormatError


@pytest.mark.parametrize(
    "location, tag",
    [
        ("https://github.com/acme/widget/releases/tag/v1.2.0", "v1.2.0"),
        ("/acme/widget/releases/tag/v1.2.0-beta.1", "v1.2.0-beta.1"),
        # GitHub redirects to the canonical spelling of the repo; the tag keeps its case.
        ("https://github.com/ACME/Widget/releases/tag/V1.0.0", "V1.0.0"),
        ("https://github.com/acme/widget/releases/tag/v2.0.0?x=1", "v2.0.0"),
    ],
)
def test_tag_from_location(location: str, tag: str) -> None:
    assert release.tag_from_location(location, "acme/widget") == tag


def test_no_full_release_redirects_to_the_list() -> None:
    assert (
        release.tag_from_location("https://github.com/Acme/widget/releases", "acme/widget") is None
    )


@pytest.mark.parametrize(
    "location",
    [
        None,
        "https://github.com/other/repo/releases/tag/v1.0.0",
        "https://github.com/acme/widget/releases/tag/",
        "https://github.com/acme/widget/releases/tag/v1<script>",
        "https://github.com/acme/widget/releases/tag/" + "v" * 65,
        "https://github.com/login",
    ],
)
def test_unexpected_redirects_refused(location: str | None) -> None:
    with pytest.raises(FormatError):
        release.tag_from_location(location, "acme/widget")


def test_beta_pointer() -> None:
    assert release.tag_from_pointer(b"v1.3.0-rc.1\n") == "v1.3.0-rc.1"
    with pytest.raises(FormatError):
        release.tag_from_pointer(b"\xff\xfe")
    with pytest.raises(FormatError):
        release.tag_from_pointer(b"../../etc")


def test_urls() -> None:
    assert (
        release.latest_url("https://github.com/", "a/b") == "https://github.com/a/b/releases/latest"
    )
    assert (
        release.download_url("http://h:1", "a/b", "v1.0.0", "pack.lcm")
        == "http://h:1/a/b/releases/download/v1.0.0/pack.lcm"
    )
