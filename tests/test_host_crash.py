"""`lcm host` killed in the middle of a change: its data folder stays consistent.

A host process is SIGKILLed a few milliseconds into deleting a release of 20
assets, 20 times at spread-out moments (as a power cut or the OOM killer would),
and started again on the same folder. A release must then be there whole (every
uploaded asset with its bytes) or gone: the deletion used to remove the files
before saving the records, so a kill left a published latest release whose
downloads answered 200 and sent nothing. A file no record names is removed at
start-up, and an asset whose file is gone all the same answers 404.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from publisher.host.store import Store
from tests.hostserver import TEST_REPO, TEST_TOKEN, github_client, running_host

ASSETS = 20
TRIALS = 20


def lcm_host(data: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from publisher.cli import main; main()", "host",
         "--port", "0", "--data", str(data), "--token-env", "T"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "T": TEST_TOKEN},
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "lcm host serving" in first, first + proc.stderr.read()
    return proc, int(first.rsplit(":", 1)[1])


def consistent(data: Path) -> tuple[int, int]:
    """The store as a host starting on `data` sees it: (releases, uploaded assets), each
    uploaded asset's file holding the bytes its record describes."""
    store = Store(data)
    store.close()  # read only: the folder stays free for a host
    uploaded = [a for a in store.assets.values() if a.state == "uploaded"]
    for asset in uploaded:
        body = store.asset_path(asset).read_bytes()
        assert len(body) == asset.size and hashlib.sha256(body).hexdigest() == asset.sha256
    assert {p.name for p in store.assets_dir.iterdir()} == {
        store.asset_path(a).name for a in uploaded
    }
    return len(store.releases), len(uploaded)


def test_a_host_killed_while_deleting_a_release_keeps_it_whole_or_gone(tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    with running_host(tmp_path, data_dir=golden) as host:
        rel = github_client(host).get_repo(TEST_REPO).create_git_release("v1.0.0", "v1", "")
        for i in range(ASSETS):
            data = os.urandom(2000 + i)
            rel.upload_asset_from_memory(io.BytesIO(data), len(data), f"file{i}.bin")
        release_id = rel.id
    assert consistent(golden) == (1, ASSETS)
    rng = random.Random(7)
    for trial in range(TRIALS):
        data = tmp_path / f"trial{trial}"
        shutil.copytree(golden, data)
        proc, port = lcm_host(data)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(
                "DELETE",
                f"/api/v3/repos/{TEST_REPO}/releases/{release_id}",
                headers={"Authorization": "token " + TEST_TOKEN},
            )
            time.sleep(rng.uniform(0, 0.004))  # inside the deletion, more or less
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        outcome = consistent(data)
        assert outcome in ((1, ASSETS), (0, 0)), (trial, outcome)


def test_a_file_lost_from_outside_answers_404_and_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_host(tmp_path, data_dir=data) as host:
        rel = github_client(host).get_repo(TEST_REPO).create_git_release("v1.0.0", "v1", "")
        rel.upload_asset_from_memory(io.BytesIO(b"bytes"), 5, "pack.lcm")
    store = Store(data)
    store.close()
    (asset,) = store.assets.values()
    store.asset_path(asset).unlink()  # a damaged disk, a careless operator
    stray = store.assets_dir / "99999.bin"
    stray.write_bytes(b"left by a crash")
    (store.assets_dir / "someone's folder").mkdir()  # not ours: left alone
    meta = json.loads((data / "meta.json").read_text())
    assert "generation" not in meta["assets"][0]  # never replaced: what older hosts read
    proc, port = lcm_host(data)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/{TEST_REPO}/releases/download/v1.0.0/pack.lcm")
        response = conn.getresponse()
        response.read()
        signed = response.getheader("Location")
        assert response.status == 302 and signed
        conn.request("GET", signed[signed.index("/api/objects/") :])
        response = conn.getresponse()
        assert response.status == 404, response.status
        response.read()
    finally:
        proc.send_signal(signal.SIGINT)
        _out, errors = proc.communicate(timeout=30)
    assert not stray.exists()  # no record names it: removed at start-up
    assert (store.assets_dir / "someone's folder").is_dir()
    assert f"asset {asset.id} (pack.lcm of {TEST_REPO} v1.0.0) has no file" in errors
    assert "answered 404" in errors
