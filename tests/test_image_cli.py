"""`lcm device image | flash | install` through the real CLI: options, secrets, refusals.

No board is attached here: flashing is checked up to the serial port (a
missing port, and a pseudo-terminal where no bootloader answers), and the
mpremote install by its command line and its error when no board answers.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from publisher.cli import app
from publisher.device import firmware
from publisher.device import flash as flashing
from publisher.device import image as img
from publisher.device import settings as device_settings
from publisher.signing import load_public_key
from tests.serialboard import serial_board
from tests.test_image import esp32_firmware, esp8266_firmware, littlefs_files

runner = CliRunner()


@pytest.fixture(autouse=True)
def shim(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The ENGINE's lcm_device/main.py is the shim; a test-only stand-in until it lands.
    if not img.MAIN_SHIM.is_file():
        path = tmp_path_factory.mktemp("shim") / "main.py"
        path.write_text("# test stand-in for lcm_device/main.py\n")
        monkeypatch.setattr(img, "MAIN_SHIM", path)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "esp32.bin").write_bytes(esp32_firmware())
    (tmp_path / "esp8266.bin").write_bytes(esp8266_firmware())
    assert runner.invoke(app, ["keys", "new", "root", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["keys", "new", "mgr", "--dir", str(tmp_path)]).exit_code == 0
    return {
        "esp32": tmp_path / "esp32.bin",
        "esp8266": tmp_path / "esp8266.bin",
        "root": tmp_path / "root.pub",
        "mgr": tmp_path / "mgr.pub",
        "out": tmp_path / "factory.bin",
    }


def image_args(inputs: dict[str, Path], board: str = "esp32", *extra: str) -> list[str]:
    return [
        "device",
        "image",
        "--board",
        board,
        "--firmware",
        str(inputs[board]),
        "--repo",
        "alice/thermo",
        "--root",
        str(inputs["root"]),
        "-o",
        str(inputs["out"]),
        *extra,
    ]


def test_image_command_takes_secrets_from_env(
    inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME_WIFI_PW", "correct horse battery")
    monkeypatch.setenv("SETUP_PW", "setup-secret-42")
    args = image_args(
        inputs,
        "esp8266",
        "--manager-repo",
        "lcm-org/lcm",
        "--manager-root",
        str(inputs["mgr"]),
        "--wifi-ssid",
        "Home",
        "--wifi-password-env",
        "HOME_WIFI_PW",
        "--setup-password-env",
        "SETUP_PW",
        "--flash-size",
        "2MB",
        "--mac",
        "5c:cf:7f:01:02:03",
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "LCM-010203" in result.output and "setup-secret-42" in result.output
    assert "write-flash at 0x0" in result.output
    assert "manager    frozen in the firmware" in result.output
    assert "█" in result.output or "▀" in result.output  # the QR code
    assert stat.S_IMODE(inputs["out"].stat().st_mode) == 0o600
    data = inputs["out"].read_bytes()
    region = firmware.Region(0x100000, (2 * firmware.MiB - 20480) // 4096 * 4096 - 0x100000)
    files = littlefs_files(data[region.offset : region.end], region)
    cfg = json.loads(files["/lcm/state/config.json"])
    assert cfg["wifi_ssid"] == "Home" and cfg["wifi_password"] == "correct horse battery"
    assert cfg["setup_password"] == "setup-secret-42"
    assert cfg["manager_repo"] == "lcm-org/lcm" and len(cfg["manager_roots"]) == 1
    assert cfg["board"] == "esp8266" and cfg["channel"] == "stable"


def test_image_with_the_fleets_broker(inputs: dict[str, Path]) -> None:
    result = runner.invoke(app, [*image_args(inputs), "--mqtt", "mqtts://broker.lan:8883"])
    assert result.exit_code == 0, result.output
    data = inputs["out"].read_bytes()
    fs = firmware.Region(0x200000, 0x200000)
    files = littlefs_files(data[fs.offset - 0x1000 : fs.end - 0x1000], fs)
    cfg = json.loads(files["/lcm/state/config.json"])
    assert cfg["mqtt_url"] == "mqtts://broker.lan:8883"
    assert "mqtt_url" in cfg["factory_keys"]  # a factory reset keeps the fleet's broker
    inputs["out"].unlink()
    for url, message in [
        ("mqtt://", "must be mqtt://HOST[:PORT]"),
        ("mqtt://broker.lan:99999", "must be mqtt://HOST[:PORT]"),
        ("mqtt://dev:secret@broker.lan", "no credentials"),
        ("mqtt://broker.lan/topic", "must be mqtt://HOST[:PORT]"),
    ]:
        refused([*image_args(inputs), "--mqtt", url], f"--mqtt {url!r}", message)
        assert not inputs["out"].exists()


def test_image_json_and_generated_setup_password(inputs: dict[str, Path]) -> None:
    result = runner.invoke(app, [*image_args(inputs), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["flash_offset"] == 0x1000
    assert report["filesystem"] == {"offset": 0x200000, "size": 0x200000}
    assert "/main.py" in report["files"] and "/lcm/state/config.json" in report["files"]
    # A stock ESP32 firmware: the manager goes onto the filesystem as .mpy.
    assert report["frozen_manager"] is False and "/lcm/m0/lcm.py" in report["files"]
    assert report["setup_ssid"] == "LCM-XXXXXX"
    password = report["setup_password"]
    assert len(password) == device_settings.GENERATED_PASSWORD_LENGTH
    data = inputs["out"].read_bytes()
    fs = firmware.Region(0x200000, 0x200000)
    files = littlefs_files(data[fs.offset - 0x1000 : fs.end - 0x1000], fs)
    assert json.loads(files["/lcm/state/config.json"])["setup_password"] == password


def refused(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def test_image_refusals_write_nothing(inputs: dict[str, Path]) -> None:
    refused(
        image_args(inputs, "esp32", "--wifi-ssid", "x", "--wifi-password-env", "NO_SUCH"), "NO_SUCH"
    )
    bad_fw = inputs["root"]  # a PEM file is not firmware
    args = image_args(inputs)
    args[args.index("--firmware") + 1] = str(bad_fw)
    refused(args, "not an ESP firmware image")
    args = image_args(inputs, "esp8266")
    args[args.index("--firmware") + 1] = str(inputs["esp32"])
    refused(args, "for ESP32, not esp8266")
    plain = inputs["out"].parent / "esp8266-plain.bin"
    plain.write_bytes(esp8266_firmware(frozen_manager=False))
    args = image_args(inputs, "esp8266")
    args[args.index("--firmware") + 1] = str(plain)
    refused(args, "does not have the lcm manager frozen in")
    args = image_args(inputs)
    args[args.index("--repo") + 1] = "not a repo"
    refused(args, "--repo")
    args = image_args(inputs)
    not_a_key = inputs["out"].parent / "notakey.pub"
    not_a_key.write_text("hello")
    args[args.index("--root") + 1] = str(not_a_key)
    refused(args, "notakey.pub is not a public key")
    refused(image_args(inputs, "esp32", "--mac", "zz"), "not a MAC")
    missing = image_args(inputs)
    missing[missing.index("--firmware") + 1] = str(inputs["out"].parent / "missing.bin")
    refused(missing, "missing.bin")
    assert not inputs["out"].exists()
    usage = runner.invoke(app, [*image_args(inputs)[:3], "esp31"])
    assert usage.exit_code == 2 and "esp31" in usage.output


def test_image_never_writes_over_a_key_its_firmware_or_a_folder(inputs: dict[str, Path]) -> None:
    """A slip of -o (the root key's name, the firmware's) replaced that file with a 4 MB
    image; -o naming a folder was reported by the name of a temporary file."""
    key = inputs["root"].with_suffix(".pem")
    for target, needle in [
        (key, "holds a key: not overwritten"),
        (inputs["root"], "holds a key: not overwritten"),
        (inputs["esp32"], "is also an input of this command"),
        (inputs["out"].parent, "is a folder"),
    ]:
        before = target.read_bytes() if target.is_file() else None
        args = image_args(inputs)
        args[args.index("-o") + 1] = str(target)
        refused(args, f"-o {target}", needle)
        if before is not None:
            assert target.read_bytes() == before
    refused(image_args(inputs, "esp32", "--manager-threshold", "3"), "--manager-threshold")
    refused(image_args(inputs, "esp32", "--web-url", "http://x:99999"), "port from 1 to 65535")
    args = image_args(inputs)
    args[args.index("--firmware") + 1] = "/dev/zero"  # read without end before
    refused(args, "cannot read firmware /dev/zero: not a regular file")
    assert not inputs["out"].exists()


# ---------------------------------------------------------------- flash


def test_flash_args_put_the_image_at_the_firmware_offset(tmp_path: Path) -> None:
    esp32 = flashing.esptool_flash_args(
        firmware.BOARDS["esp32"], "/dev/ttyUSB0", tmp_path, 460800, 7
    )
    assert esp32[-3:] == ["write-flash", "0x1000", str(tmp_path)]
    assert esp32[:4] == ["--chip", "esp32", "--port", "/dev/ttyUSB0"]
    esp8266 = flashing.esptool_flash_args(firmware.BOARDS["esp8266"], "COM3", tmp_path, 115200, 2)
    assert esp8266[-3:] == ["write-flash", "0x0", str(tmp_path)]
    assert "--connect-attempts" in esp8266 and "2" in esp8266


@pytest.fixture(scope="module")
def factory_esp32() -> bytes:
    s = device_settings.DeviceSettings(
        board="esp32",
        repo="alice/thermo",
        app_roots=[bytes.fromhex(KEY)],
        setup_password="flash-test-pw",
    )
    return img.build_factory_image("esp32", esp32_firmware(), "4MB", s).data


# A valid P-256 point (the generator), enough for a config the image check accepts.
KEY = (
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
)


def test_factory_config_reads_back(factory_esp32: bytes) -> None:
    cfg = img.factory_config(firmware.BOARDS["esp32"], factory_esp32)
    assert cfg["setup_password"] == "flash-test-pw" and cfg["repo"] == "alice/thermo"
    with pytest.raises(firmware.ImageError, match="not for esp8266"):
        esp32_fs = factory_esp32[0x200000 - 0x1000 :]  # moved to where an ESP8266 has it
        img.factory_config(firmware.BOARDS["esp8266"], b"\xff" * 0x100000 + esp32_fs)
    with pytest.raises(firmware.ImageError, match="no lcm filesystem at 0x200000"):
        img.factory_config(firmware.BOARDS["esp32"], esp32_firmware())


def test_mac_is_read_from_esptool_output(capsys: pytest.CaptureFixture[str]) -> None:
    from esptool.cmds import read_mac

    class Chip:  # esptool asks the chip's eFuses; this one has a fixed MAC
        def read_mac(self, kind: str = "BASE_MAC") -> tuple[int, ...] | None:
            return None if kind == "EUI64" else (0x24, 0x0A, 0xC4, 0x12, 0xAB, 0xCD)

    read_mac(Chip())  # type: ignore[arg-type]
    text = "Chip type:          ESP32-D0WD-V3\n" + capsys.readouterr().out + "Uploading stub...\n"
    mac = flashing.mac_from_esptool_output(text)
    assert mac == bytes.fromhex("240ac412abcd") and device_settings.setup_ssid(mac) == "LCM-12ABCD"
    assert flashing.mac_from_esptool_output("Connecting....\n") is None


def test_flash_refuses_an_image_without_lcm(inputs: dict[str, Path]) -> None:
    inputs["out"].write_bytes(esp32_firmware())
    output = refused(
        ["device", "flash", "--port", "/dev/null", "--board", "esp32", str(inputs["out"])],
        "no lcm filesystem",
        "lcm device image",
    )
    assert "flashing" not in output, output  # refused before anything was said to happen


def test_flash_without_a_board_names_the_port(
    inputs: dict[str, Path], factory_esp32: bytes
) -> None:
    inputs["out"].write_bytes(factory_esp32)
    port = "/dev/lcm-test-no-such-port"
    refused(
        ["device", "flash", "--port", port, "--board", "esp32", str(inputs["out"])],
        f"no esp32 answered on {port}",
    )


def test_flash_where_nothing_answers(inputs: dict[str, Path], factory_esp32: bytes) -> None:
    # A pseudo-terminal is a port that opens but where no bootloader ever answers.
    leader, follower = os.openpty()
    try:
        port = os.ttyname(follower)
        inputs["out"].write_bytes(factory_esp32)
        args = ["device", "flash", "--port", port, "--board", "esp32", str(inputs["out"])]
        refused([*args, "--connect-attempts", "1"], f"no esp32 answered on {port}")
    finally:
        os.close(leader)
        os.close(follower)


def test_flash_refuses_an_image_for_the_other_board(inputs: dict[str, Path]) -> None:
    inputs["out"].write_bytes(esp8266_firmware())
    refused(
        ["device", "flash", "--port", "/dev/null", "--board", "esp32", str(inputs["out"])],
        "not an esp32 image",
    )
    inputs["out"].write_bytes(b"hello")
    refused(
        ["device", "flash", "--port", "/dev/null", "--board", "esp8266", str(inputs["out"])],
        "not an ESP firmware image",
    )


# ---------------------------------------------------------------- install


def test_install_command_line_and_staging(tmp_path: Path) -> None:
    files = {"/main.py": b"shim", "/lcm/m0/lcm_device/boot.mpy": b"M", "/lcm/state/c.json": b"{}"}
    flashing.stage_files(files, tmp_path)
    assert (tmp_path / "main.py").read_bytes() == b"shim"
    assert (tmp_path / "lcm/m0/lcm_device/boot.mpy").read_bytes() == b"M"
    args = flashing.mpremote_install_args("/dev/ttyACM0", files)
    mpremote = [sys.executable, "-m", "mpremote", "connect", "/dev/ttyACM0", "resume"]
    make_lcm = ["exec", flashing._PREPARE % ((), ("/lcm",))]
    # Absolute destinations, and what lcm holds copied into /lcm (made first).
    copy_lcm = ["fs", "cp", "-r", "lcm/m0", "lcm/state", ":/lcm"]
    copy_main = ["fs", "cp", "main.py", ":/main.py"]
    assert args == [*mpremote, *make_lcm, "+", *copy_lcm, "+", *copy_main, "+", "reset"]
    no_reset = flashing.mpremote_install_args("/dev/ttyACM0", ["/main.py"], reset=False)
    assert no_reset == [*mpremote, *copy_main]
    # What the copy replaces whole is removed first, in the same session.
    replaced = flashing.mpremote_install_args("/dev/ttyACM0", files, remove=["/lcm/m0"])
    assert replaced[len(mpremote) : len(mpremote) + 2] == [
        "exec",
        flashing._PREPARE % (("/lcm/m0",), ("/lcm",)),
    ]


def test_install_without_a_board_names_the_port(inputs: dict[str, Path]) -> None:
    port = "/dev/lcm-test-no-such-port"
    args = ["device", "install", "--port", port, "--board", "esp32"]
    args += ["--repo", "alice/thermo", "--root", str(inputs["root"])]
    # The board is first asked for its boot state: nothing is copied.
    refused(args, f"no serial port {port}: is the board plugged in?")


@pytest.fixture
def serial_micropython(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """MicroPython's REPL on a serial port (tests/serialboard.py); its filesystem a folder."""
    board = tmp_path / "board"
    board.mkdir()
    with serial_board(board) as port:
        yield port, board


def test_install_copies_the_image_files_onto_micropython(
    inputs: dict[str, Path], serial_micropython: tuple[str, Path]
) -> None:
    port, board = serial_micropython
    args = ["device", "install", "--port", port, "--board", "esp32"]
    args += ["--repo", "alice/thermo", "--root", str(inputs["root"]), "--channel", "beta"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "LCM-XXXXXX" in result.output
    copied = {
        "/" + p.relative_to(board).as_posix(): p.read_bytes()
        for p in board.rglob("*")
        if p.is_file()
    }
    cfg = json.loads(copied["/lcm/state/config.json"])
    assert cfg["repo"] == "alice/thermo" and cfg["channel"] == "beta" and cfg["board"] == "esp32"
    assert cfg["app_roots"] == [load_public_key(inputs["root"]).hex()]
    # Everything else is byte for byte what a factory image holds.
    same = device_settings.DeviceSettings(board="esp32", repo="alice/thermo", app_roots=[])
    expected = img.device_files(same)
    assert set(copied) == set(expected)
    del copied[device_settings.CONFIG_PATH], expected[device_settings.CONFIG_PATH]
    assert copied == expected


def test_install_over_lcm_lands_at_the_root_not_in_the_app_slot(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    # A board that runs lcm: its boot entered the app's slot (lcm_device/boot.py,
    # os.chdir('/lcm/app0')), and Ctrl-C leaves the board there. An older manager is
    # in /lcm/m0. The new one goes to /lcm/m0 and /main.py, not into the slot, and not
    # into /lcm/lcm (mpremote copies a folder into one that exists).
    board = tmp_path / "board"
    (board / "lcm/app0").mkdir(parents=True)
    app_file = board / "lcm/app0/main.py"
    app_file.write_bytes(b"print('the app')\n")
    boot = board / "lcm/m0/lcm_device/boot.mpy"
    boot.parent.mkdir(parents=True)
    boot.write_bytes(b"an older manager")
    (board / "main.py").write_bytes(b"an older shim")
    with serial_board(board, cwd="/lcm/app0") as port:
        args = ["device", "install", "--port", port, "--board", "esp32"]
        args += ["--repo", "alice/thermo", "--root", str(inputs["root"])]
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    copied = {
        "/" + p.relative_to(board).as_posix(): p.read_bytes()
        for p in board.rglob("*")
        if p.is_file()
    }
    # The slot holds its app file, unchanged, and nothing else.
    assert [p for p in copied if p.startswith("/lcm/app0/")] == ["/lcm/app0/main.py"]
    assert copied.pop("/lcm/app0/main.py") == b"print('the app')\n"
    assert not (board / "lcm/lcm").exists()
    cfg = json.loads(copied["/lcm/state/config.json"])
    assert cfg["repo"] == "alice/thermo" and cfg["board"] == "esp32"
    # Everything else is byte for byte what a factory image holds: the older files replaced.
    same = device_settings.DeviceSettings(board="esp32", repo="alice/thermo", app_roots=[])
    expected = img.device_files(same)
    assert "/lcm/m0/lcm_device/boot.mpy" in expected and "/main.py" in expected
    assert set(copied) == set(expected)
    del copied[device_settings.CONFIG_PATH], expected[device_settings.CONFIG_PATH]
    assert copied == expected


def test_a_board_that_refuses_the_copy_is_not_called_silent(
    inputs: dict[str, Path], serial_micropython: tuple[str, Path]
) -> None:
    # The board answers, but a file named `lcm` stands where the folder goes: the copy
    # fails on the board, and the error says so, with the board's reason.
    port, board = serial_micropython
    (board / "lcm").write_bytes(b"in the way")
    args = ["device", "install", "--port", port, "--board", "esp32"]
    result = refused(
        [*args, "--repo", "alice/thermo", "--root", str(inputs["root"])],
        f"could not copy lcm to the board on {port}",
    )
    assert "no MicroPython board answered" not in result, result
    assert (board / "lcm").read_bytes() == b"in the way"


def test_install_on_an_esp8266_needs_the_manager_frozen_in(
    inputs: dict[str, Path], serial_micropython: tuple[str, Path]
) -> None:
    # The board is asked for its frozen modules (help('modules')); this firmware has none.
    port, board = serial_micropython
    refused(
        ["device", "install", "--port", port, "--board", "esp8266"],
        "does not have the lcm manager frozen in",
    )
    assert list(board.iterdir()) == []  # nothing copied


def test_install_asks_the_board_which_port_it_runs(
    inputs: dict[str, Path], serial_micropython: tuple[str, Path]
) -> None:
    # Without --board the board is asked (sys.platform); the unix port is neither ESP.
    port, board = serial_micropython
    refused(
        ["device", "install", "--port", port], f"the board on {port} runs MicroPython for 'linux'"
    )
    assert list(board.iterdir()) == []  # nothing copied


def test_install_refuses_bad_options_before_touching_the_board(inputs: dict[str, Path]) -> None:
    port = "/dev/lcm-test-no-such-port"
    refused(
        ["device", "install", "--port", port, "--root", str(inputs["root"])], "--root needs --repo"
    )
    refused(["device", "install", "--port", port, "--repo", "a/b"], "--root")
