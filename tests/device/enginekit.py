"""Helpers for the update-engine tests: publish signed releases on `lcm host`, run a device.

Releases are uploaded through PyGithub exactly as a maintainer's tool would:
a draft, its assets, then published (so a device never sees half a release).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cert_sector.assets import BETA_POINTER_ASSET, MANIFEST_ASSET, PACK_ASSET, SECTOR_ASSET
from publisher.device.simulate import SimStatus, board_code, provision, simulate
from publisher.micropython import (
    ROM_MODEL_HEAP,
    heap_bytes,
    micropython_command,
    micropython_env,
)
from publisher.signing import Signer
from tests.hostserver import TEST_REPO, github_client
from tests.keyfactory import make_manifest, make_sector, new_signer

# The engine's modules load into the GC heap on the unix port (a board runs them
# from ROMFS or frozen): a whole process running a full update cycle needs about
# this heap (bench/bench_update.py reports the measured minimum).
ENGINE_HEAP_KB = 192
# The small-heap pass runs the engine with its code "in ROM" (the unix HAL's ROM
# model, lcm_sim/rommodel.py): the pass's heap (24 KB) is what is left for
# data, and the process gets room for all the manager's code besides.

APP_OK = "import lcm\nprint('APP', lcm.status()['app'], 'running')\n"


def app_files(version: str, n: int = 20, size: int = 300, broken: bool = False) -> dict[str, bytes]:
    """An app of `n` files: main.py prints its version; lib/mNN.py are `size`-byte modules."""
    files = {}
    for i in range(n - 1):
        body = f"# module {i}\nVALUE = {i}\n".encode()
        files[f"lib/m{i:02d}.py"] = body + b"#" * max(0, size - len(body) - 1) + b"\n"
    main = "raise RuntimeError('v%s is broken')\n" % version if broken else APP_OK
    files["main.py"] = f"# app {version}\n{main}".encode()
    return files


@dataclass
class Repo:
    """A repo on the host with its keys, the current sector and a release counter."""

    host: Any
    name: str = TEST_REPO
    root: Signer = field(default_factory=new_signer)
    release_key: Signer = field(default_factory=new_signer)
    sector: bytes = b""
    sector_seq: int = 1
    seq: int = 0
    verify: str | None = None  # CA bundle for PyGithub when the host speaks HTTPS
    cas: list[bytes] = field(default_factory=list)  # TLS anchors (DER) in the sector

    def __post_init__(self) -> None:
        self.sector = make_sector(self.name, [self.root], [self.release_key], cas=self.cas)
        kw = {} if self.verify is None else {"verify": self.verify}
        self.gh = github_client(self.host, **kw).get_repo(self.name)

    def publish(
        self,
        version: str,
        files: dict[str, bytes],
        *,
        seq: int | None = None,
        manifest: bytes | None = None,
        pack: bytes | None = None,
        sector: bytes | None = None,
        key: Signer | None = None,
        prerelease: bool = False,
        **kw: Any,
    ) -> tuple[bytes, bytes]:
        """Publish tag v`version`; returns (manifest, pack) as uploaded."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        m, p = make_manifest(
            self.name, key or self.release_key, files, seq=seq, version=version, **kw
        )
        m = m if manifest is None else manifest
        p = p if pack is None else pack
        rel = self.gh.create_git_release(
            f"v{version}", f"v{version}", "", draft=True, prerelease=prerelease
        )
        for name, data in (
            (SECTOR_ASSET, self.sector if sector is None else sector),
            (MANIFEST_ASSET, m),
            (PACK_ASSET, p),
        ):
            rel.upload_asset_from_memory(data, len(data), name)
        rel.update_release(f"v{version}", "", draft=False, prerelease=prerelease)
        return m, p

    def point_beta(self, stable_version: str, tag: str) -> None:
        """Upload the `beta.tag` pointer (naming `tag`) to the release v`stable_version`."""
        data = (tag + "\n").encode()
        self.gh.get_release(f"v{stable_version}").upload_asset_from_memory(
            data, len(data), BETA_POINTER_ASSET
        )


def new_device(tmp_path: Path, mpy: Any, host: Any, repo: Repo, **settings: Any) -> Path:
    state = tmp_path / "device"
    # No power-cycle gestures: the power-cut tests cycle power on purpose.
    cfg = {"http_timeout_ms": 2000, "gestures": False}
    cfg.update(settings)
    provision(
        state,
        web_url=host.url,
        repo=repo.name,
        roots=[repo.root.public_key],
        board="esp32",
        build=mpy.build,
        settings=cfg,
    )
    return state


def provision_with_manager(
    state: Path, build: Path, app: Repo, manager: Repo, settings: dict[str, Any]
) -> None:
    """Provision a device that follows `app` and the manager repo `manager` (both on the
    same host, their roots pinned), with the manager's `build` in its factory slot."""
    provision(
        state,
        web_url=app.host.url,
        repo=app.name,
        roots=[app.root.public_key],
        manager_repo=manager.name,
        manager_roots=[manager.root.public_key],
        build=build,
        settings=settings,
    )


def engine_heap(mpy: Any) -> str | None:
    """The process heap for an engine run: the port's default, or room for code in the
    small-heap pass (where `engine_env` limits the data heap)."""
    return None if mpy.heap is None else ROM_MODEL_HEAP


def data_heap_bytes(mpy: Any, at_least_kb: int = 0) -> int | None:
    """The small-heap pass's heap in bytes, raised to `at_least_kb` (None in the default
    pass). A caller that raises it names its floor and why."""
    if mpy.heap is None:
        return None
    return max(heap_bytes(mpy.heap), at_least_kb * 1024)


def engine_env(mpy: Any, at_least_kb: int = 0) -> dict[str, str]:
    """Environment for an engine run: in the small-heap pass, the unix HAL's ROM model
    leaves the pass's heap for data once the code is loaded."""
    n = data_heap_bytes(mpy, at_least_kb)
    return {} if n is None else {"LCM_DATA_HEAP": str(n)}


def start_device(
    state: Path,
    mpy: Any,
    script: str,
    path: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """Power the device on as a process whose output streams (stdout and stderr as one),
    for tests that act while it runs; the fixture's heap as in `run`."""
    cmd = micropython_command()
    heap = engine_heap(mpy)
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    full_env = micropython_env([*path, board_code()])  # board_code: the simulated board
    full_env.update({"LCM_ROOT": str(state), "LCM_BOOT_CAUSE": "power", **engine_env(mpy)})
    full_env.update(env or {})
    return subprocess.Popen(
        [*cmd, script],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(
    state: Path,
    mpy: Any,
    env: dict[str, str] | None = None,
    data_at_least_kb: int = 0,
    **kw: Any,
) -> SimStatus:
    """Boot the device with `simulate` in the fixture's heap (see `engine_env`)."""
    memory = engine_env(mpy, data_at_least_kb)
    return simulate(state, heap=engine_heap(mpy), env={**memory, **(env or {})}, **kw)


def slot_is_complete(state: Path, slot: str) -> bool:
    """Every file of the slot matches the slot's signed manifest (checked on CPython)."""
    import hashlib

    from publisher.manifest_format import parse_manifest

    m = parse_manifest((state / "lcm" / f"{slot}.lcm").read_bytes())
    for e in m.files:
        path = state / "lcm" / slot / e.path
        if not path.is_file() or hashlib.sha256(path.read_bytes()).digest() != e.sha256:
            return False
    return True


def text(status: SimStatus) -> str:
    return "\n".join(status.lines)


def install_first_release(tmp: Path, mpy_build: Path) -> tuple[Repo, Path]:
    """A device with v1.0.0 (3 files) installed from a fresh host, at the port's default heap.

    For module-scoped fixtures of tests that then attack that device: the host is gone
    when this returns; each test serves the repo again (honestly or not).
    """
    from tests.device.conftest import MicroPython
    from tests.hostserver import running_host

    device = MicroPython(mpy_build, None, tmp)
    with running_host(tmp) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        state = new_device(tmp, device, host, repo, http_timeout_ms=1000)
        assert run(state, device).state["app_tag"] == "v1.0.0"
    return repo, state


def installed_v1(tmp_path: Path, mpy: Any, host: Any) -> tuple[Repo, dict[str, bytes], Path]:
    """(repo, files, device): a device at v1.0.0 of four 1500-byte files from `host`, the
    release the power-cut tests update from."""
    repo = Repo(host)
    files = app_files("1.0.0", n=4, size=1500)
    repo.publish("1.0.0", files)
    device = new_device(tmp_path, mpy, host, repo)
    assert run(device, mpy).state["app_tag"] == "v1.0.0"
    return repo, files, device


def updated_manager(tmp_path: Path, mpy: Any, host: Any, n: int = 2) -> tuple[Repo, Repo, Path]:
    """(app repo, manager repo, device): a device that installed app v1.0.0 (`n` files)
    and the manager release v0.2.0 (this build) over the air from `host`, which serves
    acme/widget and acme/lcm; its manager runs from /lcm/m1."""
    from publisher.device.manager import manager_files

    app = Repo(host)
    app.publish("1.0.0", app_files("1.0.0", n=n))
    manager = Repo(host, name="acme/lcm")
    manager.publish("0.2.0", manager_files(mpy.build))
    state = tmp_path / "device"
    provision_with_manager(state, mpy.build, app, manager, {"gestures": False})
    st = run(state, mpy).state
    assert (st["mgr"], st["mgr_tag"], st["app_tag"]) == ("m1", "v0.2.0", "v1.0.0")
    return app, manager, state
