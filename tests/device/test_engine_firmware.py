"""Firmware releases (kind `firmware`): streamed into the next OTA partition, booted, marked
valid after the first check; an image for another chip is refused. The partitions are
simulated with files (lcm_sim/simpartition.py) and the images are real esptool
images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from esptool.bin_image import ESP32FirmwareImage, ESP32S3FirmwareImage

from tests.device import enginekit
from tests.device.enginekit import Repo, new_device, text
from tests.device.test_firmware_micropython import esp_image
from tests.hostserver import running_host

# Firmware updates are for the ESP32 (over 100 KB of heap): the writer needs one
# contiguous 4 KB flash-sector buffer late in the cycle, when the heap is
# fragmented; a full cycle passes from about 40 KB of data heap.
FIRMWARE_DATA_KB = 48


def run(state: Path, mpy: Any, **kw: Any) -> enginekit.SimStatus:
    return enginekit.run(state, mpy, data_at_least_kb=FIRMWARE_DATA_KB, **kw)


def partition_bytes(state: Path, label: str, size: int) -> bytes:
    blocks = sorted((state / "lcm/state" / label).glob("*.blk"), key=lambda p: int(p.stem))
    return b"".join(p.read_bytes() for p in blocks)[:size]


def test_firmware_release_is_written_booted_and_marked_valid(tmp_path: Path, mpy: Any) -> None:
    image = esp_image(ESP32FirmwareImage)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("5.0.0", {"firmware.bin": image}, kind="firmware")
        state = new_device(tmp_path, mpy, host, repo)

        status = run(state, mpy)

        out = text(status)
        assert f"firmware: {len(image)} bytes into ota_1" in out, out
        assert "firmware: v5.0.0 booted from ota_1, pending verification" in out
        assert "firmware: v5.0.0 marked valid" in out
        assert status.exits == [75, 75, 0], out
        otadata = json.loads((state / "lcm/state/otadata.json").read_text())
        assert otadata["boot"] == "ota_1" and not otadata["pending"]
        written = partition_bytes(state, "ota_1", len(image))
        assert hashlib.sha256(written).digest() == hashlib.sha256(image).digest()
        assert status.state["fw_tag"] == "v5.0.0"
        assert "v5.0.0 is installed, nothing new" in text(run(state, mpy))


def test_firmware_for_another_chip_is_refused(tmp_path: Path, mpy: Any) -> None:
    image = esp_image(ESP32S3FirmwareImage)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("5.0.0", {"firmware.bin": image}, kind="firmware")
        state = new_device(tmp_path, mpy, host, repo)

        status = run(state, mpy)

        out = text(status)
        assert (
            "app: refused v5.0.0: MismatchError: firmware is for esp32s3, this board is esp32"
            in out
        )
        assert status.exits == [75, 0] and not (state / "lcm/state/otadata.json").exists()


def test_power_cut_at_every_flash_mutation_of_a_firmware_update(
    tmp_path: Path, mpy: Any, heap_pass_sample: Any
) -> None:
    import shutil

    image = esp_image(ESP32FirmwareImage)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("5.0.0", {"firmware.bin": image}, kind="firmware")
        golden = new_device(tmp_path, mpy, host, repo)
        tried = 0
        cuts = heap_pass_sample.cuts(golden)  # every k (sampled in the small-heap pass)
        for k in cuts:
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            status = run(state, mpy, fault_at=k, check_after_cut=True)
            out = text(status)
            # Whatever the cut hit, the boot after it finishes the update.
            assert status.state.get("fw_tag") == "v5.0.0", out
            otadata = json.loads((state / "lcm/state/otadata.json").read_text())
            assert otadata["boot"] == "ota_1" and not otadata["pending"], out
            written = partition_bytes(state, "ota_1", len(image))
            assert hashlib.sha256(written).digest() == hashlib.sha256(image).digest()
            shutil.rmtree(state)
            if 76 not in status.exits:
                break
            tried += 1
        print(f"firmware power cut points tried: {tried} (100 % recovered), {cuts.summary()}")
        assert cuts.points > 10


def test_image_the_bootloader_rolled_back_is_not_offered_again(tmp_path: Path, mpy: Any) -> None:
    image = esp_image(ESP32FirmwareImage)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("5.0.0", {"firmware.bin": image}, kind="firmware")
        state = new_device(tmp_path, mpy, host, repo)

        def new_image_crashes_at_start(code: int, status: Any) -> None:
            # The new image crashed before reaching Python, and the reset that
            # followed was its one try (what ESP-IDF's otadata holds by then).
            if status.boots == 1:
                assert code == 75
                otadata = state / "lcm/state/otadata.json"
                otadata.write_text(json.dumps({**json.loads(otadata.read_text()), "tried": True}))

        status = run(state, mpy, on_exit=new_image_crashes_at_start)

        out = text(status)
        assert "firmware: v5.0.0 boots next from ota_1" in out, out
        assert "firmware: v5.0.0 was rolled back by the bootloader; running ota_0" in out, out
        assert json.loads((state / "lcm/state/otadata.json").read_text())["rolled_back"] == "ota_1"
        assert status.state["fw_bad"] == "v5.0.0" and status.state.get("fw_tag") is None

        again = text(run(state, mpy))
        assert "app: v5.0.0 failed its trial before; waiting for a newer one" in again, again
        assert "firmware: " not in again

        repo.publish("5.0.1", {"firmware.bin": image}, kind="firmware")
        status = run(state, mpy)
        assert "firmware: v5.0.1 marked valid" in text(status)
        assert status.state["fw_tag"] == "v5.0.1"


def test_reset_before_the_new_image_is_marked_valid_rolls_it_back(tmp_path: Path, mpy: Any) -> None:
    import shutil

    image = esp_image(ESP32FirmwareImage)
    with running_host(tmp_path) as host:
        repo = Repo(host)
        repo.publish("5.0.0", {"firmware.bin": image}, kind="firmware")
        golden = new_device(tmp_path, mpy, host, repo)
        first = run(golden, mpy, max_boots=1)  # writes the image, set_boot, reset
        assert first.exits == [75] and first.state["fw_next"][0] == "v5.0.0", text(first)

        # Cut the power at each flash mutation of the new image's first boot, until
        # one falls after it booted and before its check marked it valid.
        for k in range(1, 60):
            state = tmp_path / f"cut{k}"
            shutil.copytree(golden, state)
            status = run(state, mpy, fault_at=k, check_first=False, max_boots=1)
            out = text(status)
            if status.state.get("fw_pending") == "ota_1" and status.exits == [76]:
                break
            shutil.rmtree(state)
        else:
            raise AssertionError("no power cut fell between the boot and its validation")
        assert "pending verification" in out and "marked valid" not in out, out
        assert status.state["fw_tag"] == "v5.0.0"  # adopted, not yet valid

        status = run(state, mpy, check_first=False)

        out = text(status)
        assert (
            "firmware: v5.0.0 was rolled back by the bootloader before it was marked valid; "
            "running ota_0"
        ) in out, out
        assert status.state["fw_bad"] == "v5.0.0" and status.state.get("fw_tag") is None
        assert not status.state.get("fw_pending")
        assert "app: v5.0.0 failed its trial before" in text(run(state, mpy))
