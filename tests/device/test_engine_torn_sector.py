"""A damaged installed cert sector (torn, truncated, flipped bytes, garbage, gone) does not
stop updates: the device loads the sector's second copy (lcm_device/trust.py, rules L1-L3),
restores the damaged one, and the next genuine release installs, its sector verified
against the restored one. With both copies damaged, the pinned roots decide, as on a
first install: after a root rotation, through the release's certs.chain."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from publisher import sector_format as sf
from publisher.release.chain import build_chain
from tests.device.attackserver import download, point, release_routes
from tests.device.conftest import MicroPython
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host
from tests.keyfactory import make_sector, new_signer
from tests.test_http_servers import RawServer, response

CERTS = "lcm/state/certs/"
ROOT1, ROOT2 = new_signer(), new_signer()


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory, mpy_build: Path) -> tuple[Repo, Path]:
    """A device on v1.1.0 whose installed sector 2 came with a root rotation: the roots it
    pinned at provisioning no longer verify what the repo publishes."""
    tmp = tmp_path_factory.mktemp("torn")
    device = MicroPython(mpy_build, None, tmp)
    with running_host(tmp) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp, device, host, repo, http_timeout_ms=1000)
        assert run(state, device).state["app_tag"] == "v1.0.0"
        repo.sector = make_sector(
            repo.name, [ROOT1], [repo.release_key], seq=2, signers=[repo.root, ROOT1]
        )
        repo.publish("1.1.0", app_files("1.1.0", n=3))
        assert run(state, device).state["app_tag"] == "v1.1.0"
    certs = state / CERTS
    assert (certs / "app.sector.copy").read_bytes() == (certs / "app.sector").read_bytes()
    return repo, state


def damages(sector: bytes, rng: random.Random) -> dict[str, bytes | None]:
    """Ways flash can hold a sector file that is not the one installed (None: gone)."""
    out: dict[str, bytes | None] = {"gone": None, "empty": b""}
    for cut in sorted(rng.sample(range(1, len(sector)), 12)):
        out[f"torn at {cut}"] = sector[:cut]
    for _ in range(12):
        flipped = bytearray(sector)
        at = rng.randrange(len(sector))
        flipped[at] ^= 1 << rng.randrange(8)
        out[f"bit flipped at {at}"] = bytes(flipped)
    for size in (64, 4096, 5000):
        out[f"{size} bytes of garbage"] = rng.randbytes(size)
    out["4096 bytes of 0xff (erased flash)"] = b"\xff" * 4096
    return out


LOADER = """
import hashlib
import os
from lcm_device import trust
from lcm_device.hal.fs import Fs

class Hal:
    root = "."
    fs = Fs()

certs = "lcm/state/certs/"
buf = bytearray(256)  # the files go through it: the 24 KB pass's heap is for the loader

def copy(src, dst):
    with open(src, "rb") as f, open(dst, "wb") as out:
        while n := f.readinto(buf):
            out.write(buf[:n])

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(buf[:n])
    return h.digest()

for name in sorted(os.listdir("cases")):
    for f in ("app.sector", "app.sector.copy"):
        try:
            os.remove(certs + f)
        except OSError:
            pass
    for f in os.listdir("cases/" + name):
        copy("cases/" + name + "/" + f, certs + f)
    lines = []
    s = trust.installed(Hal(), "app", "{repo}", bytearray(256), lines.append)
    a, b = sha(certs + "app.sector"), sha(certs + "app.sector.copy")
    print(name, None if s is None else s.seq, a == b, a == sha("good"), "|".join(lines))
"""


def test_the_loader_uses_the_sound_copy_whatever_the_damage(
    rotated: tuple[Repo, Path], mpy: Any
) -> None:
    """Every damage, to either copy, in the real interpreter (in the 24 KB pass with the
    manager's code "in ROM"): the sound copy is used and restored, never an exception."""
    repo, golden = rotated
    good = (golden / CERTS / "app.sector").read_bytes()
    rng = random.Random(20261204)
    cases = mpy.workdir / "cases"
    expected = {}
    for n, (what, data) in enumerate(damages(good, rng).items()):
        for damaged in ("app.sector", "app.sector.copy"):
            folder = cases / f"{n:02d}-{damaged}"
            folder.mkdir(parents=True)
            sound = "app.sector.copy" if damaged == "app.sector" else "app.sector"
            (folder / sound).write_bytes(good)
            if data is not None:
                (folder / damaged).write_bytes(data)
            expected[folder.name] = what
    (mpy.workdir / "good").write_bytes(good)
    (mpy.workdir / CERTS).mkdir(parents=True)
    out = mpy.run(LOADER.replace("{repo}", repo.name), rom=True).stdout.splitlines()
    assert len(out) == len(expected), out
    body = len(sf.parse_sector(good).body)
    for line in out:
        name, seq, same, good_again, log = line.split(" ", 4)
        what, damaged = expected[name], name.split("-", 1)[1]
        assert (seq, same) == ("2", "True"), f"{what} in {name}: {line}"
        if good_again == "True":
            sound = "app.sector.copy" if damaged == "app.sector" else "app.sector"
            assert f"/{CERTS}{damaged} restored from {sound}" in log, line
            if damaged == "app.sector" and what != "gone":  # the copy is read if needed
                assert f"/{CERTS}app.sector damaged: " in log, line
        else:
            # Sound though not the same bytes: a flip in the old root's signature, which
            # S4 needed once, at install; its body and its own roots' signature are intact.
            assert damaged == "app.sector" and what.startswith("bit flipped"), line
            assert int(what.rsplit(" ", 1)[1]) >= body, line


def test_a_torn_sector_then_the_next_genuine_release_installs(
    rotated: tuple[Repo, Path], mpy: Any, tmp_path: Path
) -> None:
    repo, golden = rotated
    state = tmp_path / "device"
    shutil.copytree(golden, state)
    installed, copy = state / CERTS / "app.sector", state / CERTS / "app.sector.copy"
    good = sector2 = installed.read_bytes()
    installed.write_bytes(good[: len(good) // 3])  # torn

    # The next release rotates the root again: only the restored sector 2 verifies it.
    sector3 = make_sector(repo.name, [ROOT2], [repo.release_key], seq=3, signers=[ROOT1, ROOT2])
    with RawServer(release_routes(repo, "2.0.0", 0xF0000000, sector=sector3)) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: /lcm/state/certs/app.sector damaged: FormatError" in out, out
    assert "cert sector: /lcm/state/certs/app.sector restored from app.sector.copy" in out
    assert "cert sector: installed sequence 3" in out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert installed.read_bytes() == sector3 == copy.read_bytes()

    # Both copies damaged: as on a first install, the pinned roots decide, and they do
    # not sign sector 3 (the root rotated twice since): without a chain, refused, the
    # app runs on; with the chain, walked from the pinned roots.
    installed.write_bytes(b"\xff" * 4096)
    copy.write_bytes(sector3[:100])
    routes = release_routes(repo, "3.0.0", 0xF0000001, sector=sector3)
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "no sound copy installed; the pinned roots decide, as on a first install" in out, out
    assert "app: refused v3.0.0: Refused: cert sector: SignatureError: sector signed by 0" in out
    assert status.state["app_tag"] == "v2.0.0" and "APP v2.0.0 running" in out
    assert slot_is_complete(state, status.state["app"])
    routes[download("v3.0.0", "certs.chain")] = [response(200, build_chain([sector2], sector3))]
    with RawServer(routes) as server:
        point(state, server.url())
        status = run(state, mpy)
    out = text(status)
    assert "cert sector: chain link sequence 2 verified" in out, out
    assert status.state["app_tag"] == "v3.0.0" and "APP v3.0.0 running" in out
