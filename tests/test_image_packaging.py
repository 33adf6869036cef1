"""mip's package.json and the freeze manifest.py list exactly the device code in the tree.

package.json is also installed for real: MicroPython's own `mip` (frozen in
the unix port) fetches it from a loopback HTTP server serving this checkout,
and the installed tree must match the sources byte for byte.
"""

from __future__ import annotations

import functools
import http.server
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.device import image as img
from publisher.micropython import DEVICE_PACKAGES, REPO_ROOT, run_micropython, source_files
from tests.threadserver import serving

REGENERATE = (
    "package.json is out of date with the device code; regenerate it with\n"
    "  python -c 'from publisher.device.image import mip_package_text as t; "
    'print(t(), end="")\' > package.json'
)


def device_sources() -> set[str]:
    return {p.as_posix() for p in source_files(DEVICE_PACKAGES, REPO_ROOT)}


def test_package_json_lists_every_device_module() -> None:
    committed = json.loads((REPO_ROOT / "package.json").read_text())
    assert committed == img.mip_package(), REGENERATE
    sources = {src for _dest, src in committed["urls"]}
    shim = {"lcm_device/main.py"} if img.MAIN_SHIM.is_file() else set()
    assert sources == device_sources() | shim
    for dest, src in committed["urls"]:
        assert (REPO_ROOT / src).is_file()
        if src == "lcm_device/lcm.py":  # the app shim: `import lcm` from the slot's root
            assert dest == "lcm/m0/lcm.py"
        elif dest == "lcm/pick.py":  # what /main.py runs to start the manager
            assert src == "lcm_device/pick.py"
        else:
            assert dest == ("main.py" if dest == "main.py" else f"lcm/m0/{src}")


class Manifest:
    """The functions tools/manifestfile.py gives a manifest, recording what they freeze."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.frozen: set[str] = set()
        self.meta: dict[str, str] = {}

    def metadata(self, description=None, version=None, license=None, author=None):
        self.meta = {"description": description, "version": version, "license": license}

    def package(self, package_path, files=None, base_path=".", opt=None):
        base = self.root / base_path
        top = base / package_path
        assert top.is_dir(), f"manifest.py freezes a missing package {package_path}"
        if files is None:
            found = [p for p in top.rglob("*.py") if "__pycache__" not in p.parts]
        else:
            found = [top / f for f in files]
        self.frozen |= {p.relative_to(base).as_posix() for p in found}

    def module(self, module_path, base_path=".", opt=None):
        path = self.root / base_path / module_path
        assert path.is_file(), f"manifest.py freezes a missing module {module_path}"
        self.frozen.add(path.relative_to(self.root / base_path).as_posix())


def test_manifest_freezes_every_device_module() -> None:
    m = Manifest(REPO_ROOT)
    code = (REPO_ROOT / "manifest.py").read_text()
    exec(code, {"metadata": m.metadata, "package": m.package, "module": m.module})
    # Every device module, and the app shim once more as the top-level `lcm`.
    assert m.frozen == device_sources() | {"lcm.py"}
    assert m.meta["version"] == json.loads((REPO_ROOT / "package.json").read_text())["version"]


@pytest.fixture
def repo_server() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(REPO_ROOT))

    with serving(handler) as url:
        yield url


def test_mip_installs_the_lcm_layout(repo_server: str, tmp_path: Path) -> None:
    target = tmp_path / "board"
    target.mkdir()
    script = tmp_path / "install.py"
    script.write_text(
        "import mip, sys\nmip.install(sys.argv[1] + '/package.json', target=sys.argv[2])\n"
    )
    proc = run_micropython([str(script), repo_server, str(target)], path=[])
    assert proc.returncode == 0 and "Done" in proc.stdout, proc.stdout + proc.stderr
    installed = {
        p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()
    }
    package = json.loads((REPO_ROOT / "package.json").read_text())
    assert installed == {dest: (REPO_ROOT / src).read_bytes() for dest, src in package["urls"]}
