"""The device update engine's bars, measured on the MicroPython unix port against `lcm host`.

Prints:
- the smallest heap with which a full update cycle (check, 20 files / 200 KB,
  verify, switch, trial boot) passes with .mpy modules run in place, as from
  ROMFS on a board: the unix HAL's ROM model (lcm_sim/rommodel.py)
  loads all the manager's code, then leaves only that much heap for data
  (the bar: 24 KB, aim 16 KB), found by bisection in 1 KB steps; the same
  for an idle check;
- the same with the manager in a real ROMFS image (mpremote's builder) mounted
  with `vfs.VfsRom`, as on a board with a ROMFS partition (ESP8266's
  FLASH_2M_ROMFS firmware): the bytecode runs in place, but the structures
  MicroPython builds when importing (function and class objects, constant
  tables) live in the heap and count as data;
- for comparison, the smallest `-X heapsize` of the whole process with the
  code loaded into the heap (as the unix port and a board without ROMFS do),
  in 8 KB steps (bar 3, a one-file update: 2 KB steps, the largest over
  four heap layouts), and how much of it is code;
- TLS handshakes (TCP connections) for a full install over HTTPS, with the
  assets on the release host itself and on a second host name (as GitHub's
  download URLs redirect to its CDN);
- bytes and requests for one changed file of twenty;
- requests and bytes of an idle check;
- a pack transfer cut again and again (every cut at half of what is left):
  bytes read twice by the device (the bar: at most one chunk per cut).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trustme

from publisher.device.simulate import board_code, der_from_pem, provision, simulate
from publisher.micropython import ROM_MODEL_HEAP, UNIX_PACKAGES, build_mpy, run_micropython
from tests.device.enginekit import Repo, app_files
from tests.hostserver import running_host

FILES = 20
FILE_SIZE = 10 * 1024
CUTS = 8


def one_file_changed(files: dict[str, bytes]) -> dict[str, bytes]:
    """The next release of `files` (app_files): one file of them changed."""
    changed = dict(files)
    changed["lib/m05.py"] = files["lib/m05.py"].replace(b"VALUE = 5", b"VALUE = 6")
    return changed


def new_device(tmp: Path, name: str, host, repo: Repo, build: Path, **settings) -> Path:
    state = tmp / name
    shutil.rmtree(state, ignore_errors=True)  # a probe may be run again at the same size
    ca = settings.pop("_ca", None)
    cfg = {"gestures": False}
    cfg.update(settings)
    provision(
        state,
        web_url=host.url,
        repo=repo.name,
        roots=[repo.root.public_key],
        build=build,
        settings=cfg,
        https_ca=ca,
    )
    return state


def memory(heap_kb: int, rom: bool) -> dict:
    """simulate() arguments: `heap_kb` for data with the code in ROM, else for the process."""
    if rom:
        return {"heap": ROM_MODEL_HEAP, "env": {"LCM_DATA_HEAP": str(heap_kb * 1024)}}
    return {"heap": f"{heap_kb}k"}


def installs(tmp: Path, host, repo: Repo, build: Path, heap_kb: int, rom: bool) -> bool:
    state = new_device(tmp, f"heap{heap_kb}{'rom' if rom else ''}", host, repo, build)
    status = simulate(state, **memory(heap_kb, rom))
    return status.state.get("app_tag") == "v1.0.0" and status.exits == [75, 0]


# A board whose factory manager is in ROMFS: the image is mounted at /rom (as the
# firmware does at start-up), then all free heap but the data heap is held, and
# /main.py runs as usual; its manager slot holds no modules, so they come from /rom.
ROMFS_BOOT = """
import sys, vfs
vfs.mount(vfs.VfsRom(open("romfs.img", "rb").read()), "/rom")
sys.path.append("/rom")
main = compile(open("main.py").read(), "main.py", "exec")
from lcm_sim.rommodel import hold_all_but
print("romfs-boot: data heap", hold_all_but(int(sys.argv[1])))
exec(main)
"""


def romfs_image(folder: Path) -> bytes:
    """A ROMFS image of `folder` (.mpy files as they are), built by mpremote's builder."""
    from mpremote.romfs import make_romfs

    with contextlib.redirect_stdout(io.StringIO()):  # the builder prints the tree
        return make_romfs(str(folder), mpy_cross=False)


def romfs_installs(tmp: Path, host, repo: Repo, build: Path, heap_kb: int) -> bool:
    state = new_device(tmp, f"heap{heap_kb}romfs", host, repo, build)
    slot = state / "lcm" / "m0"
    (state / "romfs.img").write_bytes(romfs_image(slot))
    for package in ("lcm_device", "cert_sector"):
        shutil.rmtree(slot / package)
    (state / "romfs_boot.py").write_text(ROMFS_BOOT)
    env = {"LCM_ROOT": str(state), "LCM_BOOT_CAUSE": "power", "LCM_CHECK_NOW": "1"}
    for boot in range(2):
        proc = run_micropython(
            ["romfs_boot.py", str(heap_kb * 1024)],
            path=[board_code()],  # the simulated board; the manager comes from /rom
            heap=ROM_MODEL_HEAP,
            cwd=state,
            extra_env={**env, "LCM_CHECK_NOW": "1" if boot == 0 else "0"},
        )
        if proc.returncode != (75 if boot == 0 else 0):
            return False
    return "v1.0.0 running" in proc.stdout


def smallest_heap(passes, step: int, high: int = 512) -> int:
    low = 0  # KB: fails at low (assumed), passes at high (checked)
    if not passes(high):
        raise SystemExit(f"the update cycle does not pass even at {high} KB")
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if passes(mid):
            high = mid
        else:
            low = mid
    # Heap layouts vary a little from run to run: the figure is one that passes three
    # times in a row, not a lucky run.
    while not (passes(high) and passes(high)):
        high += step
    return high


def idles(state: Path, heap_kb: int, rom: bool) -> bool:
    status = simulate(state, **memory(heap_kb, rom))
    # The update boot (its check), then the app boot it resets into.
    return status.exits == [75, 0] and any("nothing new" in line for line in status.lines)


# The modules a full update cycle loads on a board, in the update boot: boot, which
# releases the boot's steps (startup, appboot, the schedule, the config) before the
# checks (lcm_device.boot.main), checkboot (which loads the config and releases it
# again) and the engine; then one phase of the install at a
# time: the sector's checks (lcm_device.metadata, cert_sector.sector and keys, the
# verifier), then the manifest's, once metadata has released the sector's modules
# (cert_sector.manifest and the verifier: every install checks both signatures), all
# released before the slot is filled (lcm_device.slotfill; lcm_device.install). The HAL
# is the ESP32's (hal/board.py + hal/esp32.py; the ESP8266's is smaller): lcm_sim.unix,
# the simulated board the other figures run on, never ships to a board (SIM_HAL, printed
# beside).
CYCLE_BASE = (
    "from lcm_device.hal import fs\n"
    "from lcm_device import compat, slots, boot, log\n"
    # As boot.main: its globals let go of the steps, then they are released.
    "boot.startup = boot.appboot = None\n"
    "boot.unload(boot._STEPS.split(), True)\n"
    "from lcm_device import checkboot, update, install, fetch, trust, http\n"
)
SECTOR_PHASE = "from lcm_device import metadata\nfrom cert_sector import sector, keys, p256\n"
MANIFEST_PHASE = (
    "from lcm_device import metadata\n"
    "compat.unload(['cert_sector.sector', 'cert_sector.keys'], True)\n"
    "from cert_sector import manifest, p256\n"
)
FILL_PHASE = "from lcm_device import slotfill\nfrom cert_sector import manifest\n"
# Every module of the cycle, as if loaded at once (the code size).
CYCLE_MODULES = CYCLE_BASE + SECTOR_PHASE + "from cert_sector import manifest\n" + FILL_PHASE
BOARD_HAL = "from lcm_device.hal import esp32\n"
SIM_HAL = "from lcm_sim import unix\n"
CYCLE_IMPORTS = BOARD_HAL + CYCLE_MODULES


def code_heap(build: Path) -> int:
    """GC heap taken by the modules a full update cycle imports (bytecode and globals)."""
    code = (
        "import gc\ngc.collect()\na = gc.mem_alloc()\n"
        + CYCLE_IMPORTS
        + "gc.collect()\nprint(gc.mem_alloc() - a)\n"
    )
    proc = run_micropython(["-c", code], path=[build], heap="1m")
    return int(proc.stdout.strip())


def import_objects(tmp: Path, build: Path, imports: str = CYCLE_IMPORTS) -> int:
    """Bytes of module, dict, function, tuple and list objects the cycle's modules create
    when imported from ROMFS: what a frozen module also keeps in RAM, which the ROM model
    counts as code (a lower bound: class objects and dict tables are not told apart)."""
    (tmp / "objects.img").write_bytes(romfs_image(build))
    code = (
        "import gc, sys, vfs, micropython\n"
        f"vfs.mount(vfs.VfsRom(open({str(tmp / 'objects.img')!r}, 'rb').read()), '/rom')\n"
        "sys.path.insert(0, '/rom')\ngc.collect()\nmicropython.mem_info(1)\n"
        + imports
        + "gc.collect()\nmicropython.mem_info(1)\n"
    )
    proc = run_micropython(["-c", code], path=[], heap="1m")
    before, after = (_blocks_by_kind(dump) for dump in proc.stdout.split("GC: total")[1:])
    runtime = "MDBTL"  # module, dict, function (bytecode), tuple, list
    return sum(after[k] - before[k] for k in runtime) * 32  # 32-byte blocks on 64-bit


def _blocks_by_kind(dump: str) -> dict[str, int]:
    """GC blocks per object kind in a `micropython.mem_info(1)` heap map."""
    counts = dict.fromkeys("MDBTLSAFh", 0)
    kind = None
    for line in dump.splitlines():
        if len(line) < 10 or line[8:10] != ": ":
            continue
        for ch in line[10:]:
            if ch == "=":
                if kind is not None:
                    counts[kind] += 1
            elif ch == ".":
                kind = None
            else:
                kind = ch if ch in counts else "h"
                counts[kind] += 1
    return counts


def full_sector(repo: Repo) -> bytes:
    """The bar's cert sector: 4096 bytes (the format's cap) holding two real-sized root CA
    certificates, an RSA-4096 root and a P-384 root (as test_engine_big_sector makes)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from tests.device.test_engine_big_sector import full_sector as sized
    from tests.device.test_engine_big_sector import root_ca

    rsa_der = root_ca(rsa.generate_private_key(65537, 4096), "Bench RSA-4096 Root")
    return sized(repo, 1, rsa_der, ec.generate_private_key(ec.SECP384R1()))


# Bar 3 moves by 2-4 KB with the heap's layout alone (docs/device.md, "Where bar 3's
# heap goes"). The device's folder name is in front of every interned path, so its
# length shifts the layout: bar 3 is the largest of the smallest heaps over these.
UPDATE_LAYOUTS = 4


def updates(tmp: Path, golden: Path, heap_kb: int, layout: int = 0) -> bool:
    """A one-file update of a device at v1.0.0 (a copy of `golden`) in a `heap_kb` process,
    in a folder whose name is `layout` characters longer than the shortest."""
    state = tmp / ("update" + "x" * layout)
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(golden, state)
    status = simulate(state, **memory(heap_kb, False))
    return status.state.get("app_tag") == "v1.0.1" and status.exits == [75, 0]


def bench_heap(tmp: Path, build: Path) -> None:
    with running_host(tmp / "h1") as host:
        repo = Repo(host)
        repo.sector = full_sector(repo)
        v1 = app_files("1.0.0", n=FILES, size=FILE_SIZE)
        repo.publish("1.0.0", v1)
        sector = len(repo.sector)
        data = smallest_heap(lambda kb: installs(tmp, host, repo, build, kb, True), 1, 64)
        idle_state = tmp / "heap64rom"  # installed by the first probe
        idle_data = smallest_heap(lambda kb: idles(idle_state, kb, True), 1, 64)
        romfs = smallest_heap(lambda kb: romfs_installs(tmp, host, repo, build, kb), 4, 256)
        heap = smallest_heap(lambda kb: installs(tmp, host, repo, build, kb, False), 8)
        idle_heap = smallest_heap(lambda kb: idles(idle_state, kb, False), 8)
        v2 = one_file_changed(v1)
        repo.publish("1.0.1", v2)
        per_layout = [
            smallest_heap(lambda kb, n=n: updates(tmp, idle_state, kb, n), 2)
            for n in range(UPDATE_LAYOUTS)
        ]
        update_heap = max(per_layout)
    code = code_heap(build)
    # Bar 2: what is loaded at once, in the install's busiest phase.
    phases = {"sector": SECTOR_PHASE, "manifest": MANIFEST_PHASE, "fill": FILL_PHASE}
    loaded = {k: import_objects(tmp, build, BOARD_HAL + CYCLE_BASE + v) for k, v in phases.items()}
    every = import_objects(tmp, build)
    busiest = max(loaded, key=lambda k: loaded[k])
    objects = loaded[busiest]
    sim_objects = import_objects(tmp, build, SIM_HAL + CYCLE_BASE + phases[busiest])
    print(f"full update cycle, {FILES} files / {FILES * FILE_SIZE // 1024} KB, .mpy modules,")
    print(f"cert sector of {sector} bytes with two root CA certificates (RSA-4096, P-384):")
    print(
        f"  bar 1: code frozen (ROM model), smallest data heap of a first install over HTTP "
        f"{data} KB (bar: 14 KB)"
    )
    print(
        f"  bar 2: RAM objects of the modules loaded at once, imported from ROMFS (heap dump), "
        f"the sector's checks {loaded['sector'] / 1024:.1f} KB, the manifest's "
        f"{loaded['manifest'] / 1024:.1f} KB, the slot's {loaded['fill'] / 1024:.1f} KB: "
        f"{objects / 1024:.1f} KB, at least (bar: 8 KB); 1 + 2 = {data + objects / 1024:.1f} KB "
        "(bar: 22 KB)"
    )
    print(
        f"         every module of the cycle as if loaded at once {every / 1024:.1f} KB; the "
        f"busiest phase with the simulated board's HAL (lcm_sim.unix) instead of the ESP32's "
        f"{sim_objects / 1024:.1f} KB"
    )
    print(f"  code in ROMFS, smallest data heap            {romfs} KB")
    print(f"  code in the heap, smallest -X heapsize       {heap} KB")
    print(
        f"  bar 3: code in the heap, smallest -X heapsize of a one-file update {update_heap} KB "
        f"in 2 KB steps, the largest over {UPDATE_LAYOUTS} heap layouts "
        f"({', '.join(map(str, per_layout))}) (bar: 100 KB)"
    )
    print(f"  code size: the cycle's modules take {code // 1024} KB of heap as .mpy")
    print(f"idle check (one request): data heap {idle_data} KB; code in the heap {idle_heap} KB")


def tls_files(tmp: Path) -> tuple[Path, Path, Path, bytes]:
    """A test CA and a server certificate: (cert PEM, key PEM, CA PEM, CA DER)."""
    ca = trustme.CA()
    # Both names: the second host's downloads (asset_host) are signed URLs on localhost.
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return cert_pem, key_pem, ca_pem, der_from_pem(ca_pem.read_bytes())


def bench_https(tmp: Path, build: Path) -> None:
    cert_pem, key_pem, ca_pem, der = tls_files(tmp)
    with running_host(tmp / "h2", tls=(cert_pem, key_pem)) as host:
        repo = Repo(host, verify=str(ca_pem), cas=[der])
        v1 = app_files("1.0.0", n=FILES, size=FILE_SIZE)
        repo.publish("1.0.0", v1)
        state = new_device(tmp, "https", host, repo, build, _ca=der)
        host.clear_requests()
        status = simulate(state)
        assert status.state.get("app_tag") == "v1.0.0", status.lines
        conns = len({r.connection_id for r in host.requests})
        n = len(host.requests)
        print(f"full install over HTTPS: {n} requests, {conns} TLS handshakes (bar 3)")
        cdn_n, cdn_conns = cdn_install(tmp, build, (cert_pem, key_pem, ca_pem, der))
        print(
            f"  the same with the assets on a second host (as GitHub's CDN): {cdn_n} requests, "
            f"{cdn_conns} TLS handshakes (bar 3; the assets' redirects are asked for first, on "
            "the first connection: lcm_device.resolve)"
        )

        def installs_https(kb: int) -> bool:
            state = new_device(tmp, f"https{kb}", host, repo, build, _ca=der)
            status = simulate(state, **memory(kb, True))
            return status.state.get("app_tag") == "v1.0.0" and status.exits == [75, 0]

        https_data = smallest_heap(installs_https, 2, 128)
        print(
            "  bar 1 over HTTPS: code frozen (ROM model), smallest data heap of a first "
            f"install {https_data} KB (bar: 20 KB)"
        )

        v2 = one_file_changed(v1)
        manifest, _ = repo.publish("1.0.1", v2)
        host.clear_requests()
        status = simulate(state)
        assert status.state.get("app_tag") == "v1.0.1", status.lines
        sent = sum(r.bytes_sent for r in host.requests)
        pack = [r for r in host.requests if r.status == 206]
        print(
            f"one changed file of {FILES} ({len(v2['lib/m05.py'])} bytes, manifest "
            f"{len(manifest)} bytes): {len(host.requests)} requests, {sent} bytes sent in all, "
            f"pack: {len(pack)} range request of {sum(r.bytes_sent for r in pack)} bytes "
            "(with headers)"
        )

        host.clear_requests()
        status = simulate(state)
        sent = sum(r.bytes_sent for r in host.requests)
        print(f"idle check: {len(host.requests)} request, {sent} bytes received (bar 1, 2048)")


def cdn_install(tmp: Path, build: Path, tls: tuple[Path, Path, Path, bytes]) -> tuple[int, int]:
    """(requests, connections) of a full install over HTTPS (`tls`: tls_files) from a host
    whose download URLs redirect to another host name, as github.com's do to its CDN."""
    cert_pem, key_pem, ca_pem, der = tls
    with running_host(tmp / "h-cdn", tls=(cert_pem, key_pem), asset_host="localhost") as host:
        repo = Repo(host, verify=str(ca_pem), cas=[der])
        repo.publish("1.0.0", app_files("1.0.0", n=FILES, size=FILE_SIZE))
        state = new_device(tmp, "https-cdn", host, repo, build, _ca=der)
        host.clear_requests()
        status = simulate(state)
        assert status.state.get("app_tag") == "v1.0.0", status.lines
        return len(host.requests), len({r.connection_id for r in host.requests})


def bench_cuts(tmp: Path, build: Path) -> None:
    with running_host(tmp / "h3") as host:
        repo = Repo(host)
        _, pack = repo.publish("1.0.0", app_files("1.0.0", n=FILES, size=FILE_SIZE))
        url = f"{host.url}/{repo.name}/releases/download/v1.0.0/pack.lcm"
        host.inject_fault("drop_download", CUTS)
        code = f"""
import hashlib
from lcm_device.fetch import PackStream
from lcm_device.http import Client
buf = memoryview(bytearray(3072))  # as the engine's: 2 KB for HTTP (a signed URL), 1 KB data
client = Client(buf[:2048], timeout_ms=2000)
pack = PackStream(client, {url!r}, {len(pack)}, 100, log=lambda t: None)
pack.open(0, {len(pack)})
h = hashlib.sha256()
got = 0
while got < {len(pack)}:
    n = pack.readinto(buf[2048 : 2048 + min(1024, {len(pack)} - got)])
    h.update(buf[2048 : 2048 + n])
    got += n
print(got, pack.resumes, client.bytes_in, h.digest() == {hashlib.sha256(pack).digest()!r})
"""
        proc = run_micropython(["-c", code], path=[build], heap="160k")
        got, resumes, bytes_in, ok = proc.stdout.split()
        assert ok == "True", proc.stdout + proc.stderr
        print(
            f"pack of {len(pack)} bytes cut {resumes} times: {got} body bytes read, "
            f"{int(got) - len(pack)} read twice (bar: at most one chunk per cut); "
            f"{bytes_in} bytes with headers"
        )


def main() -> None:
    # A short folder: the unix HAL puts the device's root in front of every path, interned
    # module paths among them (a board's root is ""), and their length moves the figures.
    with tempfile.TemporaryDirectory(prefix="b") as name:
        tmp = Path(name)
        build = build_mpy(tmp / "mpy", UNIX_PACKAGES)
        bench_heap(tmp, build)
        bench_https(tmp, build)
        bench_cuts(tmp, build)


if __name__ == "__main__":
    main()
