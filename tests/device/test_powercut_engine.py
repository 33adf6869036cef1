"""Power cut at every flash mutation of an update (the MCUboot simulator's method).

For k = 1, 2, ... the update from v1 to v2 runs with the k-th flash
mutation (write, file creation, rename, remove, mkdir, rmdir; a write is
cut half way) cutting the power, on a copy of the same v1 device. After the
cut the device boots again without a fault: it must run a complete,
verified app (v1 or v2). Then a later check must finish the update. The
loop ends at the first k the update completes without reaching.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.device.enginekit import (
    Repo,
    app_files,
    installed_v1,
    new_device,
    run,
    slot_is_complete,
    text,
)
from tests.hostserver import running_host
from tests.keyfactory import make_sector, new_signer


def running_app(state: Path, out: str, status: Any) -> str:
    """The version the last boot ran, after checking its slot is complete and verified."""
    st = status.state
    assert st.get("app") in ("app0", "app1"), out
    assert slot_is_complete(state, st["app"]), out
    last_boot = out.rsplit("--- boot", 1)[1]
    assert f"APP {st['app_tag']} running" in last_boot, out
    return st["app_tag"]


def test_power_cut_at_every_flash_mutation_recovers(
    tmp_path: Path, mpy: Any, heap_pass_sample: Any
) -> None:
    with running_host(tmp_path) as host:
        repo, v1, golden = installed_v1(tmp_path, mpy, host)
        first_sector = repo.sector
        v2 = dict(v1)
        v2["lib/m01.py"] = b"VALUE = 'changed'\n" * 100
        v2["lib/m02.py"] = b"VALUE = 'new file'\n" * 100
        # v2 also rotates the release key: the cert-sector swap is cut everywhere too.
        new_key = new_signer()
        repo.sector = make_sector(repo.name, [repo.root], [new_key], seq=2)
        repo.release_key = new_key
        repo.publish("1.1.0", v2)

        tried = recovered = 0
        cuts = heap_pass_sample.cuts(golden)  # every k (sampled in the small-heap pass)
        for k in cuts:
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            status = run(state, mpy, fault_at=k)
            out = text(status)
            if 76 not in status.exits:
                # The whole update ran without reaching the k-th mutation: every point tried.
                assert status.state["app_tag"] == "v1.1.0", out
                break
            tried += 1
            assert status.exits[0] == 76, out
            assert running_app(state, out, status) in ("v1.0.0", "v1.1.0")
            sector = (state / "lcm/state/certs/app.sector").read_bytes()
            assert sector in (first_sector, repo.sector), out
            later = run(state, mpy)
            later_out = text(later)
            assert running_app(state, later_out, later) == "v1.1.0", later_out
            assert (state / "lcm/state/certs/app.sector").read_bytes() == repo.sector
            recovered += 1
            shutil.rmtree(state)
        print(f"power cut points tried: {tried}, recovered: {recovered} (100 %), {cuts.summary()}")
        assert cuts.points > 20 and recovered == tried


def test_power_cut_in_the_trial_boot_and_its_confirmation(
    tmp_path: Path, mpy: Any, heap_pass_sample: Any
) -> None:
    """Cuts in boot 2 (trial count, app start, confirmation): never a lost or half app."""
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("1.0.0", app_files("1.0.0", n=3))
        golden = new_device(tmp_path, mpy, host, repo)
        assert run(golden, mpy).state["app_tag"] == "v1.0.0"
        repo.publish("1.1.0", app_files("1.1.0", n=3))
        tried = 0
        cuts = heap_pass_sample.cuts(golden, boot=2)  # every k (sampled in the small-heap pass)
        for k in cuts:
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            status = run(state, mpy, fault_at=k, fault_boot=2)
            out = text(status)
            assert status.exits[0] == 75, out  # boot 1 installed and switched
            if 76 not in status.exits:
                assert status.state["app_tag"] == "v1.1.0" and status.state["app_trial"] is None
                break
            tried += 1
            assert running_app(state, out, status) in ("v1.0.0", "v1.1.0")
            later = run(state, mpy)
            later_out = text(later)
            # A trial interrupted by power cuts ends confirmed or rolled back, never stuck.
            assert later.state["app_trial"] is None, later_out
            assert running_app(state, later_out, later) == later.state["app_tag"]
            shutil.rmtree(state)
        print(f"trial-boot power cut points tried: {tried} (100 % recovered), {cuts.summary()}")
        assert cuts.points >= 3


def test_a_resumed_file_whose_kept_part_was_torn_is_fetched_whole(tmp_path: Path, mpy: Any) -> None:
    """A power cut in the middle of a file's download, its last write torn (0xFF, as a
    flash page being programmed is): the next check resumes that file, finds its hash
    wrong, and fetches it whole, in the same check, instead of refusing the release."""
    with running_host(tmp_path) as host:
        repo, v1, golden = installed_v1(tmp_path, mpy, host)
        v2 = dict(v1)
        v2["lib/m01.py"] = b"VALUE = 'changed'\n" * 300  # 5.4 KB: several writes
        repo.publish("1.1.0", v2)
        partial = None
        for k in range(1, 200):  # the first cut that leaves m01.py partly written
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            status = run(state, mpy, fault_at=k)
            assert 76 in status.exits, text(status)  # cut before the update finished
            found = state / "lcm/app1/lib/m01.py"
            if found.is_file() and 1024 < found.stat().st_size < len(v2["lib/m01.py"]):
                partial = found
                break
        assert partial is not None
        data = partial.read_bytes()
        partial.write_bytes(data[:5] + b"\xff" * (len(data) - 5))  # the kept part, torn
        status = run(state, mpy)
        out = text(status)
        assert "lib/m01.py was damaged before the resume; fetching it whole" in out, out
        assert status.state["app_tag"] == "v1.1.0", out
        assert (state / "lcm/app1/lib/m01.py").read_bytes() == v2["lib/m01.py"]
