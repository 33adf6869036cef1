"""The device always comes back: damaged boot state, torn config, full or read-only flash.

Each test damages a simulated device from outside (files torn or removed, the
unix HAL's flash turned full or read-only) and checks that the next boot runs a
complete release verified against its signed manifest, without a download, and
that a later release still installs. The sweeps over flash mutations are sampled
in the default run; `LCM_POWERCUT_SWEEP=1` tries every point.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from cert_sector.bootstate import PATH
from publisher.device.simulate import read_state
from tests.device.bootkit import boot, boot_until_app, running_app, sample, sweep
from tests.device.enginekit import Repo, app_files, new_device, run, slot_is_complete, text
from tests.hostserver import running_host

GENERATIONS = [Path((PATH % n).lstrip("/")) for n in (0, 1)]


def two_releases(tmp_path: Path, mpy: Any, host: Any) -> tuple[Repo, Path]:
    """A device that installed v1.0.0 then v1.1.0 (confirmed): both app slots complete."""
    repo = Repo(host)
    repo.publish("1.0.0", app_files("1.0.0", n=3))
    state = new_device(tmp_path, mpy, host, repo)
    assert run(state, mpy).state["app_tag"] == "v1.0.0"
    repo.publish("1.1.0", app_files("1.1.0", n=3))
    st = run(state, mpy).state
    assert st["app_tag"] == "v1.1.0" and st["app_trial"] is None
    return repo, state


def newest_generation(state: Path) -> Path:
    gens = {}
    for rel in GENERATIONS:
        data = (state / rel).read_bytes()
        gens[json.loads(data.split(b"\n")[0])["gen"]] = state / rel
    return gens[max(gens)]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def ff_tail(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-20] + b"\xff" * 20)


DAMAGE = {
    "newest generation truncated": lambda s: truncate(newest_generation(s)),
    "newest generation with a 0xFF tail": lambda s: ff_tail(newest_generation(s)),
    "both generations removed": lambda s: [(s / g).unlink() for g in GENERATIONS],
    "both generations with a 0xFF tail": lambda s: [ff_tail(s / g) for g in GENERATIONS],
}


def test_damaged_boot_state_boots_the_newest_verified_slot_without_a_download(
    tmp_path: Path, mpy: Any
) -> None:
    with running_host(tmp_path) as host:
        repo, golden = two_releases(tmp_path, mpy, host)
        for i, (name, damage) in enumerate(DAMAGE.items()):
            state = tmp_path / f"damaged{i}"
            shutil.copytree(golden, state)
            damage(state)
            code, out = boot(state, mpy)
            assert code == 0, f"{name}\n{out}"
            assert "check: not due" in out and "manifest:" not in out, f"{name}\n{out}"
            if "both" in name:
                # Removed by software (a cut tears one generation only), and the
                # software running was the newer release: the older one runs, the
                # newer one is not installed again.
                assert "none valid; rebuilt from the slots: app app0 v1.0.0" in out, out
                assert running_app(state, out) == "v1.0.0", f"{name}\n{out}"
                again = text(run(state, mpy))
                assert "v1.1.0 failed its trial before; waiting for a newer one" in again
                assert read_state(state)["app_bad_why"].startswith("the boot state was lost")
            else:
                assert running_app(state, out) == "v1.1.0", f"{name}\n{out}"
        repo.publish("1.2.0", app_files("1.2.0", n=3))
        later = run(state, mpy)
        assert later.state["app_tag"] == "v1.2.0", text(later)
        assert slot_is_complete(state, later.state["app"])


def test_torn_config_keeps_the_last_good_one(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo, golden = two_releases(tmp_path, mpy, host)
        repo.publish("1.2.0", app_files("1.2.0", n=3))
        for i, damage in enumerate((truncate, ff_tail)):
            state = tmp_path / f"torn{i}"
            shutil.copytree(golden, state)
            damage(state / "lcm/state/config.json")
            status = run(state, mpy)
            out = text(status)
            # The repo, its keys and the web URL came from the last good copy.
            assert "config.json damaged; using /lcm/state/config.good.json" in out, out
            assert status.state["app_tag"] == "v1.2.0", out


def test_a_missing_config_is_named_only_where_there_was_one(tmp_path: Path, mpy: Any) -> None:
    with running_host(tmp_path) as host:
        repo, golden = two_releases(tmp_path, mpy, host)
        repo.publish("1.2.0", app_files("1.2.0", n=3))
        state = tmp_path / "removed"
        shutil.copytree(golden, state)
        (state / "lcm/state/config.json").unlink()
        status = run(state, mpy)
        # The repo, its keys and the web URL came from the last good copy.
        assert "config.json missing; using /lcm/state/config.good.json" in text(status)
        assert status.state["app_tag"] == "v1.2.0", text(status)
        # Never set up (no copy either): the defaults, said as what they mean, not as damage.
        (state / "lcm/state/config.json").unlink(missing_ok=True)  # not written back
        (state / "lcm/state/config.good.json").unlink()
        out = text(run(state, mpy))
        assert "config:" not in out, out
        assert "app: no repo set yet, nothing to check" in out, out


@pytest.mark.parametrize("mode", ["full", "ro"])
def test_full_or_read_only_flash_at_each_phase(tmp_path: Path, mpy: Any, mode: str) -> None:
    """The flash fails from the k-th mutation of the update boot (download, switch) or of
    the trial boot (count, confirmation) and stays failed for the boots after: the app
    runs at every boot; once the flash works again the update completes."""
    rng = random.Random(11)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        golden = new_device(tmp_path, mpy, host, repo)
        assert run(golden, mpy).state["app_tag"] == "v1.0.0"
        repo.publish("1.1.0", app_files("1.1.0", n=3))
        trial = tmp_path / "trial"
        shutil.copytree(golden, trial)
        assert boot(trial, mpy, check_now=True)[0] == 75  # installed: the trial boot is next

        failing = {"LCM_FLASH_FAIL": f"{mode}@1"}
        tried = 0
        for phase, start in (("update boot", golden), ("trial boot", trial)):
            k = 0
            points = []
            while True:  # how many mutations the phase's boot makes
                k += 1
                state = tmp_path / "probe"
                shutil.rmtree(state, ignore_errors=True)
                shutil.copytree(start, state)
                _, out = boot(state, mpy, check_now=True, env={"LCM_FLASH_FAIL": f"{mode}@{k}"})
                if f"flash {mode} from mutation" not in out:
                    break
                points.append(k)
                k += 1 if sweep() else max(1, k // 4)  # denser at the start: the state
            for k in sample(points, 6, rng):
                state = tmp_path / f"{phase[0]}{k}"
                shutil.copytree(start, state)
                env = {"LCM_FLASH_FAIL": f"{mode}@{k}"}
                code, out = boot(state, mpy, check_now=True, env=env)
                if code == 75:
                    out = boot_until_app(state, mpy, env=failing)
                else:
                    assert code == 0, f"{phase} k={k}\n{out}"
                assert running_app(state, out) in ("v1.0.0", "v1.1.0"), f"{phase} k={k}"
                # Still failing, another boot: the app runs again.
                out = boot_until_app(state, mpy, env=failing, cause="power")
                assert running_app(state, out) in ("v1.0.0", "v1.1.0"), f"{phase} k={k}"
                # The flash works again: the update completes.
                later = run(state, mpy)
                assert later.state["app_tag"] == "v1.1.0", text(later)
                assert later.state["app_trial"] is None, text(later)
                assert running_app(state, text(later)) == "v1.1.0"
                tried += 1
                shutil.rmtree(state)
        print(f"{mode} flash: {tried} points tried, all recovered")
