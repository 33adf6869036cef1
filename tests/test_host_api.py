"""`lcm host` through PyGithub, unchanged: releases, assets, drafts, latest, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from github import GithubException

from tests.hostserver import TEST_REPO, github_client, running_host


@pytest.fixture
def host(tmp_path: Path):
    with running_host(tmp_path) as running:
        yield running


@pytest.fixture
def repo(host):
    return github_client(host).get_repo(TEST_REPO)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_draft_upload_publish_and_download(tmp_path, host, repo):
    rel = repo.create_git_release("v1.0.0", "one", "notes", draft=True)
    assert rel.draft and rel.upload_url.endswith("/assets{?name,label}")
    assert rel.upload_url.startswith(host.url + "/api/uploads/")
    data = b"pack bytes " * 1000
    asset = rel.upload_asset(write(tmp_path, "pack.lcm", data))
    assert (asset.name, asset.size, asset.state) == ("pack.lcm", len(data), "uploaded")
    assert asset.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    published = rel.update_release(name="one", message="notes", draft=False)
    assert not published.draft
    assert repo.get_latest_release().tag_name == "v1.0.0"
    _status, _headers, chunks = asset.download_asset()
    assert b"".join(chunks) == data
