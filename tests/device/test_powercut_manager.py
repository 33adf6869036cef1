"""Power cut at every flash mutation of a manager self-update (and its cert-sector swap).

The device runs manager v0.2.0 (installed from its repo) and app v1.0.0; the
update to manager v0.3.0 rotates the manager repo's release key and changes
two modules. For every k the k-th flash mutation of the update boot cuts the
power; right after the cut the slots that boot must be complete and verified
(manager old or new, the app untouched), and the next boot, which checks at
once, must finish the update and run the app.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from publisher.device.manager import manager_files
from tests.device.enginekit import (
    Repo,
    app_files,
    provision_with_manager,
    run,
    slot_is_complete,
    text,
)
from tests.device.test_engine_manager import tree_digest
from tests.hostserver import running_host
from tests.keyfactory import make_sector, new_signer

MANAGER_REPO = "acme/lcm"
# What a manager needs to boot and update on the unix port without Wi-Fi: the
# smaller the release, the fewer cut points to try (each costs a few boots).
NEEDED = (
    "lcm.py",
    "cert_sector/",
    "lcm_device/__init__",
    "lcm_device/app",
    "lcm_device/appboot",
    "lcm_device/appexit",
    "lcm_device/boot",
    "lcm_device/aftercheck",
    "lcm_device/checkboot",
    "lcm_device/compat",
    "lcm_device/config",
    "lcm_device/due",
    "lcm_device/fetch",
    "lcm_device/hal/__init__",
    "lcm_device/hal/board",
    "lcm_device/hal/fs",
    "lcm_device/http",
    "lcm_device/install",
    "lcm_device/log",
    "lcm_device/mainfile",
    "lcm_device/metadata",
    "lcm_device/resolve",
    "lcm_device/rollout",
    "lcm_device/slotfill",
    "lcm_device/slots",
    "lcm_device/startup",
    "lcm_device/trial",
    "lcm_device/trust",
    "lcm_device/update",
)


def small_manager(build: Path) -> dict[str, bytes]:
    return {p: d for p, d in manager_files(build).items() if p.startswith(NEEDED)}


def test_power_cut_at_every_flash_mutation_of_a_manager_update(
    tmp_path: Path, mpy: Any, heap_pass_sample: Any
) -> None:
    with running_host(tmp_path, repos=("acme/widget", MANAGER_REPO)) as host:
        app = Repo(host)
        app.publish("1.0.0", app_files("1.0.0", n=2))
        manager = Repo(host, name=MANAGER_REPO)
        v2 = small_manager(mpy.build)
        manager.publish("0.2.0", v2)
        golden = tmp_path / "golden"
        provision_with_manager(golden, mpy.build, app, manager, {"gestures": False})
        status = run(golden, mpy)
        assert status.state.get("mgr_tag") == "v0.2.0", text(status)
        assert status.state.get("app_tag") == "v1.0.0", text(status)
        # Once more, so that the slot the cut update overwrites holds a small manager
        # (not the factory one with every module): fewer mutations, same code paths.
        v2["lcm.py"] += b"# v0.2.1\n"
        manager.publish("0.2.1", v2)
        assert run(golden, mpy).state.get("mgr_tag") == "v0.2.1"
        app_digest = tree_digest(golden / "lcm/app0")
        first_sector = manager.sector
        new_key = new_signer()
        manager.sector = make_sector(MANAGER_REPO, [manager.root], [new_key], seq=2)
        manager.release_key = new_key
        v3 = dict(v2)
        v3["lib/extra.py"] = b"# shipped with the manager, imported by nobody\n" * 40
        v3["lcm.py"] = v2["lcm.py"] + b"# v0.3.0\n"
        manager.publish("0.3.0", v3)

        tried = 0

        def after_cut(code: int, status: Any) -> None:
            # Right after the cut, before any check: what boots is complete and verified.
            if code != 76:
                return
            st = status.state
            assert st["mgr_tag"] in ("v0.2.1", "v0.3.0") and slot_is_complete(state, st["mgr"])
            assert st["app_tag"] == "v1.0.0" and slot_is_complete(state, "app0")
            sector = (state / "lcm/state/certs/mgr.sector").read_bytes()
            assert sector in (first_sector, manager.sector)

        cuts = heap_pass_sample.cuts(golden)  # every k (sampled in the small-heap pass)
        for k in cuts:
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            # The boot after the cut checks at once: it must finish the update.
            status = run(state, mpy, fault_at=k, check_after_cut=True, on_exit=after_cut)
            out = text(status)
            assert status.state["mgr_tag"] == "v0.3.0", out
            st = status.state
            assert st["mgr_trial"] is None and slot_is_complete(state, st["mgr"]), out
            assert "APP v1.0.0 running" in out.rsplit("--- boot", 1)[1], out
            assert tree_digest(state / "lcm/app0") == app_digest
            shutil.rmtree(state)
            if 76 not in status.exits:
                break  # the update completed without reaching the k-th mutation
            tried += 1
        print(
            f"manager power cut points tried: {tried}, recovered: {tried} (100 %), {cuts.summary()}"
        )
        assert cuts.points > 20
