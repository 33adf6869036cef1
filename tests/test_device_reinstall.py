"""`lcm device install` over a board that already runs lcm: the copied manager is the one
that runs (publisher/device/reinstall.py).

Against the real MicroPython REPL behind a pseudo-terminal (tests/serialboard.py), with
mpremote as the world runs it; which slot the board then runs is asked of the board's own
/lcm/pick.py, run by the real interpreter on the board's files.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from cert_sector.bootstate import PATH, decode, encode
from lcm_device import slots
from publisher.cli import app
from publisher.device import image as img
from publisher.device import reinstall
from publisher.device import settings as device_settings
from publisher.micropython import micropython_command
from tests.serialboard import serial_board

runner = CliRunner()

# A board whose manager was updated over the air into /lcm/m1 (on trial), with an app.
UPDATED = {
    "mgr": "m1",
    "mgr_tag": "v1.3.0",
    "mgr_seq": 5,
    "mgr_repo": "acme/lcm",
    "mgr_prev": "m0",
    "mgr_prev_tag": "v1.2.0",
    "mgr_prev_seq": 4,
    "mgr_trial": 1,
    "mgr_boots": 1,
    "mgr_bad": "v1.1.0",
    "mgr_bad_seq": 3,
    "app": "app0",
    "app_tag": "v2.0.0",
    "app_seq": 9,
    "app_repo": "alice/thermo",
    "trial_boots": 3,
}


def write_state(board: Path, gen: int, st: dict) -> None:
    path = board / (PATH % (gen % 2)).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode({**st, "gen": gen}))


def picked_slot(board: Path) -> str:
    """The manager slot the board's own /lcm/pick.py picks from its boot state."""
    code = "import sys\nsys.path.insert(0, 'lcm')\nimport pick\nprint(pick.pick()[0])\n"
    proc = subprocess.run(
        [*micropython_command(), "-c", code],
        cwd=board,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"LCM_BOOT_CAUSE": "power"},
    )
    return proc.stdout.split()[-1]


def put_files(board: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (board / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (board / path.lstrip("/")).write_bytes(data)


def board_files(board: Path) -> dict[str, bytes]:
    return {
        "/" + p.relative_to(board).as_posix(): p.read_bytes()
        for p in board.rglob("*")
        if p.is_file()
    }


def install(board: Path, root_key: Path, cwd: str = "/") -> str:
    with serial_board(board, cwd=cwd) as port:
        args = ["device", "install", "--port", port, "--board", "esp32"]
        result = runner.invoke(app, [*args, "--repo", "alice/thermo", "--root", str(root_key)])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_cable_install_replaces_an_updated_manager(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "new", "root", "--dir", str(tmp_path)]).exit_code == 0
    board = tmp_path / "board"
    # The older manager: a source file that would shadow the new .mpy (MicroPython
    # imports a .py first), a module the new manager no longer has, and the manifest of
    # a release once installed into m0 over the air (the boot's self-check would
    # "repair" the copied files against it), with a staged one.
    stale = {
        "/lcm/m0/lcm_device/boot.py": b"raise SystemExit('the older manager ran')\n",
        "/lcm/m0/lcm_device/gone.mpy": b"M",
        "/lcm/m0.lcm": b"an older manifest",
        "/lcm/m0.lcm.new": b"a staged manifest",
    }
    kept = {
        "/lcm/m1/lcm_device/boot.mpy": b"the manager updated over the air",
        "/lcm/m1.lcm": b"its manifest",
        "/lcm/app0/main.py": b"print('the app')\n",
        "/lcm/state/schedule.json": b'{"failures": 0}',
    }
    put_files(board, {**stale, **kept})
    write_state(board, 6, {**UPDATED, "mgr_trial": None})
    write_state(board, 7, UPDATED)
    (board / "lcm/pick.py").write_bytes(img.PICK.read_bytes())
    assert picked_slot(board) == "m1"

    output = install(board, tmp_path / "root.pub", cwd="/lcm/app0")

    assert "the board ran v1.3.0 on trial from /lcm/m1" in output
    assert "it now runs the manager copied to /lcm/m0" in output
    files = board_files(board)
    for path in stale:
        assert path not in files, path
    for path, data in kept.items():
        assert files[path] == data, path
    # The manager slot is exactly a factory image's.
    expected = img.device_files(
        device_settings.DeviceSettings(board="esp32", repo="alice/thermo", app_roots=[])
    )
    slot = {p: d for p, d in expected.items() if p.startswith("/lcm/m0/")}
    assert {p: d for p, d in files.items() if p.startswith("/lcm/m0/")} == slot
    # The manager as a factory image has it, the rest kept, in the newest generation (the
    # board wrote one more at the boot that mpremote's reset started).
    st = reinstall.current_state(files)
    assert st is not None and st["gen"] > 7, st
    for key in UPDATED:
        if key == "mgr":
            assert st[key] == "m0"
        elif key.startswith("mgr_") and not key.startswith("mgr_bad"):
            assert st[key] is None, key
        else:
            assert st[key] == UPDATED[key], key  # the app's, and the tag that failed
    assert picked_slot(board) == "m0"


def test_a_cable_install_on_a_board_that_lost_its_boot_state(tmp_path: Path) -> None:
    assert runner.invoke(app, ["keys", "new", "root", "--dir", str(tmp_path)]).exit_code == 0
    board = tmp_path / "board"
    # Both generations damaged: the board's boot rebuilds the state from the slots and
    # would run /lcm/m1, whose manifest is complete, rather than the copy.
    on_board = {
        "/lcm/m1/lcm_device/boot.mpy": b"the manager updated over the air",
        "/lcm/m1.lcm": b"its manifest",
        PATH % 0: b"damaged",
        PATH % 1: b"damaged too",
    }
    put_files(board, on_board)
    output = install(board, tmp_path / "root.pub")
    assert "the board's boot state is damaged" in output, output
    files = board_files(board)
    assert "/lcm/m1.lcm" not in files
    assert files["/lcm/m1/lcm_device/boot.mpy"] == on_board["/lcm/m1/lcm_device/boot.mpy"]


def test_a_cable_install_on_a_board_already_on_its_factory_manager_keeps_its_state(
    tmp_path: Path,
) -> None:
    assert runner.invoke(app, ["keys", "new", "root", "--dir", str(tmp_path)]).exit_code == 0
    board = tmp_path / "board"
    factory = {"mgr": "m0", "app": "app1", "app_tag": "v2.1.0", "app_seq": 10}
    write_state(board, 3, factory)
    output = install(board, tmp_path / "root.pub")
    assert "the board ran" not in output
    files = board_files(board)
    assert decode(files[PATH % 1]) == {**factory, "gen": 3}
    assert PATH % 0 not in files


def test_the_boot_state_read_as_the_board_reads_it() -> None:
    updated = encode({**UPDATED, "gen": 4})
    # A torn newer generation is ignored: the valid one decides.
    torn = encode({**UPDATED, "mgr": "m0", "gen": 5})[:-9] + b"\xff" * 8 + b"\n"
    found: dict[str, bytes | None] = {
        PATH % 0: updated,
        PATH % 1: torn,
        reinstall.LEGACY_PATH: None,
    }
    written = reinstall.plan(found).files
    assert list(written) == [PATH % 1]
    assert decode(written[PATH % 1])["mgr"] == "m0"  # type: ignore[index]
    assert decode(written[PATH % 1])["gen"] == 5  # type: ignore[index]
    # The single file of managers before two generations: written over by generation 1.
    legacy = json.dumps({"mgr": "m1", "mgr_tag": "v1.0.0", "app": "app0"}).encode()
    written = reinstall.plan({reinstall.LEGACY_PATH: legacy}).files
    st = decode(written[PATH % 1])
    assert st == {**json.loads(legacy), "mgr": "m0", "mgr_tag": None, "gen": 1} | {
        k: None for k in reinstall._RUNNING_KEYS
    }
    # Nothing readable: a new board, or one whose boot rebuilds its state from the slots,
    # which must not find the other manager slot's release (it would run it).
    lost = reinstall.plan({PATH % 0: b"junk", reinstall.LEGACY_PATH: b"{"})
    assert lost.files == {} and "damaged" in str(lost.before)
    assert set(lost.remove) == set(reinstall.REPLACED) | {"/lcm/m1.lcm"}
    new = reinstall.plan({})
    assert (new.files, new.before) == ({}, None) and "/lcm/m1.lcm" in new.remove


def test_the_paths_are_the_devices() -> None:
    class Root:
        root = ""

    assert reinstall.LEGACY_PATH == slots.LEGACY_PATH
    assert slots.manifest_path(Root, "m0") in reinstall.REPLACED
    assert (slots.manifest_path(Root, "m1"),) == reinstall.LOST_STATE
    assert slots.slot_dir(Root, "m0") == img.MANAGER_SLOT in reinstall.REPLACED
