"""Recovery from fast-forward: a stolen release key signs a release with sequence
4294967295; the device installs it (the signature is valid). The maintainer answers
with a root-signed sector that drops the key and starts a new epoch (rule S9: releases
are ordered by epoch, then sequence, from the epoch's first sequence). The next genuine
release installs; the fast-forwarded manifest and replays of older genuine ones are
refused, and a sector that lowers the epoch is refused too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.device.attackserver import point, release_routes
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.keyfactory import make_manifest, make_sector, new_signer
from tests.test_http_servers import RawServer

TOP = 0xFFFFFFFF


def test_new_epoch_undoes_a_fast_forward(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo = Repo(host)
        genuine = new_signer()  # a second release key, never stolen
        repo.sector = make_sector(repo.name, [repo.root], [repo.release_key, genuine])
        repo.publish("1.0.0", app_files("1.0.0", n=3), key=genuine)
        state = new_device(tmp_path, mpy, host, repo, http_timeout_ms=1000)
        assert run(state, mpy).state["app_tag"] == "v1.0.0"
    stolen = repo.release_key
    old_v1, _ = make_manifest(repo.name, genuine, app_files("1.0.1", n=3), seq=2, version="1.0.1")

    # The thief signs the highest sequence there is; the device takes it.
    ff = release_routes(repo, "9.9.9", TOP)
    with RawServer(ff) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v9.9.9" and status.state["app_seq"] == TOP, text(status)

    # Before the fix: a genuine release is a roll-back for ever.
    repo.release_key = genuine
    with RawServer(release_routes(repo, "2.0.0", 3)) as server:
        point(state, server.url())
        out = text(run(state, mpy))
    assert "is not above the installed 4294967295" in out, out

    # The maintainer: a new sector without the stolen key, epoch 1 from sequence 3.
    repo.sector = make_sector(repo.name, [repo.root], [genuine], seq=2, epoch=1, first_seq=3)
    with RawServer(release_routes(repo, "2.0.0", 3)) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: installed sequence 2" in out, out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert status.state["app_seq"] == (1 << 32) + 3

    # The fast-forwarded manifest again: its key is gone.
    ff_manifest = ff["/acme/widget/releases/download/v9.9.9/manifest.lcm"][0].split(b"\r\n\r\n", 1)[
        1
    ]
    routes = release_routes(repo, "9.9.9", TOP, manifest=ff_manifest)
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert "manifest signed by an unknown key" in text(status), text(status)
    assert status.state["app_tag"] == "v2.0.0"

    # A genuine manifest of the old epoch (sequence 2 < 3), replayed under its tag.
    routes = release_routes(repo, "1.0.1", 2, manifest=old_v1)
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "manifest: sequence 2 is below 3, the first of epoch 1" in out, out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert slot_is_complete(state, status.state["app"])

    # A sector that would go back to epoch 0 (root-signed, higher sequence) is refused.
    repo.sector = make_sector(repo.name, [repo.root], [genuine, stolen], seq=3)
    with RawServer(release_routes(repo, "2.1.0", 4)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert "RollbackError: sector epoch 0 is below the trusted 1" in text(status), text(status)

    # And the next genuine release of epoch 1 installs.
    repo.sector = make_sector(repo.name, [repo.root], [genuine], seq=3, epoch=1, first_seq=3)
    with RawServer(release_routes(repo, "2.1.0", 4)) as server:
        point(state, server.url())
        status = run(state, mpy)
    assert status.state["app_tag"] == "v2.1.0" and "APP v2.1.0 running" in text(status)
